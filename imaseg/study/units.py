"""A configuration's records as counts per (patient, training seed), and the curves a bootstrap draws from them.

Patients and seeds are crossed: every seed's model scores every test patient of its fold. A replicate of the
bootstrap over patients and seeds (:func:`crossed_draws`) draws patients and seeds independently with
replacement and counts every drawn patient under every drawn seed, so its intervals hold the spread over
patients and the spread over training runs. Two aggregations of Dice, mean over foreground classes:

- ``global``: Dice of the counts summed over every case (of every unit) drawn;
- ``case``: per class the mean over cases of the case's Dice, a case whose label lacks the class left out
  (MONAI's ``ignore_empty``, as in ``summary.json``'s ``case``), then the mean over classes.

Seed ``s`` names one training run per fold; drawing it draws that run on every fold (independent pairs, since
each fold trains its own models). With three seeds the seed part of an interval is coarse: a replicate uses a
single seed one time in nine.

No torch here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from imaseg.metrics.worst import COUNT_AGGREGATIONS as AGGREGATIONS  # this module's name, kept for its callers
from imaseg.metrics.worst import case_class_dice, mean_case_dice, mean_global_dice

__all__ = ["AGGREGATIONS", "UnitCounts", "crossed_draws", "unit_counts"]


@dataclass(frozen=True)
class UnitCounts:
    """One configuration's counts by unit: ``keys`` are ``"clean"`` and the budgets as records spell them."""

    patients: tuple[str, ...]
    seeds: tuple[int, ...]
    keys: tuple[str, ...]
    totals: np.ndarray  # (P, S, K, C, 3) summed [tp, fp, fn]
    case_dice: np.ndarray  # (P, S, K, C) sum over the unit's cases of the case's class Dice (defined ones)
    case_defined: np.ndarray  # (P, S, K, C) how many of the unit's cases define that Dice
    present: np.ndarray  # (P, S) bool: the unit has records (a missing cell leaves its units absent)

    def curves(self, weights: np.ndarray, aggregation: str) -> np.ndarray:
        """Dice per key for each replicate: ``weights`` ``(R, P, S)`` (how often each unit was drawn) ->
        ``(R, K)``; NaN where nothing drawn defines a class."""
        if aggregation == "global":
            return mean_global_dice(np.einsum("rps,pskcx->rkcx", weights, self.totals))
        if aggregation == "case":
            total = np.einsum("rps,pskc->rkc", weights, self.case_dice)
            return mean_case_dice(total, np.einsum("rps,pskc->rkc", weights, self.case_defined))
        raise ValueError(f"`aggregation` must be one of {AGGREGATIONS}, got {aggregation!r}")


def unit_counts(records: Sequence[Mapping[str, Any]], patients: Mapping[str, str]) -> UnitCounts:
    """The records of one configuration (every fold and seed) by (patient, seed).

    Raises:
        ValueError: records with different keys (budgets), or a case without a patient.
    """
    if not records:
        raise ValueError("no records to count")
    keys = tuple(records[0]["counts"])
    for record in records:
        if tuple(record["counts"]) != keys:
            raise ValueError(
                f"cell {record['setting']} fold {record['fold']} seed {record['seed']} has budgets "
                f"{list(record['counts'])}, others {list(keys)}: every cell needs the same evaluation"
            )
    missing = sorted({c for r in records for c in r["counts"]["clean"]} - set(patients))
    if missing:
        raise ValueError(f"cases {missing[:5]} (of {len(missing)}) have no patient")
    patient_ids = tuple(sorted({patients[c] for r in records for c in r["counts"]["clean"]}))
    seeds = tuple(sorted({int(r["seed"]) for r in records}))
    classes = len(next(iter(records[0]["counts"]["clean"].values())))
    shape = (len(patient_ids), len(seeds), len(keys), classes)
    totals, dice_sum, defined = np.zeros((*shape, 3)), np.zeros(shape), np.zeros(shape)
    present = np.zeros(shape[:2], dtype=bool)
    p_index = {p: i for i, p in enumerate(patient_ids)}
    for record in records:
        s = seeds.index(int(record["seed"]))
        for k, key in enumerate(keys):
            for case, value in record["counts"][key].items():
                counts = np.asarray(value, dtype=float)
                p = p_index[patients[case]]
                totals[p, s, k] += counts
                present[p, s] = True
                dice, in_label = case_class_dice(counts)
                dice_sum[p, s, k] += dice
                defined[p, s, k] += in_label
    return UnitCounts(patient_ids, seeds, keys, totals, dice_sum, defined, present)


def crossed_draws(patients: int, seeds: int, replicates: int = 2000, seed: int = 0) -> np.ndarray:
    """Unit weights ``(replicates + 1, patients, seeds)``: row 0 all ones (the point estimate), then one row per
    replicate, patients and seeds drawn independently with replacement (a weight is how often the unit was
    drawn: patient multiplicity times seed multiplicity).

    >>> w = crossed_draws(3, 2, replicates=4)
    >>> w.shape, w[0].tolist(), bool((w[1:].sum((1, 2)) == 6).all())
    ((5, 3, 2), [[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]], True)
    """
    rng = np.random.default_rng(seed)
    patient_draws = rng.integers(0, patients, size=(replicates, patients))
    seed_draws = rng.integers(0, seeds, size=(replicates, seeds))
    patient_weight = np.stack([np.bincount(d, minlength=patients) for d in patient_draws]).astype(float)
    seed_weight = np.stack([np.bincount(d, minlength=seeds) for d in seed_draws]).astype(float)
    weights = patient_weight[:, :, None] * seed_weight[:, None, :]
    return np.concatenate([np.ones((1, patients, seeds)), weights])
