"""The statistics every summary of runs shares (:mod:`avalanche_freeze.analysis.stats`), by hand."""

import math

import pytest

from avalanche_freeze.analysis.stats import (efficiency_ratio, format_mean_std, format_spread, mean_std, paired_interval,
                                            seeds_for_margin, t_quantile)


def test_mean_and_spread_by_hand():
    # mean 7/3, sample std sqrt(7/3) = 1.53, standard error sqrt(7/3) / sqrt(3) = 0.88
    assert format_spread([1.0, 2.0, 4.0]) == "2.33 +- 1.53"
    assert format_spread([1.0, 2.0, 4.0], spread="se") == "2.33 +- 0.88"
    assert format_spread([1.0, None, 2.0, math.nan, 4.0], spread="se") == "2.33 +- 0.88"  # unknowns left out
    assert format_spread([1.5]) == "1.50" and format_spread([]) == "-"
    assert format_spread([0.5, 0.7], scale=100, separator=" ± ") == "60.00 ± 14.14"
    assert mean_std([None]) == (None, None) and mean_std([2.0]) == (2.0, None)
    assert format_mean_std(0.25, None, scale=100) == "25.00" and format_mean_std(None, 1.0) == "-"
    with pytest.raises(ValueError, match="spread='var' is not accepted; accepted: std, se"):
        format_spread([1.0], spread="var")


def test_efficiency_ratio_is_the_reference_over_the_run():
    lump = {"efficiency_total": {"BwdFLOPs_Exp": 300.0, "TrainTime_Exp": 0.0}}
    rule = {"efficiency_total": {"BwdFLOPs_Exp": 200.0, "TrainTime_Exp": 5.0}}
    assert efficiency_ratio(lump, rule, "BwdFLOPs_Exp") == 1.5
    assert efficiency_ratio(lump, rule, "TrainTime_Exp") is None  # a zero total has no ratio
    assert efficiency_ratio(lump, {}, "BwdFLOPs_Exp") is None


def test_seeds_a_paired_bound_needs():
    # (1.645 * 3 / 0.3)^2 = 270.6 -> 271; (1.645 * 0.6 / 0.3)^2 = 10.8 -> 11; (2 * 1 / 1)^2 = 4
    assert seeds_for_margin(3.0, 0.3) == 271 and seeds_for_margin(0.6, 0.3) == 11
    assert seeds_for_margin(1.0, 1.0, z=2.0) == 4
    with pytest.raises(ValueError, match="margin 0 is not accepted"):
        seeds_for_margin(1.0, 0)


def test_t_quantiles_match_the_published_table():
    # two-sided 95 % (p = 0.975) and one-sided 95 % (p = 0.95) critical values of Student's t
    table = {(0.975, 1): 12.706, (0.975, 2): 4.303, (0.975, 7): 2.365, (0.975, 15): 2.131, (0.975, 30): 2.042,
             (0.95, 7): 1.895, (0.95, 15): 1.753}
    for (p, df), value in table.items():
        assert t_quantile(p, df) == pytest.approx(value, abs=1e-3), (p, df)
    assert t_quantile(0.975, 10_000) == pytest.approx(1.960, abs=1e-3)  # the normal limit
    assert t_quantile(0.025, 7) == pytest.approx(-2.365, abs=1e-3)
    for bad in ((1.0, 5), (0.0, 5), (0.9, 0)):
        with pytest.raises(ValueError, match="is not accepted"):
            t_quantile(*bad)


def test_paired_interval_by_hand():
    diffs = [1.0, 2.0, 3.0, 2.0]  # mean 2, sd sqrt(2/3), se sqrt(2/3)/2 = 0.4082
    iv = paired_interval(diffs)
    se = (2 / 3) ** 0.5 / 2
    assert (iv.n, iv.mean) == (4, 2.0) and iv.se == pytest.approx(se)
    assert iv.low == pytest.approx(2.0 - 3.182 * se, abs=1e-3) and iv.high == pytest.approx(2.0 + 3.182 * se, abs=1e-3)
    assert iv.lower_bound == pytest.approx(2.0 - 2.353 * se, abs=1e-3)
    assert str(iv) == "+2.00 +- 0.41 (95 % CI +0.70 to +3.30; n=4)"
    with pytest.raises(ValueError, match="at least 2"):
        paired_interval([1.0])
