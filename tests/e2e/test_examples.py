"""Every script of ``examples/`` runs at its tiny settings and prints what it promises."""

import re
import runpy
import sys

import pytest

from ..conftest import REPO

EXAMPLES = sorted((REPO / "examples").glob("*.py"))


def run_example(name: str, monkeypatch, capsys) -> str:
    monkeypatch.setattr(sys, "argv", [name, "--tiny"])
    runpy.run_path(str(REPO / "examples" / name), run_name="__main__")
    return capsys.readouterr().out


def test_every_example_is_tested_here():
    tested = {"ssl_in_avalanche_loop.py", "supervised_reference.py", "freezing_on_naive.py",
              "export_and_linear_eval.py"}
    assert {p.name for p in EXAMPLES} == tested


def test_ssl_in_an_avalanche_loop(fmnist_available, monkeypatch, capsys):
    out = run_example("ssl_in_avalanche_loop.py", monkeypatch, capsys)
    rows = re.findall(r"^  after task (\d): (.*)$", out, re.M)
    assert [int(r[0]) for r in rows] == [0, 1, 2, 3, 4]
    assert all(len(re.findall(r"\d+\.\d", cells)) == i + 1 for i, (_, cells) in enumerate(rows))  # lower triangle
    frozen = re.search(r"frozen blocks per task \[(.*)\]", out).group(1)
    assert [int(v) for v in frozen.split(",")][0] == 0  # nothing frozen during the first task


def test_the_supervised_reference_reports_avalanche_forgetting_equal_to_the_matrix(fmnist_available, monkeypatch,
                                                                                    capsys):
    out = run_example("supervised_reference.py", monkeypatch, capsys)
    avalanche, matrix = map(float, re.search(r"StreamForgetting (-?[\d.]+) points, from the accuracy matrix "
                                              r"(-?[\d.]+) points", out).groups())
    assert matrix > 0  # the supervised backbone forgets under the class-incremental kNN probe
    assert avalanche == pytest.approx(matrix, abs=0.01)


def test_freezing_on_naive_saves_backward_flops(fmnist_available, monkeypatch, capsys):
    out = run_example("freezing_on_naive.py", monkeypatch, capsys)
    rows = [tuple(map(float, r)) for r in re.findall(r"^\s+(\d)\s+(\d+)\s+([\d.]+)\s+([\d.]+)$", out, re.M)]
    assert len(rows) == 5 and rows[0][1] == 0
    assert rows[-1][1] > 0 and rows[-1][2] < rows[0][2]  # a frozen prefix, and less backward compute than task 0


def test_export_then_linear_evaluation(fmnist_available, monkeypatch, capsys):
    out = run_example("export_and_linear_eval.py", monkeypatch, capsys)
    accuracy = float(re.search(r"linear accuracy over all 10 classes ([\d.]+) %", out).group(1))
    assert accuracy > 20.0  # well above chance (10 %) on the frozen features
