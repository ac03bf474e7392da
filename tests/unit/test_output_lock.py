"""The output lock under a race: two processes taking it at the same instant never both get it."""

import json
import multiprocessing as mp
import socket
import subprocess
import sys

import pytest

from avalanche_freeze.run.output_lock import LOCK_NAME, OutputLock, OutputLockedError

TRIALS = 500


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _racer(folders, barrier, results) -> None:
    for folder in folders:
        barrier.wait()
        lock = OutputLock(folder)
        try:
            lock.acquire()
            results.put((str(folder), 1))
        except OutputLockedError:
            results.put((str(folder), 0))
        barrier.wait()  # both have tried: now let go
        lock.release()


@pytest.mark.parametrize("stale", [False, True], ids=["fresh", "stale lock before"])
def test_two_processes_never_both_hold_the_lock(tmp_path, stale):
    folders = [tmp_path / f"run{i}" for i in range(TRIALS)]
    dead = _dead_pid()
    for folder in folders:
        folder.mkdir()
        if stale:  # a lock left by a process that died: both racers try to take it over
            (folder / LOCK_NAME).write_text(json.dumps({"pid": dead, "host": socket.gethostname(), "started": "x"}))
    ctx = mp.get_context("fork")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    racers = [ctx.Process(target=_racer, args=(folders, barrier, results)) for _ in range(2)]
    for r in racers:
        r.start()
    taken = {}
    for _ in range(2 * TRIALS):
        folder, got = results.get(timeout=120)
        taken[folder] = taken.get(folder, 0) + got
    for r in racers:
        r.join(timeout=60)
    assert sorted(set(taken.values())) == [1], {f: n for f, n in taken.items() if n != 1}  # exactly one, every time
    assert all(not (folder / LOCK_NAME).exists() for folder in folders)  # released
    assert not [p for folder in folders for p in folder.iterdir()]  # no temporary or stale file left behind


def test_a_reader_never_sees_a_lock_without_its_holder(tmp_path):
    """The lock appears with its content (linked from a finished file), never empty."""
    lock = OutputLock(tmp_path)
    lock.acquire()
    holder = json.loads((tmp_path / LOCK_NAME).read_text())
    assert holder["pid"] > 0 and holder["host"] == socket.gethostname()
    lock.release()


def test_the_run_s_own_error_is_reported_when_the_lock_cannot_be_released(tmp_path, monkeypatch):
    """A folder that turned read-only mid-run: the checkpoint write fails, then so does the lock's removal;
    the checkpoint's error is the one raised (the lock stays, to be taken over as stale)."""
    from pathlib import Path

    real_unlink = Path.unlink

    def read_only_folder(self, missing_ok=False):
        if self.name == LOCK_NAME:
            raise PermissionError(13, "Permission denied", str(self))
        return real_unlink(self, missing_ok=missing_ok)

    with pytest.raises(OSError, match="cannot write the checkpoint"):
        with OutputLock(tmp_path):
            monkeypatch.setattr(Path, "unlink", read_only_folder)
            raise OSError("cannot write the checkpoint")
    assert (tmp_path / LOCK_NAME).exists()
    with pytest.raises(PermissionError):  # without an error of the run's own, the release error is not hidden
        with OutputLock(tmp_path / "other"):
            pass
