"""``python -m avalanche_freeze ...``: the same command line as ``avalanche-freeze``."""

import sys

from .cli import main

sys.exit(main())
