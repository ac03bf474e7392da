"""The rule's prefix choice against hand cases, and the replay of a finished run's checks."""

import importlib.util
import json
from collections import Counter

import pytest

from avalanche_freeze.cli import main as cli_main
from avalanche_freeze.freezing.decision import (STOP_REASONS, PrefixChoice, choose_prefix, replay_decisions,
                                                revise_prefix)

from ..conftest import REPO, TINY_SET


SHARES = [0.1, 0.2, 0.3, 0.4]


def _choose(scores, stable, *, frozen=0, tau=0.8, stability=0.99, cap=1.0, ends=(1, 2, 3, 4)):
    return choose_prefix(scores, stable, ends=list(ends), shares=SHARES, frozen_blocks=frozen, tau=tau,
                         stability=stability, max_frozen_share=cap)


def test_the_first_unit_left_open_names_what_stopped_the_prefix():
    passing = [1.0, 0.95, 0.9, 0.9]
    steady = [1.0, 0.999, 0.999, 0.999]
    assert _choose(passing, steady) == PrefixChoice(4, "end")
    assert _choose([1.0, 0.95, 0.7, 0.9], steady) == PrefixChoice(2, "tau")  # 0.7 < tau
    assert _choose(passing, [1.0, 0.999, 0.98, 0.999]) == PrefixChoice(2, "gate")  # 0.98 < stability
    assert _choose([1.0, 0.95, 0.7, 0.9], [1.0, 0.999, 0.98, 0.999]) == PrefixChoice(2, "both")
    assert _choose(passing, steady, cap=0.35) == PrefixChoice(2, "cap")  # 0.1 + 0.2 <= 0.35 < 0.6
    assert _choose(passing, steady, cap=0.6) == PrefixChoice(3, "cap")  # a share exactly at the cap is allowed
    assert _choose([0.5] * 4, steady, tau=0.5) == PrefixChoice(4, "end")  # tau is reached, not exceeded
    assert set(STOP_REASONS) == {"tau", "gate", "both", "cap", "end"}


def test_the_frozen_prefix_passes_whatever_it_scores_and_never_shrinks():
    low = [0.0, 0.0, 0.0, 0.9]
    steady = [0.5, 0.5, 0.5, 0.999]
    assert _choose(low, steady, frozen=3) == PrefixChoice(4, "end")
    assert _choose(low, [0.5, 0.5, 0.5, 0.5], frozen=3) == PrefixChoice(3, "gate")
    assert _choose(low, steady, frozen=0) == PrefixChoice(0, "both")
    # a smaller cap than the frozen prefix does not unfreeze it
    assert _choose([1.0] * 4, [1.0] * 4, frozen=3, cap=0.2) == PrefixChoice(3, "cap")


def test_stage_units_pass_or_stop_as_a_whole():
    # two units ending at blocks 2 and 4 (stages of two blocks each)
    assert _choose([0.9, 0.9], [1.0, 1.0], ends=(2, 4)) == PrefixChoice(4, "end")
    assert _choose([0.9, 0.9], [1.0, 1.0], ends=(2, 4), cap=0.5) == PrefixChoice(2, "cap")
    assert _choose([0.9, 0.1], [1.0, 1.0], ends=(2, 4)) == PrefixChoice(2, "tau")
    with pytest.raises(ValueError, match="3 scores, 2 stability values and 2 unit ends"):
        _choose([0.9, 0.9, 0.9], [1.0, 1.0], ends=(2, 4))


def _history(*checks):
    names = ["a", "b", "c", "d"]
    return [{"experience": e, "iteration": it, "scores": dict(zip(names, s)), "stability": dict(zip(names, g)),
             "frozen_blocks": blocks} for e, it, s, g, blocks in checks]


def test_a_replay_stops_at_the_first_check_decided_otherwise():
    history = _history((2, 16, [1.0, 0.85, 0.9, 0.9], [1.0, 0.999, 0.98, 1.0], 2),
                       (2, 32, [1.0, 1.0, 0.95, 0.9], [1.0, 1.0, 0.999, 1.0], 4))
    replay = lambda **kw: replay_decisions(history, ends=[1, 2, 3, 4], shares=SHARES,  # noqa: E731
                                           recorded_stability=0.99, recorded_max_frozen_share=1.0,
                                           **{"tau": 0.8, "stability": 0.99, "max_frozen_share": 1.0, **kw})
    same = replay()
    assert same.identical and same.checks == 2 and same.stop_counts()["gate"] == 1 and same.stop_counts()["end"] == 1
    stricter = replay(tau=0.9)  # layer b's 0.85 no longer passes at the first check
    assert stricter.diverged_at == (2, 16) and stricter.checks == 1 and stricter.choices[0] == PrefixChoice(1, "tau")
    assert replay(stability=0.95).diverged_at == (2, 16)  # the gate no longer holds c back: 4 blocks, not 2
    capped = replay(max_frozen_share=0.6)
    assert capped.diverged_at == (2, 32) and capped.choices[-1] == PrefixChoice(3, "cap")
    with pytest.raises(ValueError, match="max_frozen_share=1.0 is not accepted: the run was capped at 0.5"):
        replay_decisions(history, ends=[1, 2, 3, 4], shares=SHARES, tau=0.8, stability=0.99, max_frozen_share=1.0,
                         recorded_stability=0.99, recorded_max_frozen_share=0.5)
    with pytest.raises(ValueError, match="stability=0.99 is not accepted: the run had no stability gate"):
        replay_decisions(history, ends=[1, 2, 3, 4], shares=SHARES, tau=0.8, stability=0.99, max_frozen_share=1.0,
                         recorded_stability=0.0, recorded_max_frozen_share=1.0)
    schedule = [{"experience": 1, "iteration": 0, "scores": {}, "stability": {}, "frozen_blocks": 3}]
    with pytest.raises(ValueError, match="a fixed schedule decides nothing"):
        replay_decisions(schedule, ends=[1, 2, 3, 4], shares=SHARES, tau=0.8, stability=0.99, max_frozen_share=1.0,
                         recorded_stability=0.99, recorded_max_frozen_share=1.0)


def test_a_revision_cuts_the_frozen_prefix_at_its_first_unit_below_tau_and_never_grows_it():
    assert revise_prefix([0.9, 0.85, 0.9, 0.9], ends=[1, 2, 3, 4], frozen_blocks=3, tau=0.8) == PrefixChoice(3, "end")
    assert revise_prefix([0.9, 0.7, 0.9, 0.9], ends=[1, 2, 3, 4], frozen_blocks=3, tau=0.8) == PrefixChoice(1, "tau")
    assert revise_prefix([0.1, 0.9, 0.9, 0.9], ends=[1, 2, 3, 4], frozen_blocks=3, tau=0.8) == PrefixChoice(0, "tau")
    # units past the prefix do not count, however they score
    assert revise_prefix([0.9, 0.9, 0.1, 0.1], ends=[1, 2, 3, 4], frozen_blocks=2, tau=0.8) == PrefixChoice(2, "end")
    # stages: a stage ends at several blocks
    assert revise_prefix([0.9, 0.5], ends=[3, 4], frozen_blocks=4, tau=0.8) == PrefixChoice(3, "tau")
    with pytest.raises(ValueError, match="one of each per unit"):
        revise_prefix([0.9], ends=[1, 2], frozen_blocks=1, tau=0.8)


def test_a_replay_re_scores_revisions_as_revisions():
    history = _history((2, 16, [1.0, 1.0, 0.9, 0.5], [1.0, 1.0, 1.0, 1.0], 3),
                       (3, 0, [1.0, 0.7, 0.9, 0.9], [], 1))
    history[1]["revision"] = True
    replay = lambda **kw: replay_decisions(history, ends=[1, 2, 3, 4], shares=SHARES,  # noqa: E731
                                           recorded_stability=0.99, recorded_max_frozen_share=1.0,
                                           **{"tau": 0.8, "stability": 0.99, "max_frozen_share": 1.0, **kw})
    same = replay()
    assert same.identical and [c.blocks for c in same.choices] == [3, 1]
    assert replay(tau=0.6).diverged_at == (3, 0)  # 0.7 passes: the prefix would have stayed at 3


def _replay_script():
    path = REPO / "experiments" / "replay_freeze.py"
    spec = importlib.util.spec_from_file_location("replay_freeze", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_replaying_a_run_reproduces_every_recorded_decision(tmp_path, fmnist_available, capsys):
    run = tmp_path / "grid" / "rule"
    args = ["run", "--quiet", "--strategy", "lump_freeze", "--output", str(run)]
    # one check per iteration from task 2 on, with tau, the gate and the cap all binding at some check
    # (the 0.2.0 rule's gradient scores: at these tiny settings they let tau, the gate and the cap each bind)
    for item in TINY_SET + ["freeze.measure=gradient", "freeze.score=raw", "freeze.tau=0.9", "freeze.stability=0.995",
                            "freeze.decide_every=1", "freeze.max_frozen_share=0.7"]:
        args += ["--set", item]
    assert cli_main(args) == 0
    history = json.loads((run / "results.json").read_text())["freeze_history"]
    recorded = Counter(h["stopped_by"] for h in history)
    assert {"tau", "gate", "cap"} <= set(recorded), recorded
    script = _replay_script()
    replay = script.replay_run(run)
    assert replay.identical and replay.checks == len(history)
    assert [c.blocks for c in replay.choices] == [h["frozen_blocks"] for h in history]
    assert [c.stopped_by for c in replay.choices] == [h["stopped_by"] for h in history]
    capsys.readouterr()
    # a folder is searched for runs; a LUMP run (no decisions) beside it is skipped
    assert cli_main(["run", "--quiet", "--strategy", "lump", "--output", str(tmp_path / "grid" / "lump"),
                     *[a for item in TINY_SET + ["data.n_experiences=2"] for a in ("--set", item)]]) == 0
    capsys.readouterr()
    assert script.main([str(tmp_path / "grid")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == (f"runs=1 identical_runs=1 checks={len(history)} "
                         + " ".join(f"{reason}={recorded[reason]}" for reason in STOP_REASONS))
    assert lines[2].split()[:4] == ["rule", str(len(history)), str(len(history)), "yes"]
    # tau=1: only frozen units (scored 1.0) pass, so the replay keeps nothing frozen and parts from
    # the run at its first check that froze a unit
    first = next(h for h in history if h["frozen_blocks"] > 0)
    assert script.main([str(run), "--tau", "1.0"]) == 0
    out = capsys.readouterr().out
    assert f"no: task {first['experience'] + 1} it. {first['iteration']}, {first['frozen_blocks']} -> 0 blocks" in out
    replayed = history.index(first) + 1
    assert f"identical_runs=0 checks={replayed} " in out.splitlines()[-1]
    assert script.main([str(run), "--max-frozen-share", "0.9"]) == 2
    assert "max_frozen_share=0.9 is not accepted: the run was capped at 0.7" in capsys.readouterr().err
    assert script.main([str(tmp_path / "grid" / "lump")]) == 2
    assert "no run of the freezing rule under" in capsys.readouterr().err
