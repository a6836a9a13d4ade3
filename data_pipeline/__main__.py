"""`python -m data_pipeline`: see data_pipeline.cli."""

import sys

from data_pipeline.cli import main

sys.exit(main())
