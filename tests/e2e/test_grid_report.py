"""Grids (one command, finished runs skipped, W&B groups) and reports (summaries, plots) of runs."""

import json
import statistics
from pathlib import Path

import pytest
import yaml
from PIL import Image

from avalanche_freeze.cli import main
from avalanche_freeze.analysis.plots import (CURVE_PANEL, EFFICIENCY_PANEL, MATRIX_PANEL, SCATTER_PANEL, SCORE_PANEL,
                                             figure_size)
from avalanche_freeze.analysis.report import write_report
from avalanche_freeze.analysis.summary import format_markdown, load_arms, summarize_arms
from avalanche_freeze.run.config import ConfigError
from avalanche_freeze.run.grid import GridSpec
from avalanche_freeze.run.recipes import check_config

from ..conftest import REPO, TINY_SET


def _results(strategy, seed, matrix, *, time=10.0, saved=100.0, bwd=1000.0, joint=False, history=None):
    """A hand-made results.json dict: one knn_ci matrix, summaries computed by hand below."""
    from avalanche_freeze.analysis.results import RunResults

    n = len(matrix[-1])
    r = RunResults(config={"strategy": strategy, "seed": seed}, keys=["knn_ci"], n_tasks=n)
    r.data["acc_matrix"]["knn_ci"] = [list(row) for row in matrix]
    if joint:
        r.data["joint"] = True
    r.data["efficiency"] = [{"TrainTime_Exp": time, "SavedActBytes_Iter": saved, "BwdFLOPs_Exp": bwd}]
    if history:
        r.data["freeze_history"] = history
    return r.finalise()


def _write(root: Path, arm: str, seed: int, results: dict) -> None:
    folder = root / arm / f"seed{seed}"
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(results))


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    history = [{"experience": 1, "iteration": 4, "scores": {"stem": 0.95, "layer1.0": 0.5}, "frozen_units": ["stem"],
                "frozen_blocks": 1, "frozen_share": 0.1}]
    _write(root, "simsiam/lump", 0, _results("lump", 0, [[0.8, None], [0.6, 0.9]], time=10, saved=100, bwd=1000))
    _write(root, "simsiam/lump", 1, _results("lump", 1, [[0.9, None], [0.7, 0.9]], time=12, saved=100, bwd=1000))
    _write(root, "simsiam/lump_freeze", 0, _results("lump_freeze", 0, [[0.8, None], [0.7, 0.8]], time=8, saved=50,
                                                       bwd=800, history=history))
    _write(root, "simsiam/lump_freeze", 1, _results("lump_freeze", 1, [[0.8, None], [0.6, 0.8]], time=6, saved=50,
                                                       bwd=500, history=history))
    _write(root, "simsiam/joint", 0, _results("joint", 0, [[None, None], [0.9, 0.95]], joint=True, time=20))
    _write(root, "supervised/Naive", 0, _results("Naive", 0, [[0.99, None], [0.5, 0.99]], time=5, saved=50, bwd=500))
    return root


def test_summaries_of_hand_made_runs(runs):
    arms = load_arms(runs)
    assert [a.name for a in arms] == ["simsiam/joint", "simsiam/lump", "simsiam/lump_freeze", "supervised/Naive"]
    s = {x.name: x for x in summarize_arms(arms)}
    lump = s["simsiam/lump"].accuracy["knn_ci"]
    assert lump["avg_acc"][0] == pytest.approx((0.75 + 0.8) / 2)
    assert lump["avg_acc"][1] == pytest.approx(statistics.stdev([0.75, 0.8]))
    assert lump["forgetting_max"][0] == pytest.approx((0.2 + 0.2) / 2)  # max(0.8) - 0.6, max(0.9) - 0.7
    assert lump["learning_acc"][0] == pytest.approx(((0.8 + 0.9) / 2 + (0.9 + 0.9) / 2) / 2)
    frz = s["simsiam/lump_freeze"]
    # LUMP / arm per seed, median over seeds: time 10/8, 12/6; memory 2, 2; bwd FLOPs 1000/800, 1000/500
    assert frz.ratios["TrainTime_Exp"] == pytest.approx(statistics.median([10 / 8, 12 / 6]))
    assert frz.ratios["SavedActBytes_Iter_mean"] == pytest.approx(2.0)
    assert frz.ratios["BwdFLOPs_Exp"] == pytest.approx(statistics.median([1.25, 2.0]))
    assert frz.reference == "simsiam/lump" and s["supervised/Naive"].reference == "simsiam/lump"
    assert s["supervised/Naive"].ratios["BwdFLOPs_Exp"] == pytest.approx(2.0)  # seed 0 only
    assert s["supervised/Naive"].accuracy["knn_ci"]["avg_acc"] == (pytest.approx(0.745), None)  # one seed: no std
    joint = s["simsiam/joint"].accuracy["knn_ci"]
    assert joint["avg_acc"][0] == pytest.approx(0.925) and joint["forgetting_max"] == (None, None)
    table = format_markdown(summarize_arms(arms)).splitlines()
    assert table[0].startswith("| arm | seeds | knn_ci acc | knn_ci fgt max | knn_ci fgt last | knn_ci LA |")
    assert table[0].endswith("| time x | memory x | bwd FLOPs x |") and len(table) == 2 + 4
    assert table[2].startswith("| simsiam/joint | 1 | 92.50 | - | - | - |")
    assert table[3].startswith("| simsiam/lump | 2 | 77.50 ± 3.54 | 20.00 ± 0.00 | 20.00 ± 0.00 | 87.50 ± 3.54 | 1.00 |")


def test_report_writes_the_table_and_valid_pngs_of_the_expected_size(runs, tmp_path):
    files, _ = write_report(runs, tmp_path / "report", title="hand-made")
    assert set(files) == {"acc_matrix.png", "task_accuracy.png", "freeze_scores.png", "efficiency.png",
                          "acc_vs_flops.png", "report.md"}
    expected = {"acc_matrix.png": figure_size(4, MATRIX_PANEL), "task_accuracy.png": figure_size(4, CURVE_PANEL),
                "freeze_scores.png": figure_size(1, SCORE_PANEL, max_cols=3),
                "efficiency.png": figure_size(1, EFFICIENCY_PANEL), "acc_vs_flops.png": figure_size(1, SCATTER_PANEL)}
    for name, size in expected.items():
        with Image.open(files[name]) as image:
            assert image.format == "PNG" and image.size == size, name
            image.verify()
    assert expected["acc_matrix.png"] == (1200, 280)
    text = files["report.md"].read_text()
    assert text.startswith("# hand-made") and "| simsiam/lump_freeze | 2 |" in text and "![efficiency.png]" in text
    # without a freezing history there is no freezing plot
    files, _ = write_report(runs / "supervised", tmp_path / "report2")
    assert "freeze_scores.png" not in files and (tmp_path / "report2" / "acc_matrix.png").is_file()


def test_report_figures_say_what_they_show(runs, tmp_path, monkeypatch):
    """Read the figures back: units, labels, legends with seed counts, both protocols by name, no offset
    exponent, units never scored masked (grey) instead of drawn as 0, no zoom that makes a small gap fill the axis."""
    from matplotlib.figure import Figure

    from avalanche_freeze.analysis.results import RunResults

    hist = [{"experience": 1, "iteration": 4, "scores": {"stem": 0.95}, "frozen_units": ["stem"], "frozen_blocks": 1,
             "frozen_share": 0.1},
            {"experience": 2, "iteration": 4, "scores": {"stem": 0.9, "layer1.0": 0.2}, "frozen_units": ["stem"],
             "frozen_blocks": 1, "frozen_share": 0.1}]
    for seed in (0, 1):  # a freezing arm whose runs have both protocols, and a unit scored in one task only
        r = RunResults(config={"strategy": "lump_freeze", "seed": seed}, keys=["knn_ci", "knn_ti"], n_tasks=3)
        for key in ("knn_ci", "knn_ti"):
            r.data["acc_matrix"][key] = [[0.9, None, None], [0.7, 0.8, None], [0.6, 0.7, 0.8 + 0.01 * seed]]
        r.data["efficiency"] = [{"TrainTime_Exp": 1.0, "SavedActBytes_Iter": 1.0, "BwdFLOPs_Exp": 2.5e12}] * 3
        r.data["freeze_history"] = hist
        _write(tmp_path / "both", "rule", seed, r.finalise())
    figures = {}
    real_savefig = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, path, **kw: (figures.__setitem__(Path(path).name, fig),
                                                                     real_savefig(fig, path, **kw))[1])
    write_report(tmp_path / "both", tmp_path / "report")
    titles = [ax.get_title() for ax in figures["acc_matrix.png"].axes if ax.get_title()]
    assert titles == ["rule (2 seeds)\nkNN, class-incremental", "rule (2 seeds)\nkNN, task-incremental"]
    scatter = figures["acc_vs_flops.png"].axes[0]
    assert "TFLOPs" in scatter.get_xlabel() and "std over seeds" in scatter.get_ylabel()
    assert scatter.xaxis.get_offset_text().get_text() == ""  # 2.5 TFLOPs, not 2.5 x 1e12
    assert [t.get_text() for t in scatter.get_legend().get_texts()] == ["rule (2 seeds)"]
    low, high = scatter.get_ylim()
    assert high - low >= 10  # a 1-point spread does not fill the axis
    scores = figures["freeze_scores.png"].axes[0]
    grid = scores.images[0].get_array()
    assert grid.mask[1, 0] and not grid.mask[1, 1] and grid[1, 1] == pytest.approx(0.2)  # layer1.0: T1 not scored
    assert scores.get_xlabel() == "last decision of task"
    assert {t.get_text() for t in scores.get_legend().get_texts()} == {"frozen", "not scored"}
    curves = figures["task_accuracy.png"].axes[0]
    assert "2 seeds, band: +- std" in curves.get_title() and curves.get_legend() is not None
    assert curves.collections  # the std bands


def test_report_command_and_its_errors(runs, tmp_path, capsys):
    assert main(["report", str(runs), "--output", str(tmp_path / "r")]) == 0
    assert "| simsiam/lump |" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "nothing")]) == 1
    assert "is not a folder of runs" in capsys.readouterr().err
    assert main(["report", str(runs), "--key", "linear_ti"]) == 1
    assert "key='linear_ti' is not an accuracy matrix of every run; accepted: knn_ci" in capsys.readouterr().err


def test_report_skips_what_is_not_a_run_and_names_it(runs, tmp_path, capsys):
    bad = {"dir": None, "number": "5", "matrix": json.dumps({"config": {"seed": 0}, "acc_matrix": 5}), "text": "nope"}
    for name, content in bad.items():
        path = runs / "broken" / name / "seed0" / "results.json"
        path.parent.mkdir(parents=True)
        path.mkdir() if content is None else path.write_text(content)
    assert main(["report", str(runs), "--output", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    assert f"skipped {runs / 'broken/dir/seed0/results.json'} is not a run's results (a directory)" in err
    assert "broken/number/seed0/results.json is not a run's results (it holds int, not a mapping)" in err
    assert "broken/matrix/seed0/results.json is not a run's results (its acc_matrix is not a mapping" in err
    assert "broken/text/seed0/results.json is not a run's results (JSONDecodeError" in err
    (tmp_path / "a_file").write_text("x")
    assert main(["report", str(runs), "--output", str(tmp_path / "a_file")]) == 1
    assert "a_file is a file, not a folder" in capsys.readouterr().err


@pytest.mark.parametrize("content, message", [
    ({"strategies": ["lump"], "seeds": [0], "colour": 1}, "unknown key 'colour'; accepted: name, output"),
    ({"strategies": ["naive"], "seeds": [0]}, "strategies=['naive'] is not accepted (unknown 'naive'); accepted"),
    ({"strategies": ["lump"], "seeds": [0, 0]}, "seeds=[0, 0] is not accepted; accepted: a non-empty list"),
    ({"strategies": ["lump"], "ssl": ["simclr2"], "seeds": [0]}, "ssl=['simclr2'] is not accepted"),
    ({"seeds": [0]}, "lacks 'strategies'"),
    ({"strategies": ["lump"], "seeds": [0], "set": ["train.epochs"]}, "set=['train.epochs'] is not accepted"),
    ({"strategies": ["lump"], "seeds": [0], "output": ["a", "b"]}, "output=['a', 'b'] is not accepted; accepted: a folder"),
    ({"strategies": ["lump"], "seeds": [0], "config": 5}, "config=5 is not accepted; accepted: a file path or a list"),
])
def test_grid_files_are_checked(tmp_path, content, message):
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")
                       .replace(")", r"\)")):
        GridSpec.from_file(path)


def test_grid_layout_and_configurations(tmp_path):
    (tmp_path / "c.yaml").write_text("train:\n  epochs: 2\n")
    path = tmp_path / "grids" / "g.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump({"name": "g", "output": str(tmp_path / "out"), "config": ["../c.yaml"],
                                    "set": ["lump.mem_size=32"], "strategies": ["lump", "Replay"],
                                    "ssl": ["simsiam", "barlowtwins"], "seeds": [3]}))
    spec = GridSpec.from_file(path)
    runs = spec.runs()
    assert [r.output.relative_to(tmp_path / "out").as_posix() for r in runs] == [
        "simsiam/lump/seed3", "barlowtwins/lump/seed3", "supervised/Replay/seed3"]
    cfg = spec.config_of(runs[1])
    assert (cfg.train.epochs, cfg.lump.mem_size, cfg.ssl.name, cfg.seed, cfg.strategy) == (2, 32, "barlowtwins", 3, "lump")
    assert main(["grid", str(tmp_path / "missing.yaml")]) == 2
    # a bad value in any run's configuration stops the grid before the first run starts
    assert main(["grid", str(path), "--set", "train.epochs=0"]) == 2
    assert not (tmp_path / "out").exists()


def test_grid_runs_once_groups_wandb_runs_and_skips_finished_runs(tmp_path, fmnist_available, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "out"
    grid = tmp_path / "g.yaml"
    grid.write_text(yaml.safe_dump({"name": "grid-group-7f3a", "output": str(out), "strategies": ["lump", "Naive"],
                                    "ssl": ["simsiam"], "seeds": [0],
                                    "set": TINY_SET + ["data.n_experiences=2"]}))
    assert main(["grid", str(grid), "--wandb"]) == 0
    printed = capsys.readouterr().out
    assert "[1/2] simsiam/lump seed 0: trained in" in printed and "[2/2] supervised/Naive seed 0: trained in" in printed
    for arm, job in (("simsiam/lump", b"lump"), ("supervised/Naive", b"Naive")):
        (run_dir,) = (out / arm / "seed0" / "wandb").glob("offline-run-*")
        (log,) = run_dir.glob("*.wandb")
        data = log.read_bytes()
        assert b"grid-group-7f3a" in data and job in data  # the run's group and job type
    assert (out / "report" / "report.md").is_file() and (out / "report" / "acc_matrix.png").is_file()
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("results.json")}
    assert main(["grid", str(grid), "--no-report"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("finished before, reused") == 2 and "grid: 2 reused, 0 resumed, 0 trained, 0 failed" in printed
    assert {p: p.stat().st_mtime_ns for p in out.rglob("results.json")} == stamps


def test_a_run_folder_with_unreadable_results_fails_alone(tmp_path, fmnist_available, capsys):
    out = tmp_path / "out"
    grid = tmp_path / "g.yaml"
    grid.write_text(yaml.safe_dump({"name": "g", "output": str(out), "strategies": ["Naive"], "ssl": ["simsiam"],
                                    "seeds": [0, 1], "set": TINY_SET + ["data.n_experiences=2"]}))
    broken = out / "supervised/Naive/seed0/results.json"
    broken.parent.mkdir(parents=True)
    broken.write_text("{not json")
    assert main(["grid", str(grid), "--no-report"]) == 1
    printed = capsys.readouterr().out
    assert f"seed 0: FAILED ({broken} is not a run's results (JSONDecodeError" in printed
    assert "seed 1: trained in" in printed  # the grid went on
    assert broken.read_text() == "{not json"  # and did not touch what it could not read


def test_grid_refuses_to_overwrite_a_run_of_other_settings(tmp_path, fmnist_available, capsys):
    out = tmp_path / "out"
    base = {"name": "g", "output": str(out), "strategies": ["Naive"], "ssl": ["simsiam"], "seeds": [0],
            "set": TINY_SET + ["data.n_experiences=2"]}
    grid = tmp_path / "g.yaml"
    grid.write_text(yaml.safe_dump(base))
    assert main(["grid", str(grid), "--no-report"]) == 0
    before = (out / "supervised/Naive/seed0/results.json").read_text()
    grid.write_text(yaml.safe_dump({**base, "set": base["set"] + ["supervised.lr=0.02"]}))
    assert main(["grid", str(grid), "--no-report"]) == 1
    assert "holds a run of another configuration, keys supervised.lr" in capsys.readouterr().out
    assert (out / "supervised/Naive/seed0/results.json").read_text() == before
    # neither the SSL method nor another supervised strategy's option changes a Naive run: it is reused
    grid.write_text(yaml.safe_dump({**base, "ssl": ["barlowtwins"], "set": base["set"] + ["supervised.ewc_lambda=5"]}))
    assert main(["grid", str(grid), "--no-report"]) == 0
    assert "finished before, reused" in capsys.readouterr().out


def test_report_logs_its_plots_and_table_to_an_offline_wandb_run(runs, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    assert main(["report", str(runs), "--output", str(tmp_path / "r"), "--wandb", "--title", "hand-made"]) == 0
    (run_dir,) = (tmp_path / "r" / "wandb").glob("offline-run-*")
    media = run_dir / "files" / "media"
    images = sorted(p.name.rsplit("_", 2)[0] for p in (media / "images" / "report").glob("*.png"))
    assert images == ["acc_matrix", "acc_vs_flops", "efficiency", "freeze_scores", "task_accuracy"]
    (table,) = (media / "table" / "report").glob("summary_*.table.json")
    data = json.loads(table.read_text())
    assert data["columns"][:3] == ["arm", "seeds", "knn_ci acc"] and [r[0] for r in data["data"]][1] == "simsiam/lump"
    assert b"hand-made" in next(run_dir.glob("*.wandb")).read_bytes()  # the group


def test_joint_upper_bound_trains_all_tasks_at_once(tmp_path, fmnist_available):
    from avalanche_freeze.run.config import ExperimentConfig
    from avalanche_freeze.run.experiment import ExperimentRun

    cfg = ExperimentConfig.from_sources(overrides=TINY_SET + ["strategy=joint", "data.n_experiences=2"])
    run = ExperimentRun.build(cfg, tmp_path / "joint", verbose=False)
    (joint_exp,) = run.benchmark.joint_train_stream
    n_images = sum(len(e.dataset) for e in run.benchmark.benchmark.train_stream)
    assert len(joint_exp.dataset) == n_images > 128
    r = run.run()
    assert r["joint"] and len(r["efficiency"]) == 1
    assert r["efficiency"][0]["Iterations_Exp"] == n_images // 32  # one pass over both tasks' images per epoch
    m = r["acc_matrix"]["knn_ci"]
    assert m[0] == [None, None] and None not in m[1]
    assert r["avg_acc"]["knn_ci"] == pytest.approx(sum(m[1]) / 2)
    assert r["forgetting_max"]["knn_ci"] is None and r["learning_acc"]["knn_ti"] is None
    # both tasks' banks come from the benchmark's per-task training data (task-incremental probes)
    assert run.strategy.probe_evaluator.trained == [0, 1]


@pytest.mark.parametrize("grid_file", sorted((REPO / "experiments" / "grids").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_shipped_grid_file_loads_and_every_run_is_a_valid_configuration(grid_file):
    spec = GridSpec.from_file(grid_file)
    runs = spec.runs()
    assert runs and all(check_config(spec.config_of(run)).strategy == run.strategy for run in runs)
    if grid_file.name == "fmnist_baselines.yaml":  # what replaced experiments/compare_strategies.py
        assert {r.strategy for r in runs} == {"finetune", "lump", "si", "der", "cassle", "pfr"}
        assert sorted({r.seed for r in runs}) == [0, 1, 2]
