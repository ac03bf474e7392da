"""The ``avalanche-freeze`` console script: starts the command line, catching a Ctrl-C during imports.

Importing torch and Avalanche takes several seconds; a Ctrl-C in that window used to end in a
``KeyboardInterrupt`` traceback. This module imports nothing but the standard library at import
time (and :mod:`avalanche_freeze`, which is light), loads :mod:`avalanche_freeze.cli` inside
:func:`main` and turns an interrupt there into one line and exit code 130, as an interrupted run
does (the process exits at once, without finalising the half-imported modules). It is the one
place where the package imports a module of its own at call time: the deferral is the point.

Example:
    >>> from avalanche_freeze.launcher import main
    >>> main(["list"])  # doctest: +ELLIPSIS
    strategies: ...
    0
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import List, Optional

__all__ = ["main"]

#: The exit code of a run stopped by SIGINT (as :mod:`avalanche_freeze.cli` uses).
INTERRUPTED = 130


def main(argv: Optional[List[str]] = None) -> int:
    """Import the command line and run it with ``argv`` (default: ``sys.argv[1:]``).

    Args:
        argv: the command-line arguments.

    Returns:
        The command's exit code. Interrupted while starting (a Ctrl-C during the imports), the
        process prints one line and exits at once with 130.
    """
    try:
        cli = importlib.import_module("avalanche_freeze.cli")
    except KeyboardInterrupt:
        print("avalanche-freeze: interrupted while starting; nothing was run", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        # Leave at once: finalising half-imported torch/Avalanche modules can end the process by the
        # SIGINT itself (exit status -2, seen in 2 of 40 tries under load) instead of with 130.
        # Nothing was run, so there is nothing to clean up.
        os._exit(INTERRUPTED)
    return cli.main(argv)
