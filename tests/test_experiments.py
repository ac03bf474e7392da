"""The experiment scripts end to end on tiny settings: tables, the machine-readable line, reuse."""

import importlib.util
import re
from pathlib import Path

from .conftest import TINY_SET

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sets(*extra):
    args = []
    for item in TINY_SET + ["n_experiences=2", *extra]:
        args += ["--set", item]
    return args


def test_compare_strategies_prints_one_row_per_strategy_and_reuses_runs(tmp_path, fmnist_available, capsys):
    compare = _load("compare_strategies")
    argv = ["--strategies", "finetune", "der", "--seeds", "0", "1", "--output", str(tmp_path), *_sets()]
    assert compare.main(argv) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith(("finetune", "der"))]
    assert len(rows) == 2 and all("±" in row for row in rows)  # two seeds: mean ± std
    stamp = (tmp_path / "der" / "seed1" / "results.json").stat().st_mtime_ns
    assert compare.main(argv) == 0  # finished arms are reused, not re-run
    assert (tmp_path / "der" / "seed1" / "results.json").stat().st_mtime_ns == stamp
    assert compare.main(["--strategies", "moco"]) == 2


def test_bench_freeze_prints_ratios_and_the_machine_readable_line(tmp_path, fmnist_available, capsys):
    bench = _load("bench_freeze")
    assert bench.main(["--output", str(tmp_path), *_sets("freeze_tau=0", "freeze_max_share=0.3")]) == 0
    out = capsys.readouterr().out
    last = out.strip().splitlines()[-1]
    pattern = (r"backward_flops_ratio=(\S+) activation_bytes_ratio=(\S+) time_ratio=(\S+) "
               r"knn_acc_delta=(\S+) forgetting_delta=(\S+)")
    match = re.fullmatch(pattern, last)
    assert match, last
    assert float(match.group(1)) > 1.0 and float(match.group(2)) > 1.0  # task 2 ran with a frozen prefix
    assert "frozen blocks per task (LUMP+freeze): 0, " in out
