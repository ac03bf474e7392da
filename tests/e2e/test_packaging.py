"""The package is ready to publish: sdist and wheel build, ``twine check`` passes, the wheel holds what it needs."""

import importlib.metadata
import shutil
import subprocess
import sys
import zipfile

import avalanche_freeze

from ..conftest import REPO


def test_one_version_string():
    assert importlib.metadata.version("avalanche-freeze") == avalanche_freeze.__version__
    assert f"## {avalanche_freeze.__version__}" in (REPO / "CHANGELOG.md").read_text(encoding="utf-8")


def test_build_and_twine_check(tmp_path):
    source = tmp_path / "source"  # a copy, so that the build leaves nothing in the checkout
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "runs", "wandb", "build", "dist", "_build", "*.egg-info", "__pycache__", ".pytest_cache"))
    dist = tmp_path / "dist"
    built = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(source)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    version = avalanche_freeze.__version__
    wheel = dist / f"avalanche_freeze-{version}-py3-none-any.whl"
    assert wheel.is_file() and (dist / f"avalanche_freeze-{version}.tar.gz").is_file()
    checked = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", *map(str, sorted(dist.iterdir()))],
                             capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"avalanche_freeze/py.typed", "avalanche_freeze/strategies/lump_freeze.yaml",
            "avalanche_freeze/freezing/decision.py"} <= names
    entry_points = zipfile.ZipFile(wheel).read(f"avalanche_freeze-{version}.dist-info/entry_points.txt").decode()
    assert "avalanche-freeze = avalanche_freeze.launcher:main" in entry_points
