"""``python -m avalanche_freeze ...``: the same command line as ``avalanche-freeze``."""

import sys

from .launcher import main

sys.exit(main())
