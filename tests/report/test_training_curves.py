"""The training panel draws the validation series a run logged, and only those."""

from __future__ import annotations

import math

import numpy as np

from imaseg.report.plots import validation_series


def test_an_nnunet_log_gives_its_pseudo_dice_alone():
    log = [{"epoch": 1, "loss": 0.5, "val_pseudo_dice": 0.1}, {"epoch": 2, "loss": 0.2, "val_pseudo_dice": 0.4}]
    [(what, style, values)] = validation_series(log)
    assert what == "nnU-Net pseudo Dice" and style == ":"
    np.testing.assert_allclose(values, [0.1, 0.4])


def test_an_imaseg_log_gives_clean_and_attacked_with_gaps_kept():
    log = [
        {"epoch": 1, "val_dice": 0.7, "val_robust_dice": math.nan},
        {"epoch": 2, "val_dice": 0.8, "val_robust_dice": 0.3},
    ]
    series = validation_series(log)
    assert [what for what, _, _ in series] == ["clean", "attacked"]
    assert math.isnan(series[1][2][0]) and series[1][2][1] == 0.3
