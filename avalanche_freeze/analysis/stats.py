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
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

__all__ = ["SPREADS", "Z_ONE_SIDED_95", "PairedInterval", "efficiency_ratio", "format_mean_std", "format_spread",
           "mean_std", "paired_interval", "seeds_for_margin", "t_quantile"]

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


def _t_cdf(x: float, df: int) -> float:
    """Student's t distribution function, by Simpson's rule on the density from 0 to ``|x|``."""
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    density = lambda t: math.exp(log_norm - (df + 1) / 2 * math.log1p(t * t / df))  # noqa: E731
    a, steps = abs(x), 2000
    h = a / steps
    area = density(0.0) + density(a) + sum((4 if i % 2 else 2) * density(i * h) for i in range(1, steps))
    half = area * h / 3
    return 0.5 + half if x >= 0 else 0.5 - half


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t distribution with ``df`` degrees of freedom (bisection on its
    distribution function; accurate to about 1e-6 for the quantiles confidence bounds use).

    Example:
        >>> round(t_quantile(0.975, 15), 3), round(t_quantile(0.95, 7), 3)
        (2.131, 1.895)
    """
    if not 0 < p < 1:
        raise ValueError(f"p={p!r} is not accepted; accepted: a probability strictly between 0 and 1")
    if df < 1:
        raise ValueError(f"df={df!r} is not accepted; accepted: at least 1 degree of freedom")
    if p < 0.5:
        return -t_quantile(1 - p, df)
    lo, hi = 0.0, 1.0
    while _t_cdf(hi, df) < p:
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _t_cdf(mid, df) < p else (lo, mid)
    return (lo + hi) / 2


@dataclass(frozen=True)
class PairedInterval:
    """What paired differences say about their mean.

    Attributes:
        n: how many pairs.
        mean: the mean difference.
        se: its standard error (``sd / sqrt(n)``).
        low, high: the two-sided 95 % confidence interval (Student's t, ``n - 1`` degrees of freedom).
        lower_bound: the one-sided 95 % lower confidence bound.
    """

    n: int
    mean: float
    se: float
    low: float
    high: float
    lower_bound: float

    def __str__(self) -> str:
        return f"{self.mean:+.2f} +- {self.se:.2f} (95 % CI {self.low:+.2f} to {self.high:+.2f}; n={self.n})"


def paired_interval(differences: Sequence[float]) -> PairedInterval:
    """Mean, standard error, 95 % interval and one-sided 95 % lower bound of paired ``differences``
    (one per seed, or per seed and method), by Student's t.

    Example:
        >>> iv = paired_interval([1.0, 2.0, 3.0, 2.0])
        >>> round(iv.mean, 2), round(iv.se, 3), round(iv.low, 2), round(iv.high, 2), round(iv.lower_bound, 2)
        (2.0, 0.408, 0.7, 3.3, 1.04)
    """
    n = len(differences)
    if n < 2:
        raise ValueError(f"{n} paired difference(s) are not accepted; accepted: at least 2 (a spread is needed)")
    mean = statistics.mean(differences)
    se = statistics.stdev(differences) / math.sqrt(n)
    two, one = t_quantile(0.975, n - 1), t_quantile(0.95, n - 1)
    return PairedInterval(n=n, mean=mean, se=se, low=mean - two * se, high=mean + two * se,
                          lower_bound=mean - one * se)
