"""The device's busy fraction: the union of work intervals over a window, and the profiler around it."""

import time

import pytest
import torch

from avalanche_freeze.host_proxies import DeviceBusyProfiler, busy_fraction


def test_busy_fraction_counts_overlaps_once_and_cuts_at_the_window():
    assert busy_fraction([(0, 2), (1, 3), (6, 12)], window=(0, 10)) == pytest.approx(0.7)
    assert busy_fraction([(1, 2), (1.5, 1.8)], window=(0, 4)) == pytest.approx(0.25)  # nested: once
    assert busy_fraction([(-5, 1), (9, 20)], window=(0, 10)) == pytest.approx(0.2)  # outside parts cut off
    assert busy_fraction([], window=(0, 1)) == 0
    assert busy_fraction([(3, 1)], window=(0, 4)) == 0  # an empty interval covers nothing
    with pytest.raises(ValueError, match="window=.*end > start"):
        busy_fraction([(0, 1)], window=(2, 2))


def test_profiled_window_is_busy_while_ops_run_and_idle_while_the_host_sleeps():
    a = torch.ones(1024, 1024)
    with DeviceBusyProfiler("cpu"):  # the profiler's first start in a process costs set-up time
        a @ a
    with DeviceBusyProfiler("cpu") as busy:  # ops long enough (tens of ms) that bookkeeping is small
        for _ in range(6):
            a @ a
    with DeviceBusyProfiler("cpu") as idle:
        for _ in range(4):
            a[:384, :384] @ a[:384, :384]  # a few ms of ops
            time.sleep(0.05)  # the host's own work: the device waits
    assert busy.fraction > 0.8
    assert idle.fraction < 0.5
