"""The few statistics every summary of runs uses: mean and spread over seeds, ratios against a
reference run, and how many seeds a paired comparison needs.

The report (:mod:`~avalanche_freeze.analysis.report`), the grid summary and the experiment scripts
all format and compute through these, so a "mean +- std" or a "LUMP / arm" ratio means the same
everywhere.

Example:
    >>> [round(v, 4) for v in mean_std([0.5, 0.7, None])]
    [0.6, 0.1414]
    >>> format_spread([1.0, 2.0, 4.0]), format_spread([1.0, 2.0, 4.0], spread="se")
    ('2.33 +- 1.53', '2.33 +- 0.88')
    >>> efficiency_ratio({"efficiency_total": {"BwdFLOPs_Exp": 3.0}}, {"efficiency_total": {"BwdFLOPs_Exp": 2.0}},
    ...                  "BwdFLOPs_Exp")
    1.5
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Dict, Optional, Sequence, Tuple

__all__ = ["SPREADS", "Z_ONE_SIDED_95", "efficiency_ratio", "format_mean_std", "format_spread", "mean_std",
           "seeds_for_margin"]

#: What :func:`format_spread` can put after the mean: the standard deviation over seeds or the
#: standard error of the mean.
SPREADS = ("std", "se")
#: The one-sided 95 % quantile of the normal distribution.
Z_ONE_SIDED_95 = 1.645


def mean_std(values: Sequence[Optional[float]]) -> Tuple[Optional[float], Optional[float]]:
    """Mean and standard deviation of the known values (``None`` and NaN left out); the standard
    deviation is ``None`` with one value, both are ``None`` with none."""
    known = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not known:
        return None, None
    return statistics.fmean(known), (statistics.stdev(known) if len(known) > 1 else None)


def format_mean_std(mean: Optional[float], spread: Optional[float], *, scale: float = 1.0,
                    separator: str = " +- ") -> str:
    """``"mean +- spread"`` times ``scale`` with two decimals; the mean alone when ``spread`` is
    ``None``, ``"-"`` when ``mean`` is."""
    if mean is None:
        return "-"
    return f"{scale * mean:.2f}" + ("" if spread is None else f"{separator}{scale * spread:.2f}")


def format_spread(values: Sequence[float], *, spread: str = "std", scale: float = 1.0, separator: str = " +- ") -> str:
    """``"mean +- spread"`` of ``values`` times ``scale``, two decimals; the mean alone for one
    value, ``"-"`` for none.

    Args:
        values: one value per seed (``None`` and NaN left out).
        spread: ``std`` (standard deviation over seeds) or ``se`` (standard error of the mean).
        scale: multiplies the values (100: fractions as percent).
        separator: between the mean and the spread (the report's markdown uses ``" ± "``).
    """
    if spread not in SPREADS:
        raise ValueError(f"spread={spread!r} is not accepted; accepted: {', '.join(SPREADS)}")
    mean, std = mean_std(values)
    if std is not None and spread == "se":
        std /= math.sqrt(sum(v is not None and not (isinstance(v, float) and math.isnan(v)) for v in values))
    return format_mean_std(mean, std, scale=scale, separator=separator)


def efficiency_ratio(reference: Dict[str, Any], run: Dict[str, Any], key: str) -> Optional[float]:
    """``reference``'s total of ``key`` over ``run``'s (``results.json``'s ``efficiency_total``): > 1
    when ``run`` is cheaper. ``None`` when either total is missing or zero."""
    mine = run.get("efficiency_total", {}).get(key)
    theirs = reference.get("efficiency_total", {}).get(key)
    if not mine or not theirs:
        return None
    return theirs / mine


def seeds_for_margin(sd: float, margin: float, z: float = Z_ONE_SIDED_95) -> int:
    """Seeds a paired comparison needs to put a one-sided 95 % bound within ``margin`` of its mean:
    ``ceil((z * sd / margin) ** 2)``, ``sd`` being the per-seed standard deviation of the paired
    differences. With that many seeds, the bound ``mean - z * sd / sqrt(n)`` of an arm truly equal
    to its reference falls at ``-margin`` on average (it clears a ``-margin`` target in about half of
    such experiments); with fewer seeds it falls below ``-margin`` on average.

    Example:
        >>> seeds_for_margin(3.0, 0.3), seeds_for_margin(0.6, 0.3)
        (271, 11)
    """
    if margin <= 0:
        raise ValueError(f"margin {margin!r} is not accepted; accepted: a positive number of points")
    return math.ceil((z * sd / margin) ** 2)
