"""The statistics every summary of runs shares (:mod:`avalanche_freeze.analysis.stats`), by hand."""

import math

import pytest

from avalanche_freeze.analysis.stats import efficiency_ratio, format_mean_std, format_spread, mean_std, seeds_for_margin


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
