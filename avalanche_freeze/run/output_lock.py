"""One run per output directory: an exclusive lock file that names its holder.

:class:`OutputLock` creates ``run.lock`` in the output directory (atomically, with
``O_EXCL``) holding the pid, host and start time of the run. A second run on the same
directory is refused with a message naming the holder; the lock of a process that died
without releasing it (same host, pid no longer alive) is taken over.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> with OutputLock(folder):
    ...     (folder / LOCK_NAME).is_file()
    True
    >>> (folder / LOCK_NAME).exists()
    False
"""

from __future__ import annotations

import datetime
import json
import os
import socket
from pathlib import Path
from typing import Optional

__all__ = ["LOCK_NAME", "OutputLock", "OutputLockedError"]

LOCK_NAME = "run.lock"


class OutputLockedError(RuntimeError):
    """Another live run holds the output directory."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


class OutputLock:
    """Exclusive use of ``directory`` by this process (re-entrant within the process).

    Args:
        directory: the run's output directory (created if needed).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self._owned = False

    def _holder(self) -> Optional[dict]:
        try:
            holder = json.loads(self.path.read_text())
            return holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int) else None
        except (OSError, ValueError):
            return None

    def acquire(self) -> None:
        """Take the lock; raises :class:`OutputLockedError` naming the holder when a live run has it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = self._holder()
            if holder is not None and holder["pid"] == me["pid"] and holder.get("host") == me["host"]:
                return  # this process holds it already
            if holder is not None and (holder.get("host") != me["host"] or _alive(holder["pid"])):
                raise OutputLockedError(
                    f"{self.directory} is in use by another run (pid {holder['pid']} on {holder.get('host')}, "
                    f"started {holder.get('started')}); wait for it to finish or choose another --output "
                    f"(if that run is gone, delete {self.path})"
                ) from None
            # stale: its process is dead (or the file is unreadable); take it over
            tmp = self.path.with_name(LOCK_NAME + f".{os.getpid()}")
            tmp.write_text(json.dumps(me))
            os.replace(tmp, self.path)
        else:
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(me))
        self._owned = True

    def release(self) -> None:
        """Give the lock back (only if this object took it)."""
        if self._owned:
            holder = self._holder()
            if holder is not None and holder["pid"] == os.getpid():
                self.path.unlink(missing_ok=True)
            self._owned = False

    def __enter__(self) -> "OutputLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
