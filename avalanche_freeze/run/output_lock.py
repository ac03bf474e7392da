"""One run per output directory: an exclusive lock file that names its holder.

:class:`OutputLock` creates ``run.lock`` in the output directory holding the pid, host and
start time of the run. The content is written to a private temporary file first and then
hard-linked into place, which fails if the lock exists: a reader never sees a lock without its
holder, and two processes can never both create it. A second run on the same directory is
refused with a message naming the holder. The lock of a process that died without releasing it
(same host, pid no longer alive) is taken over: the stale file is renamed away (only one
process's rename of it succeeds, and a process that finds it renamed away a live lock instead
puts it back), then the new lock is linked in as above.

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
import uuid
from pathlib import Path
from typing import Optional

__all__ = ["LOCK_NAME", "OutputLock", "OutputLockedError"]

LOCK_NAME = "run.lock"
#: How many times a stale lock is cleared and taking the lock retried before giving up.
_ATTEMPTS = 20


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
        for _ in range(_ATTEMPTS):
            if self._link(me):
                self._owned = True
                return
            holder = self._holder()
            if holder is not None and holder["pid"] == me["pid"] and holder.get("host") == me["host"]:
                return  # this process holds it already
            if holder is not None and (holder.get("host") != me["host"] or _alive(holder["pid"])):
                raise OutputLockedError(
                    f"{self.directory} is in use by another run (pid {holder['pid']} on {holder.get('host')}, "
                    f"started {holder.get('started')}); wait for it to finish or choose another --output "
                    f"(if that run is gone, delete {self.path})"
                )
            self._remove_stale(holder)  # its process is dead (or the file is unreadable): try again
        raise OutputLockedError(f"{self.directory}: could not take {self.path} (it keeps changing hands); "
                                "another run is starting there")

    def _link(self, me: dict) -> bool:
        """Write ``me`` to a private file and hard-link it to the lock's path: ``False`` when a lock exists."""
        tmp = self.path.with_name(f"{LOCK_NAME}.{os.getpid()}.{uuid.uuid4().hex}")
        try:
            tmp.write_text(json.dumps(me))
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                return False
            return True
        finally:
            tmp.unlink(missing_ok=True)

    def _remove_stale(self, seen: Optional[dict]) -> None:
        """Rename the stale lock away if it is still the one judged stale (``seen``: its content, ``None``
        when unreadable); a lock that changed meanwhile is put back, or left to its new holder."""
        aside = self.path.with_name(f"{LOCK_NAME}.stale.{os.getpid()}.{uuid.uuid4().hex}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return  # another process moved it first
        try:
            moved = json.loads(aside.read_text())
        except (OSError, ValueError):
            moved = None
        if moved != seen and isinstance(moved, dict) and isinstance(moved.get("pid"), int) \
                and (moved.get("host") != socket.gethostname() or _alive(moved["pid"])):
            try:  # a live lock was renamed away by mistake: put it back unless another took the place
                os.link(aside, self.path)
            except FileExistsError:
                pass
        aside.unlink(missing_ok=True)

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

    def __exit__(self, exc_type, exc, traceback) -> None:
        try:
            self.release()
        except OSError:
            if exc_type is None:
                raise
            # the run's own error (e.g. a checkpoint that could not be written to a folder turned
            # read-only) is the one to report; the lock stays behind and a later run takes it over as stale
