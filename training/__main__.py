"""`python -m training sft|render|merge` (see training.cli)."""

import sys

from training.cli import main

if __name__ == "__main__":
    sys.exit(main())
