"""Do two runs give the same results? Compares two ``results.json`` (or two folders of runs) value by
value, leaving out what may differ between identical trainings: wall times, throughput and
peak-memory readings, the freezing plugin's timings, and the configuration (whose layout may change
between versions; compare configurations with ``avalanche-freeze`` itself).

Prints every differing value with its path, then one line, and exits 1 when anything differs:

    compared=N files, values=M, differing=0

Usage:
    python experiments/compare_results.py RUN_A RUN_B          # two results.json or two run folders
    python experiments/compare_results.py DIR_A DIR_B          # every results.json below DIR_A against DIR_B's
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path
from typing import Any, Iterator, List, Tuple

#: Keys whose values are measured, not computed: they differ between two identical trainings.
TIMING = re.compile(r"(Time|Throughput|ImagesPerSec|seconds|PeakMem|Memory_MB|MB_)", re.I)
IGNORED_TOP = {"config"}


def leaves(value: Any, path: str = "") -> Iterator[Tuple[str, Any]]:
    """``(path, value)`` of every leaf of a JSON value, timing keys and the configuration left out."""
    if isinstance(value, dict):
        for key, item in value.items():
            if (not path and key in IGNORED_TOP) or TIMING.search(str(key)):
                continue
            yield from leaves(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from leaves(item, f"{path}[{i}]")
    else:
        yield path, value


def differences(a: Any, b: Any, *, rel: float = 0.0) -> Tuple[int, List[str]]:
    """How many values were compared, and a line per differing or missing one (``rel``: relative
    tolerance for floats; 0 demands equality)."""
    left, right = dict(leaves(a)), dict(leaves(b))
    lines = []
    for path in sorted(set(left) | set(right)):
        x, y = left.get(path, "<missing>"), right.get(path, "<missing>")
        if isinstance(x, float) and isinstance(y, float):
            if x == y or (math.isnan(x) and math.isnan(y)) or math.isclose(x, y, rel_tol=rel, abs_tol=0.0):
                continue
        elif x == y:
            continue
        lines.append(f"{path}: {x!r} != {y!r}")
    return len(set(left) | set(right)), lines


def pairs(a: Path, b: Path) -> List[Tuple[Path, Path]]:
    """The ``results.json`` pairs to compare (one pair for two files or run folders)."""
    if a.is_file() and b.is_file():
        return [(a, b)]
    if (a / "results.json").is_file() and (b / "results.json").is_file():
        return [(a / "results.json", b / "results.json")]
    found = sorted(a.rglob("results.json"))
    if not found:
        raise SystemExit(f"compare_results: no results.json below {a}")
    return [(p, b / p.relative_to(a)) for p in found]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    p.add_argument("--rel", type=float, default=0.0, help="relative tolerance for floats (default 0: equal)")
    args = p.parse_args(argv)
    total, differing = 0, 0
    for left, right in pairs(args.a, args.b):
        if not right.is_file():
            print(f"{right}: missing")
            differing += 1
            continue
        n, lines = differences(json.loads(left.read_text()), json.loads(right.read_text()), rel=args.rel)
        total += n
        differing += len(lines)
        for line in lines:
            print(f"{left} vs {right}: {line}")
    print(f"compared={len(pairs(args.a, args.b))} files, values={total}, differing={differing}")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
