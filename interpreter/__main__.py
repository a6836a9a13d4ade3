"""`python -m interpreter ...`: see interpreter/cli.py."""

from interpreter.cli import main

raise SystemExit(main())
