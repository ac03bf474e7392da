"""The experiment scripts end to end on tiny settings: tables, the machine-readable line, reuse."""

import importlib.util
import json
import re

import pytest

from ..conftest import REPO, TINY_SET


EXPERIMENTS = REPO / "experiments"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sets(*extra):
    args = []
    for item in TINY_SET + ["data.n_experiences=2", *extra]:
        args += ["--set", item]
    return args


def test_bench_freeze_prints_ratios_and_the_machine_readable_line(tmp_path, fmnist_available, capsys):
    bench = _load("bench_freeze")
    rule = ("freeze.tau=0", "freeze.decide_every=2", "freeze.max_frozen_share=0.3")
    assert bench.main(["--output", str(tmp_path), *_sets(*rule)]) == 0
    out = capsys.readouterr().out
    last = out.strip().splitlines()[-1]
    pattern = (r"backward_flops_ratio=(\S+) activation_bytes_ratio=(\S+) time_ratio=(\S+) "
               r"knn_acc_delta=(\S+) forgetting_delta=(\S+)")
    match = re.fullmatch(pattern, last)
    assert match, last
    assert float(match.group(1)) > 1.0 and float(match.group(2)) > 1.0  # task 2 ran with a frozen prefix
    rule_row = next(line for line in out.splitlines() if line.startswith("rule "))
    # frozen blocks per task: none in task 1, 3 (the cap) after; one check, and the cap stopped the prefix
    assert rule_row.rstrip().endswith(" 0,3       cap 1")
    # without controls too, the rule's differences from LUMP paired by seed
    assert "rule minus arm, paired by seed" in out
    arms = json.loads((tmp_path / "bench.json").read_text())["cells"][0]["arms"]
    lines = out.splitlines()
    lump_row = lines[next(i for i, line in enumerate(lines) if line.startswith("rule minus arm")) + 2]
    delta = arms["rule"]["acc_knn_ci"][0] - arms["lump"]["acc_knn_ci"][0]
    assert lump_row.split()[:3] == ["lump", f"{delta:.2f}", f"({int(delta > 0)}/1)"]


def test_bench_freeze_records_a_failed_run_and_goes_on(tmp_path, fmnist_available, capsys, monkeypatch):
    """Seed 1's rule run diverges: the bench finishes seed 0, names the failure, leaves seed 1 out, exits 1."""
    from avalanche_freeze.health import TrainingHealthError

    bench = _load("bench_freeze")
    real = bench.run_or_reuse

    def diverging(cfg, folder, **kwargs):
        if cfg.seed == 1 and cfg.strategy == "lump_freeze":
            raise TrainingHealthError("non-finite loss (inf) at task 0, epoch 0, iteration 3")
        return real(cfg, folder, **kwargs)

    monkeypatch.setattr(bench, "run_or_reuse", diverging)
    rule = ("freeze.tau=0", "freeze.decide_every=2", "freeze.max_frozen_share=0.3")
    assert bench.main(["--output", str(tmp_path), "--seeds", "0", "1", *_sets(*rule)]) == 1
    captured = capsys.readouterr()
    assert "lump_freeze seed 1 FAILED: non-finite loss (inf)" in captured.err
    assert "FAILED (left out of the table; a failed LUMP or rule run leaves out its seed): lump_freeze seed 1" \
        in captured.out
    cell = json.loads((tmp_path / "bench.json").read_text())["cells"][0]
    assert cell["seeds"] == [0] and cell["arms"]["rule"]["seeds"] == [0]
    assert (tmp_path / "simsiam" / "e1" / "lump" / "seed1" / "results.json").is_file()  # its LUMP run was kept


def test_bench_freeze_says_how_many_seeds_a_0_3_point_bound_needs(capsys):
    bench = _load("bench_freeze")
    assert bench.seeds_for_margin(3.0) == 271  # at the targets' 0.3-point margin
    # rule minus LUMP in CI accuracy: 1, 2, 4 (std sqrt(7/3) = 1.53 -> (1.645 * 1.53 / 0.3)^2 = 70.1 -> 71);
    # in the other metrics: 0, 0, 3 (std sqrt(3) = 1.73 -> 90.2 -> 91)
    keys = [key for key, _ in bench.METRICS]
    lump = {"seeds": [0, 1, 2], **{key: [10.0, 10.0, 10.0] for key in keys}}
    rule = {"seeds": [0, 1, 2], "acc_knn_ci": [11.0, 12.0, 14.0],
            **{key: [10.0, 10.0, 13.0] for key in keys[1:]}}
    bench._print_paired({"arms": {"lump": lump, "rule": rule}})
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2].split() == ["std", "per", "seed", "1.53", "1.73", "1.73", "1.73"]
    assert lines[-1].split() == ["seeds", "for", "0.3", "71", "91", "91", "91"]
    # one seed: no spread to measure, so no such table
    bench._print_paired({"arms": {arm: {k: v[:1] for k, v in s.items()} for arm, s in (("lump", lump), ("rule", rule))}})
    assert "what the seeds can resolve" not in capsys.readouterr().out


def test_bench_freeze_controls_freeze_as_much_as_the_rule_and_plot(tmp_path, fmnist_available, capsys):
    bench = _load("bench_freeze")
    rule = ("freeze.tau=0", "freeze.decide_every=2", "freeze.max_frozen_share=0.3")
    png = tmp_path / "acc_vs_flops.png"
    argv = ["--output", str(tmp_path), "--controls-at", "1", "--fixed-prefix", "3:2", "--plot", str(png),
            *_sets(*rule, "data.n_experiences=5")]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    arms = json.loads((tmp_path / "bench.json").read_text())["cells"][0]["arms"]
    assert set(arms) == {"lump", "rule", "fixed2", "fixed3", "freezeout", "random", "fixed3_2b"}
    # --fixed-prefix 3:2: the first two blocks from the start of task 3, whatever the rule froze
    assert arms["fixed3_2b"]["schedules"] == [[[2, 0, 2]]] and arms["fixed3_2b"]["frozen_blocks"] == [[0, 0, 2, 2, 2]]
    assert "fixed3_2b " in out
    assert all(line in out for line in ("fixed2 ", "freezeout "))
    target = arms["rule"]["frozen_compute"][0]
    assert target > 0 and arms["lump"]["frozen_compute"][0] == 0
    assert arms["fixed2"]["schedules"][0][0][:2] == [1, 0] and arms["fixed3"]["schedules"][0][0][:2] == [2, 0]
    # the fixed prefixes can only approximate; FreezeOut and the random draw match it closely
    for arm in ("freezeout", "random"):
        assert abs(arms[arm]["frozen_compute"][0] - target) <= 0.25 * target, (arm, arms[arm]["frozen_compute"])
    assert "rule minus arm, paired by seed" in out
    cell = json.loads((tmp_path / "bench.json").read_text())["cells"][0]
    diffs = bench.paired_differences(cell, "fixed2")
    assert diffs["acc_knn_ci"] == [pytest.approx(arms["rule"]["acc_knn_ci"][0] - arms["fixed2"]["acc_knn_ci"][0])]
    cost = bench.paired_differences(cell, "lump", first="fixed3_2b")  # printed as "arm minus LUMP"
    assert cost["acc_knn_ti"] == [pytest.approx(arms["fixed3_2b"]["acc_knn_ti"][0] - arms["lump"]["acc_knn_ti"][0])]
    block = out[out.index("arm minus LUMP, paired by seed"):].splitlines()
    assert next(line for line in block if line.startswith("fixed3_2b ")).split()[1] == f"{cost['acc_knn_ci'][0]:.2f}"
    assert not any(line.startswith(("rule ", "lump ")) for line in block[:9])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    assert Image.open(png).size == (368, 288)  # one panel and its legend: 4.6 x 3.6 inches at 80 dpi
    # --finished-only runs nothing: an arm that never ran (here 2:1) is left out, the others are summarised
    assert bench.main([*argv, "--fixed-prefix", "3:2", "2:1", "--finished-only"]) == 0
    summary = json.loads((tmp_path / "bench.json").read_text())["cells"][0]["arms"]
    assert set(summary) == set(arms)  # every arm that ran in that seed, none that did not
    assert not list(tmp_path.rglob("fixed2_1b"))
    capsys.readouterr()
    assert bench.fixed_prefix_arm("1:2", 9) == ("fixed1_2b", [[0, 0, 2]])  # frozen at initialisation
    for spec in ("2", "0:3", "2:99"):  # not TASK:BLOCKS; tasks count from 1; more blocks than the backbone's
        assert bench.main(["--output", str(tmp_path), "--controls-at", "1", "--fixed-prefix", spec, *_sets()]) == 2
        assert f"--fixed-prefix '{spec}' is not accepted" in capsys.readouterr().err


def test_bench_freeze_ablation_ladder_takes_one_term_away_per_arm(tmp_path, fmnist_available, capsys):
    bench = _load("bench_freeze")
    rule = ("freeze.measure=subspace", "freeze.tau=0.5", "freeze.stability=0.5", "freeze.max_frozen_share=0.3",
            "data.n_experiences=5", "data.max_train_per_task=64", "train.batch_size=16")
    argv = ["--output", str(tmp_path), "--controls-at", "1", "--controls", "fixed3", "--ablations", *_sets(*rule)]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    cell = json.loads((tmp_path / "bench.json").read_text())["cells"][0]
    assert set(cell["arms"]) == {"lump", "rule", "fixed3", "tau0", "no_gate", "task_start"}
    config = lambda arm: json.loads((tmp_path / "simsiam" / "e1" / arm / "seed0" / "results.json").read_text())  # noqa: E731
    assert config("tau0")["config"]["freeze"]["tau"] == 0 and config("tau0")["config"]["freeze"]["stability"] == 0.5
    assert config("no_gate")["config"]["freeze"]["stability"] == 0 and config("no_gate")["config"]["freeze"]["tau"] == 0.5
    history = config("task_start")["freeze_history"]
    assert history and all(h["iteration"] == 0 for h in history)  # once per task, before training
    decisions = [h for h in history if not h.get("revision")]  # (revisions of the prefix have no gate at all)
    assert decisions and all(set(h["stability"].values()) == {1.0} for h in decisions)  # no gate: every unit passes
    assert any(min(h["stability"].values()) < 1.0 for h in config("lump_freeze")["freeze_history"]
               if not h.get("revision"))  # the gate measured
    counts = cell["arms"]["rule"]["stopped_by"]
    assert sum(counts.values()) == len(config("lump_freeze")["freeze_history"])
    assert cell["arms"]["fixed3"]["stopped_by"] == {}  # a schedule decides nothing
    header = next(line for line in out.splitlines() if line.startswith("arm "))
    assert header.rstrip().endswith("stopped by")
    capsys.readouterr()
    # a ladder rung the configuration cannot run is refused before anything runs
    assert bench.main(["--output", str(tmp_path / "x"), "--controls-at", "1", "--ablations", "task_start",
                       *_sets("freeze.measure=gradient")]) == 2
    assert "--ablations task_start cannot run with this configuration" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_demo_configuration_learns_and_freezes(tmp_path, fmnist_available):
    """The `make run` job at full size (about 1.5 minutes): far above chance; the rule decides every
    16 iterations from task 3 on (its default ``first_task``), the prefix only grows, stays within
    the default cap (half the forward compute), and by the last task part of it is frozen."""
    from avalanche_freeze.cli import main

    config = EXPERIMENTS / "configs" / "fmnist.yaml"
    assert main(["run", "--quiet", "--strategy", "lump_freeze", "--config", str(config), "--output", str(tmp_path)]) == 0
    r = json.loads((tmp_path / "results.json").read_text())
    assert r["avg_acc"]["knn_ci"] > 0.40 and r["avg_acc"]["knn_ti"] > 0.80  # chance: 0.10 and 0.50
    blocks = [e["frozen_blocks"] for e in r["efficiency"]]
    assert blocks[:2] == [0, 0] and blocks == sorted(blocks) and blocks[-1] > 0
    history = r["freeze_history"]
    assert history and all(h["experience"] >= 2 and h["iteration"] % 16 == 0 for h in history)
    assert all(0 < h["frozen_share"] <= 0.5 for h in history)
    assert r["efficiency"][-1]["BwdFLOPs_Iter"] < r["efficiency"][0]["BwdFLOPs_Iter"]


def test_bench_throughput_measures_each_arm_in_its_own_process(tmp_path, capsys):
    bench = _load("bench_throughput")
    out = tmp_path / "throughput.json"
    assert bench.main(["--synthetic", "--width", "0.125", "--batch-size", "8", "--iters", "1", "--warmup", "1",
                       "--repeats", "1", "--precision", "32", "--arms", "lump", "lump_freeze",
                       "--frozen-units", "3", "--augment-backends", "kornia", "batched", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "lump_freeze" in text and "load+augment share" in text
    summary = text.strip().splitlines()[-1]
    assert summary.startswith("lump_over_finetune_time=nan lump_over_lump_freeze_time=")
    assert float(summary.split("batched_speedup=")[1]) > 0
    rows = {(r["arm"], r["augment"]): r for r in json.loads(out.read_text())["rows"]}
    assert len(rows) == 4
    rows = {arm: r for (arm, augment), r in rows.items() if augment == "kornia"}
    assert rows["lump_freeze"]["frozen_share"] > 0 and rows["lump"]["frozen_share"] == 0
    assert all(r["images_per_s"] > 0 and r["peak_mib"] >= 0 and 0 <= r["load_augment_share"] <= 1
               for r in rows.values())
    with pytest.raises(SystemExit):  # neither synthetic images nor a dataset
        bench.main(["--iters", "1"])


def test_tune_freeze_pairs_each_seed_with_lump_and_averages_the_deltas():
    tune = _load("tune_freeze")
    lump = {"efficiency_total": {"BwdFLOPs_Exp": 300.0}, "avg_acc": {"knn_ci": 0.60, "knn_ti": 0.90},
            "forgetting_max": {"knn_ci": 0.10, "knn_ti": 0.02}}
    rule = {"efficiency_total": {"BwdFLOPs_Exp": 200.0}, "avg_acc": {"knn_ci": 0.598, "knn_ti": 0.91},
            "forgetting_max": {"knn_ci": 0.104, "knn_ti": 0.01}}
    ratio, acc, fgt = tune.paired_deltas(lump, rule)
    assert ratio == pytest.approx(1.5)
    assert acc == pytest.approx({"knn_ci": -0.2, "knn_ti": 1.0})
    assert fgt == pytest.approx({"knn_ci": 0.4, "knn_ti": -1.0})
    assert tune.within_tolerance(acc, fgt, 0.5) and not tune.within_tolerance(acc, fgt, 0.3)  # forgetting +0.4


def test_tune_freeze_runs_every_seed_and_chooses_the_cheapest_candidate_within_tolerance(
        tmp_path, fmnist_available, capsys):
    tune = _load("tune_freeze")
    freezes, never = "freeze.tau=0,freeze.max_frozen_share=0.3", "freeze.max_frozen_share=0"
    argv = ["--seeds", "0", "1", "--candidate", never, "--candidate", freezes, "--tolerance", "100",
            "--output", str(tmp_path), *_sets()]
    assert tune.main(argv) == 0
    out = capsys.readouterr().out
    for label in ("lump", "rule_" + never.replace("=", "-"), "rule_" + freezes.replace("=", "-")):
        assert sorted(p.name for p in (tmp_path / label).iterdir()) == ["seed0", "seed1"]
        cfg = json.loads((tmp_path / label / "seed1" / "results.json").read_text())["config"]
        assert cfg["data"]["eval_split"] == "validation" and cfg["seed"] == 1
    never_row = next(line for line in out.splitlines() if line.startswith(never + " "))
    assert " 1.000 " in never_row and " 2/2 " in never_row  # nothing frozen: LUMP's FLOPs in both seeds
    assert out.strip().splitlines()[-1].startswith(f"chosen={freezes} backward_flops_ratio=")
    assert json.loads((tmp_path / "tune.json").read_text())["seeds"] == [0, 1]


def test_eval_noise_compares_one_model_on_validation_and_test_images(tmp_path, fmnist_available, capsys):
    """The validation run of tune_freeze.py and the test run of bench_freeze.py train the same
    model; eval_noise.py checks that and reports the difference of the paired differences."""
    tune, bench, noise = _load("tune_freeze"), _load("bench_freeze"), _load("eval_noise")
    freezes, never = "freeze.tau=0,freeze.max_frozen_share=0.3", "freeze.max_frozen_share=0"
    assert tune.main(["--candidate", freezes, "--candidate", never, "--tolerance", "100",
                      "--output", str(tmp_path / "tune"), *_sets()]) == 0
    assert bench.main(["--output", str(tmp_path / "bench"), *_sets("freeze.tau=0", "freeze.max_frozen_share=0.3")]) == 0
    cell = next((tmp_path / "bench").glob("*/e1"))
    candidate = tmp_path / "tune" / ("rule_" + freezes.replace("=", "-"))
    capsys.readouterr()
    assert noise.main(["--pair", str(cell), str(candidate)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    read = lambda run: json.loads((run / "seed0" / "results.json").read_text())  # noqa: E731
    val_rule, val_lump, test_rule, test_lump = (read(candidate), read(tmp_path / "tune" / "lump"),
                                                read(cell / "lump_freeze"), read(cell / "lump"))
    expected = 100 * ((val_rule["avg_acc"]["knn_ci"] - val_lump["avg_acc"]["knn_ci"])
                      - (test_rule["avg_acc"]["knn_ci"] - test_lump["avg_acc"]["knn_ci"]))
    assert val_rule["avg_acc"] != test_rule["avg_acc"]  # other images, so other accuracies
    assert out[-1].startswith(f"pairs=1 rms_acc_ci={abs(expected):.2f} rms_acc_ti=")
    assert out[-3].split()[1:3] == ["0", f"{expected:+.2f}"]
    assert noise.same_weights(cell / "lump_freeze" / "seed0", candidate / "seed0")
    # a candidate that never froze trained another model than the test run's rule: refused
    assert noise.main(["--pair", str(cell), str(tmp_path / "tune" / ("rule_" + never.replace("=", "-")))]) == 2
    assert "end with different weights" in capsys.readouterr().err
    # test runs given as the validation runs; a folder without runs; a seed that never ran
    assert noise.main(["--pair", str(cell), str(cell / "lump_freeze")]) == 2
    assert noise.main(["--pair", str(tmp_path / "none"), str(candidate)]) == 2
    assert noise.main(["--pair", str(cell), str(candidate), "--seeds", "7"]) == 2
    err = capsys.readouterr().err
    assert "was evaluated on the test split; accepted here: validation" in err
    assert "no seed finished" in err and "has no results.json" in err


def test_tune_freeze_names_the_closest_candidate_when_none_is_within_tolerance(tmp_path, monkeypatch, capsys):
    tune = _load("tune_freeze")
    lump = {"efficiency_total": {"BwdFLOPs_Exp": 300.0}, "avg_acc": {"knn_ci": 0.6, "knn_ti": 0.9},
            "forgetting_max": {"knn_ci": 0.1, "knn_ti": 0.0}}

    def shifted(ci_loss, ti_loss, flops):
        return {"efficiency_total": {"BwdFLOPs_Exp": flops}, "forgetting_max": lump["forgetting_max"],
                "avg_acc": {"knn_ci": 0.6 - ci_loss / 100, "knn_ti": 0.9 - ti_loss / 100}, "efficiency": []}

    outcome = {"lump": lump, "rule_freeze.stability-0.99": shifted(2.0, 0.5, 150.0),
               "rule_freeze.stability-0.999": shifted(0.4, 0.9, 250.0)}
    monkeypatch.setattr(tune, "_run", lambda files, overrides, label, output, failed: outcome[label])
    argv = ["--candidate", "freeze.stability=0.99", "--candidate", "freeze.stability=0.999", "--output", str(tmp_path)]
    assert tune.main(argv) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == ("chosen=none (no candidate within tolerance of LUMP on the validation split; "
                    "closest=freeze.stability=0.999, 0.90 points beyond LUMP)")
    assert json.loads((tmp_path / "tune.json").read_text())["seeds"] == [0]  # the configured seed
    assert tune.main([*argv, "--set", "seed=3"]) == 0
    assert json.loads((tmp_path / "tune.json").read_text())["seeds"] == [3]


def test_tune_freeze_records_a_failed_run_and_goes_on(tmp_path, monkeypatch, capsys):
    """A candidate that diverges in seed 1 is listed as failed and not chosen; the other candidate is."""
    from avalanche_freeze.health import TrainingHealthError

    tune = _load("tune_freeze")
    lump = {"efficiency_total": {"BwdFLOPs_Exp": 300.0}, "avg_acc": {"knn_ci": 0.6, "knn_ti": 0.9},
            "forgetting_max": {"knn_ci": 0.1, "knn_ti": 0.0}, "efficiency": []}
    cheap = {**lump, "efficiency_total": {"BwdFLOPs_Exp": 100.0}}
    safe = {**lump, "efficiency_total": {"BwdFLOPs_Exp": 250.0}}

    def run_or_reuse(cfg, folder):
        if cfg.strategy == "lump_freeze" and cfg.freeze.stability == 0.99 and cfg.seed == 1:
            raise TrainingHealthError("non-finite loss (inf) at task 0, epoch 0, iteration 3")
        return lump if cfg.strategy == "lump" else cheap if cfg.freeze.stability == 0.99 else safe

    monkeypatch.setattr(tune, "run_or_reuse", run_or_reuse)
    argv = ["--seeds", "0", "1", "--candidate", "freeze.stability=0.99", "--candidate", "freeze.stability=0.999",
            "--output", str(tmp_path)]
    assert tune.main(argv) == 1
    captured = capsys.readouterr()
    assert "rule_freeze.stability-0.99 seed 1 FAILED: non-finite loss" in captured.err
    assert "FAILED: rule_freeze.stability-0.99 seed 1: non-finite loss" in captured.out
    assert "FAILED (seed 1)" in captured.out
    assert captured.out.strip().splitlines()[-1].startswith("chosen=freeze.stability=0.999 backward_flops_ratio=1.200")


def test_augment_backends_records_a_failed_run_and_pairs_the_rest(tmp_path, monkeypatch, capsys):
    from avalanche_freeze.health import TrainingHealthError

    compare = _load("augment_backends")

    def run_or_reuse(cfg, folder):
        if cfg.augment.backend == "batched" and cfg.seed == 1:
            raise TrainingHealthError("non-finite loss (inf) at task 0, epoch 0, iteration 3")
        gain = 0.02 if cfg.augment.backend == "batched" else 0.0
        return {"avg_acc": {"knn_ci": 0.5 + gain, "knn_ti": 0.8 + gain}}

    monkeypatch.setattr(compare, "run_or_reuse", run_or_reuse)
    assert compare.main(["--seeds", "0", "1", "--output", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "batched seed 1 FAILED: non-finite loss" in captured.err
    assert "FAILED (its seed is left out): batched seed 1: non-finite loss" in captured.out
    assert captured.out.strip().splitlines()[-1] == "batched_minus_kornia_knn_ci=+2.00+-0.00 " \
        "batched_minus_kornia_knn_ti=+2.00+-0.00 seeds=1"


def test_ssl_lr_records_the_rates_at_which_every_seed_trains(tmp_path, fmnist_available, capsys):
    """A rate at which the run diverges is recorded as failed with its reason; the best is chosen among
    the rates at which every seed trained; finished runs are reused."""
    script = _load("ssl_lr")
    archive = tmp_path / "archive"
    argv = ["--methods", "simsiam", "--lrs", "0.03", "1e30", "--seeds", "0", "--output", str(tmp_path / "runs"),
            "--archive", str(archive), *_sets()]
    assert script.main(argv) == 0
    out = capsys.readouterr().out
    assert re.search(r"simsiam\s+1e\+30\s+0/1 .* seed 0: non-finite loss", out)
    assert re.search(r"simsiam\s+0.03\s+1/1\s+\d", out)
    assert re.fullmatch(r"ssl_lr method=simsiam trained_at=\[0.03\] best=0.03 knn_ci=\d+\.\d\d",
                        out.strip().splitlines()[-1])
    finished = tmp_path / "runs" / "lr0.03" / "simsiam" / "lump" / "seed0" / "results.json"
    config = json.loads(finished.read_text())["config"]
    assert config["train"]["lr"] == 0.03 and config["data"]["eval_split"] == "validation"
    # the archive holds the finished run's results and the failed run's log, nothing else
    assert sorted(str(p.relative_to(archive)) for p in archive.rglob("*") if p.is_file()) == [
        "lr0.03/simsiam/lump/seed0/results.json", "lr1e+30/simsiam/lump/seed0/log.txt"]
    # a fresh output folder: the archive's runs are reused (not trained again) and the failure still named
    fresh = [a if a != str(tmp_path / "runs") else str(tmp_path / "fresh") for a in argv]
    assert script.main([*fresh[:-len(_sets())], "--lrs", "0.03", "1e30", "--report-only", *_sets()]) == 0
    again = capsys.readouterr().out
    assert "best=0.03" in again and re.search(r"seed 0: non-finite loss", again)
    copied = tmp_path / "fresh" / "lr0.03" / "simsiam" / "lump" / "seed0" / "results.json"
    assert copied.read_text() == finished.read_text()
    stamp = copied.stat().st_mtime_ns
    assert script.main([*fresh[:-len(_sets())], "--lrs", "0.03", *_sets()]) == 0  # reused, not re-trained
    assert copied.stat().st_mtime_ns == stamp and "finished before, reused" in capsys.readouterr().out


def test_score_discrimination_scores_each_presentation_and_counts_separated_seeds(fmnist_available, capsys):
    script = _load("score_discrimination")
    sets = ["--set", "train.epochs=1", "--set", "data.max_train_per_task=128", "--set", "data.max_test_per_task=64",
            "--set", "model.width=0.125", "--set", "freeze.n_samples=32", "--set", "train.batch_size=32",
            "--set", "ssl.proj_dim=32", "--set", "ssl.pred_dim=8"]
    sets += ["--set", "freeze.measure=gradient"]  # the measure that reads gradients (--iterations)
    assert script.main([*sets, "--seeds", "0", "--iterations", "2", "--transforms", "permute", "invert"]) == 0
    out = capsys.readouterr().out
    last = out.strip().splitlines()[-1]
    match = re.fullmatch(r"separated_seeds=(\d)/1 measure=gradient score=calibrated tau=0.8 plain_min=(\S+) "
                         r"permute_max=(\S+)", last)
    assert match, last
    rows = {tuple(line.split()[:2]): line.split()[2:] for line in out.splitlines()
            if line.startswith(("plain ", "permute ", "invert "))}
    assert set(rows) == {(p, v) for p in ("plain", "permute", "invert") for v in ("score", "raw", "chance", "ceiling")}
    early = slice(0, 3)  # stem, layer1.0, layer1.1
    assert float(match.group(2)) == pytest.approx(min(map(float, rows[("plain", "score")][early])), abs=1e-3)
    assert float(match.group(3)) == pytest.approx(max(map(float, rows[("permute", "score")][early])), abs=1e-3)
    separated = (min(map(float, rows[("plain", "score")][early])) >= 0.8 > max(map(float, rows[("permute", "score")][early])))
    assert int(match.group(1)) == int(separated)
    assert script.main([*sets, "--transforms", "invert"]) == 2  # permute is what separation is judged on


def test_a_seed_separates_only_when_every_early_unit_is_on_the_right_side_of_tau():
    script = _load("score_discrimination")
    units = ("stem", "layer1.0", "layer1.1", "layer2.0")
    result = {"plain": {u: {"score": 0.9} for u in units}, "permute": {u: {"score": 0.1} for u in units}}
    assert script.separates(result, 0.8)
    result["permute"]["layer2.0"]["score"] = 0.95  # past layer1: not judged
    assert script.separates(result, 0.8)
    result["permute"]["layer1.1"]["score"] = 0.8  # at tau is not below it
    assert not script.separates(result, 0.8)
    result["permute"]["layer1.1"]["score"] = 0.1
    result["plain"]["stem"]["score"] = 0.79
    assert not script.separates(result, 0.8)


def _fake_result(final_row, avg, bwd_per_task, frozen_blocks):
    """A results.json with what the confirmation's report reads."""
    return {"acc_matrix": {"knn_ci": [final_row] * 5, "linear_ci": [[a - 0.1 for a in final_row]] * 5},
            "avg_acc": {"knn_ci": avg, "linear_ci": avg - 0.1},
            "efficiency_total": {"BwdFLOPs_Exp": sum(bwd_per_task)},
            "efficiency": [{"BwdFLOPs_Exp": b, "frozen_blocks": f, "freeze_stopped_by": None}
                           for b, f in zip(bwd_per_task, frozen_blocks)]}


def test_confirmation_report_pairs_arms_by_method_and_seed_and_judges_each_endpoint(tmp_path, capsys):
    conf = _load("confirmation")
    # rule - fixed3 on the shifted task 3: +3, +5, +4 (mean 4, sd 1, se 1/sqrt(3)); a fourth pair is
    # missing an arm and is left out
    gains = {("simsiam", 1000): 0.03, ("barlowtwins", 1000): 0.05, ("simsiam", 1001): 0.04}
    for (ssl, seed), gain in gains.items():
        arms = {"lump": _fake_result([0.8, 0.6, 0.7, 0.9, 0.9], 0.78, [10] * 5, [0] * 5),
                "lump_freeze": _fake_result([0.8, 0.6, 0.7 + gain, 0.9, 0.9], 0.78, [10, 10, 10, 5, 5], [0, 0, 0, 5, 5]),
                "fixed3": _fake_result([0.8, 0.6, 0.7, 0.9, 0.9], 0.78, [10, 10, 7, 7, 6], [0, 0, 3, 3, 3]),
                "tau0": _fake_result([0.8, 0.6, 0.7, 0.9, 0.9], 0.78, [10, 10, 5, 5, 5], [0, 0, 5, 5, 5])}
        for arm, result in arms.items():
            folder = tmp_path / "A" / ssl / "e3" / arm / f"seed{seed}"
            folder.mkdir(parents=True)
            (folder / "results.json").write_text(json.dumps(result))
    (tmp_path / "A" / "barlowtwins" / "e3" / "lump" / "seed1001").mkdir(parents=True)
    (tmp_path / "A" / "barlowtwins" / "e3" / "lump" / "seed1001" / "results.json").write_text(
        json.dumps(_fake_result([0.5] * 5, 0.5, [10] * 5, [0] * 5)))
    summary = conf.stream_summary(tmp_path, "A")
    assert len(summary["pairs"]) == 3 and summary["planned"] == 16
    found = {e["endpoint"]: e for e in conf.endpoints(summary)}
    shifted = found["shifted-task final kNN CI acc, rule - fixed3"]
    se = 1 / 3 ** 0.5
    assert shifted["value"].startswith(f"+4.00 +- {se:.2f}") and shifted["verdict"] == "MET"  # 4 >= 2, CI > 0
    flops = found["backward FLOPs, LUMP / rule over the run"]
    assert flops["value"] == f"{50 / 40:.2f} +- 0.00" and flops["verdict"] == "MET"  # 50 / 40 = 1.25 >= 1.2
    average = found["average kNN CI acc, rule - fixed3 (one-sided 95 % lower bound)"]
    assert average["value"].endswith("bound +0.00") and average["verdict"] == "MET"  # equal averages: 0 >= -0.5
    assert shifted["differences"] == pytest.approx([3.0, 5.0, 4.0]) and shifted["mark"] == 2.0  # what --plot draws
    png = tmp_path / "plot" / "endpoints.png"
    assert conf.main(["report", "--output", str(tmp_path), "--json", str(tmp_path / "r.json"), "--plot", str(png)]) == 0
    from PIL import Image

    # stream A's three accuracy endpoints (shifted kNN, average kNN, shifted linear), 0.5 inch a row + 0.9
    assert Image.open(png).size == (640, 240)
    out = capsys.readouterr().out
    assert "3 of 16 planned (method, seed) pairs -- INTERIM" in out
    rule_row = next(line for line in out.splitlines() if line.startswith("rule "))
    assert "0,0,0,5,5" in rule_row and " 1.250 " in rule_row
    assert json.loads((tmp_path / "r.json").read_text())[0]["stream"] == "A"
    assert conf.main(["report", "--output", str(tmp_path / "none")]) == 2
    one_pair = tmp_path / "one"  # one finished pair: a table, but no interval to draw
    for arm in ("lump", "lump_freeze", "fixed3", "tau0"):
        folder = one_pair / "A" / "simsiam" / "e3" / arm / "seed1000"
        folder.mkdir(parents=True)
        source = tmp_path / "A" / "simsiam" / "e3" / arm / "seed1000" / "results.json"
        (folder / "results.json").write_text(source.read_text())
    capsys.readouterr()
    assert conf.main(["report", "--output", str(one_pair), "--plot", str(tmp_path / "one.png")]) == 2
    assert "--plot" in capsys.readouterr().err and not (tmp_path / "one.png").exists()


def test_confirmation_copies_finished_results_both_ways_and_never_overwrites(tmp_path):
    conf = _load("confirmation")
    run = tmp_path / "runs" / "A" / "simsiam" / "e3" / "lump" / "seed1000"
    run.mkdir(parents=True)
    (run / "results.json").write_text("{}")
    (run / "checkpoint.pt").write_text("not copied")
    archive = tmp_path / "archive"
    assert conf.copy_finished_runs(tmp_path / "runs", archive) == 1
    assert [p.relative_to(archive).as_posix() for p in archive.rglob("*") if p.is_file()] == [
        "A/simsiam/e3/lump/seed1000/results.json"]
    (archive / "A" / "simsiam" / "e3" / "lump" / "seed1000" / "results.json").write_text('{"kept": 1}')
    assert conf.copy_finished_runs(tmp_path / "runs", archive) == 0  # an existing copy is left as it is
    fresh = tmp_path / "fresh"
    assert conf.copy_finished_runs(archive, fresh) == 1
    assert (fresh / "A" / "simsiam" / "e3" / "lump" / "seed1000" / "results.json").read_text() == '{"kept": 1}'


def test_bench_throughput_prints_the_host_side_proxies_of_every_arm(capsys, monkeypatch):
    bench = _load("bench_throughput")
    # each measurement in this process instead of a fresh one (the same _measure; saves four interpreter starts)
    monkeypatch.setattr(bench, "_launch", lambda opts, procs: bench._measure(opts))
    argv = ["--proxies", "--batch-size", "8", "--iters", "1", "--warmup", "1", "--repeats", "1",
            "--arms", "finetune", "lump", "--augment-backends", "kornia", "batched"]
    assert bench.main(argv) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    values = dict(item.split("=") for item in last.split())
    for arm in ("finetune", "lump"):
        for key in ("device_ops_per_iter", "host_syncs_per_iter", "per_sample_python_calls_per_iter",
                    "host_ms_per_iter"):
            assert float(values[f"{arm}.{key}"]) >= 0, key
        assert float(values[f"{arm}.device_ops_per_iter"]) > 100  # a ResNet forward and backward at least
        assert 0 < float(values[f"{arm}.device_busy_fraction"]) <= 1  # the profiled window's share in ATen ops
    # LUMP's mixup adds device ops to the same iteration
    assert float(values["lump.device_ops_per_iter"]) > float(values["finetune.device_ops_per_iter"])
    # the batched augmentation: fewer device ops, and its host reads are the loop's own (kornia adds its own)
    for arm in ("finetune", "lump"):
        assert float(values[f"{arm}@batched.device_ops_per_iter"]) < float(values[f"{arm}.device_ops_per_iter"])
        assert float(values[f"{arm}@batched.host_syncs_per_iter"]) < float(values[f"{arm}.host_syncs_per_iter"])
    # the whole device-bound loop: no host read and no per-image Python work in an iteration
    assert bench.main(["--proxies", "--batch-size", "8", "--iters", "1", "--warmup", "1", "--repeats", "1",
                       "--arms", "lump", "--augment-backends", "batched", "--data-on-device"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    values = dict(item.split("=") for item in last.split())
    assert float(values["lump.host_syncs_per_iter"]) == 0
    assert float(values["lump.per_sample_python_calls_per_iter"]) == 0


def test_augment_backends_pairs_each_seed_and_reuses_finished_runs(tmp_path, fmnist_available, capsys):
    compare = _load("augment_backends")
    argv = [*_sets("data.n_experiences=2"), "--seeds", "0", "1", "--output", str(tmp_path)]
    assert compare.main(argv) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("batched_minus_kornia_knn_ci=") and last.endswith("seeds=2")
    runs = sorted(tmp_path.glob("*/seed*/results.json"))
    assert [p.relative_to(tmp_path).parts[:2] for p in runs] == [("batched", "seed0"), ("batched", "seed1"),
                                                                 ("kornia", "seed0"), ("kornia", "seed1")]
    assert json.loads(runs[0].read_text())["config"]["augment"]["backend"] == "batched"
    stamps = [p.stat().st_mtime_ns for p in runs]
    assert compare.main(argv) == 0  # reused, not re-trained
    assert [p.stat().st_mtime_ns for p in runs] == stamps
    assert capsys.readouterr().out.strip().splitlines()[-1] == last


def test_shifted_freeze_compares_a_frozen_prefix_with_lump_on_the_shifted_task(tmp_path, fmnist_available, capsys,
                                                                                monkeypatch):
    script, bench = _load("shifted_freeze"), _load("bench_freeze")
    commands = []

    def in_process(cmd, stdout=None):  # bench_freeze.py here, with the command line the script built
        commands.append(cmd)
        return bench.main(cmd[2:])

    monkeypatch.setattr(script.subprocess, "call", in_process)
    rule = ("freeze.tau=0", "freeze.decide_every=2", "freeze.max_frozen_share=0.3")
    argv = ["--transforms", "invert", "--task", "2", "--blocks", "1", "--seeds", "0", "--epochs", "1",
            "--output", str(tmp_path), *_sets(*rule)]
    assert script.main(argv) == 0
    out = capsys.readouterr().out
    assert "--fixed-prefix" in commands[0] and "2:1" in commands[0]
    cell = tmp_path / "invert" / "simsiam" / "e1"
    assert sorted(p.name for p in cell.iterdir()) == ["fixed2_1b", "lump", "lump_freeze"]  # no other control
    runs = {arm: json.loads((cell / arm / "seed0" / "results.json").read_text())
            for arm in ("lump", "lump_freeze", "fixed2_1b")}
    for r in runs.values():  # task 2 inverted, evaluated on the validation split
        assert r["config"]["data"]["task_transforms"] == ["none", "invert"]
        assert r["config"]["data"]["eval_split"] == "validation"
    assert [e["frozen_blocks"] for e in runs["fixed2_1b"]["efficiency"]] == [0, 1]
    shifted = {arm: 100 * r["acc_matrix"]["knn_ci"][-1][1] for arm, r in runs.items()}
    frozen_minus_lump = shifted["fixed2_1b"] - shifted["lump"]
    assert f"shifted task final,       frozen - lump: {frozen_minus_lump:+.2f} (n=1)" in out
    learnt = {arm: 100 * r["acc_matrix"]["knn_ci"][1][1] for arm, r in runs.items()}  # just after task 2
    assert f"shifted task just learnt, frozen - lump: {learnt['fixed2_1b'] - learnt['lump']:+.2f} (n=1)" in out
    rule_blocks = runs["lump_freeze"]["efficiency"][1]["frozen_blocks"]
    assert out.strip().splitlines()[-1] == (
        f"shifted_freeze transform=invert frozen_minus_lump={frozen_minus_lump:+.2f} "
        f"rule_minus_lump={shifted['lump_freeze'] - shifted['lump']:+.2f} rule_frozen_in_task={rule_blocks}")
    assert script.main([*argv, "--report-only"]) == 0 and len(commands) == 1  # reads what is there, trains nothing
    assert script.main([*argv, "--transforms", "blur"]) == 2
    assert "--transforms 'blur' is not accepted; accepted: permute, invert, highpass" in capsys.readouterr().err
    assert script.main([*argv, "--task", "3"]) == 2  # two tasks in this stream
    assert "--task 3 is not accepted; accepted: 2 to 2" in capsys.readouterr().err


def test_shifted_freeze_earlier_shifts_the_tasks_before_the_compared_one(tmp_path, capsys, monkeypatch):
    script = _load("shifted_freeze")
    commands = []
    monkeypatch.setattr(script.subprocess, "call", lambda cmd, stdout=None: commands.append(cmd) or 0)
    argv = ["--transforms", "permute", "--task", "3", "--earlier", "--seeds", "0", "--output", str(tmp_path)]
    assert script.main(argv) == 0
    command = commands[0]
    assert command[command.index("data.task_transforms=[permute,permute,none,none,none]") - 1] == "--set"
    assert command[command.index("--output") + 1] == str(tmp_path / "earlier_permute")
    assert command[command.index("--fixed-prefix") + 1] == "3:3"
    out = capsys.readouterr().out
    assert "== tasks before task 3 shifted by permute, task 3 plain" in out
    assert out.strip().splitlines()[-1] == ("shifted_freeze transform=earlier_permute frozen_minus_lump=- "
                                            "rule_minus_lump=- rule_frozen_in_task=-")  # nothing trained here
    # the report names the compared task; values paired by seed as in the default direction
    rows = [{"seed": s, "learnt": {"lump": 90.0, "rule": 90.0, "frozen": 88.0 + s},
             "shifted": {"lump": 80.0, "rule": 81.0, "frozen": 79.0 - s},
             "average": {"lump": 70.0, "rule": 70.0, "frozen": 70.0}, "rule_frozen": 0} for s in (0, 1)]
    line = script.report("permute", {"seeds": rows}, earlier=True, task=3)
    out = capsys.readouterr().out
    assert "task 3 just learnt,       frozen - lump: -1.50 +- 0.50" in out
    assert "task 3 final,             rule - lump:   +1.00 +- 0.00" in out
    assert "task 3 final,             rule - frozen: +2.50 +- 0.50" in out  # what the rule's decision bought
    assert "rule's frozen blocks at the end of task 3, per seed: 0,0" in out
    assert line == ("shifted_freeze transform=earlier_permute frozen_minus_lump=-1.50+-0.50 "
                    "rule_minus_lump=+1.00+-0.00 rule_frozen_in_task=0,0")
