"""The margins caption states the rule the run's margins followed (published, or with a floor)."""

import pytest

from imaseg.report.diagnostics import _margin_range


@pytest.mark.parametrize(
    ("margins", "expected"),
    [
        pytest.param(
            {"delta": 0.25, "eps_max": 1.0, "eps_min": 0.0},
            " They start at 0.25 and stay within [0, 1] (the published rule).",
            id="published",
        ),
        pytest.param(
            {"delta": 0.25, "eps_max": 2.0, "eps_min": 1.0},
            " They start at 1 and stay within [1, 2] (a floor at eps_min 1).",
            id="floor",
        ),
        pytest.param(
            {"delta": 0.25, "eps_max": 1.0},
            " They start at 0.25 and stay within [0, 1] (the published rule).",
            id="written-before-the-floor",
        ),
        pytest.param(None, "", id="no-margins"),
    ],
)
def test_margin_caption_states_the_rule(margins, expected):
    assert _margin_range(margins) == expected
