"""Overlays: the slice where the attacks lower Dice most, gradient attacks only, the data set's names."""

from __future__ import annotations

import json

import numpy as np
import torch
import yaml

from imaseg.cache.reader import CaseStore
from imaseg.metrics.dice import sample_dice


def _overlay(evaluated):
    case = evaluated.summary["cases"][0]
    with np.load(evaluated.out / "overlays" / f"{case}.npz") as data:
        arrays = {k: data[k] for k in data.files}
    return case, arrays, json.loads(str(arrays.pop("meta")))


def _store(evaluated) -> CaseStore:
    return CaseStore(yaml.safe_load((evaluated.run / "config.yaml").read_text())["cache"])


def test_the_overlay_slice_is_the_one_with_the_largest_dice_drop(evaluated):
    case, arrays, meta = _overlay(evaluated)
    store = _store(evaluated)
    label = store.load_case(case).label
    axis = meta["axis"]
    assert axis == store.case_meta(case).slice_axis

    def per_slice(pred):
        moved = torch.from_numpy(np.moveaxis(pred, axis, 0).astype(np.int64))
        return sample_dice(moved, torch.from_numpy(np.moveaxis(label, axis, 0).astype(np.int64)), 4).numpy()

    clean = evaluated.cell("clean")[f"pred__{case}"]
    attacked = evaluated.cell("pgd-l2__eps1")[f"pred__{case}"]  # the middle budget of [0.5, 1]
    drop = per_slice(clean) - per_slice(attacked)
    assert drop[meta["slice"]] == np.max(drop), (meta["slice"], drop)
    np.testing.assert_array_equal(arrays["label"], np.take(label, meta["slice"], axis=axis))


def test_only_gradient_attacks_get_panels_and_the_names_come_from_the_data(evaluated):
    _, arrays, meta = _overlay(evaluated)
    assert [a["attack"] for a in meta["attacks"]] == ["pgd-l2"], "noise is flat, the worst case is not one attack"
    assert meta["labels"] == {"0": "background", "1": "right ventricle", "2": "myocardium", "3": "left ventricle"}
    assert {"pred__pgd-l2", "delta__pgd-l2", "flips__pgd-l2"} <= set(arrays)
    assert not any("noise" in k for k in arrays)
