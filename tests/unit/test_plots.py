"""The forest plot of paired differences: what it draws is what the differences say."""

import pytest
from matplotlib.container import ErrorbarContainer

from avalanche_freeze.analysis.plots import paired_differences_figure
from avalanche_freeze.analysis.stats import paired_interval


def test_each_row_draws_its_pairs_its_mean_and_95_interval_and_its_target():
    rows = [{"label": "first", "differences": [1.0, 2.0, 3.0, 2.0], "target": 2.5},
            {"label": "second", "differences": [-1.0, 0.5], "target": None}]
    ax = paired_differences_figure(rows, xlabel="points").axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["second", "first"]  # the first row on top
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 2
    for bar, row, y in zip(bars, rows, (1, 0)):
        iv = paired_interval(row["differences"])
        mean_line, _, (segments,) = bar.lines
        assert list(mean_line.get_xdata()) == pytest.approx([iv.mean]) and list(mean_line.get_ydata()) == [y]
        (low, y_low), (high, y_high) = segments.get_segments()[0]
        assert (low, high) == pytest.approx((iv.low, iv.high)) and y_low == y_high == y
    dots = [line for line in ax.lines if line.get_marker() == "o"]
    assert [sorted(d.get_xdata()) for d in dots] == [[1.0, 2.0, 2.0, 3.0], [-1.0, 0.5]]
    assert all(abs(yy - y) <= 0.125 for d, y in zip(dots, (1, 0)) for yy in d.get_ydata())  # on their row
    targets = [line for line in ax.lines if line.get_color() == "tab:red"]
    assert len(targets) == 1 and list(targets[0].get_xdata()) == [2.5, 2.5]  # the second row has none
    assert list(ax.lines[0].get_xdata()) == [0, 0]  # the zero line


@pytest.mark.parametrize("rows", [[], [{"label": "one pair", "differences": [1.0]}]])
def test_rows_without_two_differences_are_refused(rows):
    with pytest.raises(ValueError, match="accepted: at least"):
        paired_differences_figure(rows, xlabel="points")
