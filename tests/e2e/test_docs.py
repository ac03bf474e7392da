"""The documentation runs: every Python block of the README and of the guide pages, and every link."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import REPO

#: Pages whose ``python`` blocks run, in order, as one script each.
RUNNABLE = [REPO / "README.md", *sorted((REPO / "docs" / "guide").glob("*.md"))]
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks(page: Path):
    return FENCE.findall(page.read_text(encoding="utf-8"))


def test_the_readme_fits_on_two_screens_and_has_its_quick_start():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    assert "pip install -e ." in text and "make run" in text and "make test" in text
    assert len(python_blocks(REPO / "README.md")) >= 1


@pytest.mark.parametrize("page", [p for p in RUNNABLE if python_blocks(p)], ids=lambda p: p.relative_to(REPO).as_posix())
def test_python_blocks_of_a_page_run(page, tmp_path, fmnist_available):
    script = tmp_path / "page.py"
    script.write_text("\n\n".join(python_blocks(page)), encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    if page.name == "README.md":
        assert re.search(r"^frozen blocks: \d+$", done.stdout, re.M), done.stdout[-2000:]


def _links(page: Path):
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)
    return re.findall(r"\]\(([^)\s]+)\)", text)


def test_every_relative_link_of_the_readme_and_docs_points_to_a_file():
    pages = [REPO / "README.md", REPO / "CHANGELOG.md", *(REPO / "docs").rglob("*.md")]
    broken = []
    for page in pages:
        for link in _links(page):
            if re.match(r"[a-z]+://", link) or link.startswith("#"):
                continue
            target = (page.parent / link.split("#")[0]).resolve()
            if not target.exists():
                broken.append(f"{page.relative_to(REPO)}: {link}")
    assert not broken
