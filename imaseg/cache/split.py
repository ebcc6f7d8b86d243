"""Patient-grouped, seeded k-fold splits.

Cases of one patient (ACDC's ``patient001_frame01`` and ``patient001_frame12`` are two phases of one
heart) always land on the same side, and so do the 2D slices of a case, because a split is decided per
group and slices inherit their case's side. The group of a case comes from a regex over the case id
(group 1 of the match) or from a ``case,group`` CSV file.
"""

from __future__ import annotations

import csv
import os
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = ["FoldSplit", "assign_folds", "check_disjoint", "patient_groups", "split_for_fold"]


def patient_groups(
    cases: Iterable[str], regex: str | None = None, group_map: str | os.PathLike[str] | None = None
) -> dict[str, str]:
    """Map each case id to its patient (group) key.

    Raises:
        ValueError: a bad regex, or a mapping file that misses cases.
    """
    cases = list(cases)
    if group_map is not None:
        with open(group_map, newline="", encoding="utf-8") as handle:
            rows = [r for r in csv.reader(handle) if r and not r[0].startswith("#")]
        if rows and rows[0][:2] == ["case", "group"]:
            rows = rows[1:]
        mapping = {r[0].strip(): r[1].strip() for r in rows if len(r) >= 2}
        missing = [c for c in cases if c not in mapping]
        if missing:
            raise ValueError(f"{group_map}: no group for cases {missing}; add 'case,group' rows for them")
        return {c: mapping[c] for c in cases}
    if not regex:
        return {c: c for c in cases}
    try:
        pattern = re.compile(regex)
    except re.error as error:
        raise ValueError(f"`group_regex` {regex!r} is not a valid regular expression: {error}") from error
    groups = {}
    for case in cases:
        match = pattern.match(case)
        groups[case] = match.group(1) if (match and match.groups() and match.group(1)) else case
    return groups


def assign_folds(groups: Iterable[str], folds: int, seed: int) -> dict[str, int]:
    """Shuffle the unique groups with ``seed`` and deal them round-robin into ``folds`` folds."""
    unique = sorted(set(groups))
    if folds < 1:
        raise ValueError(f"`folds` must be >= 1, got {folds}")
    if folds > 1 and len(unique) < folds:
        raise ValueError(f"only {len(unique)} patient groups for {folds} folds; lower `folds`")
    rng = random.Random(seed)
    rng.shuffle(unique)
    return {group: i % folds for i, group in enumerate(unique)}


def split_for_fold(
    case_groups: Mapping[str, str], group_folds: Mapping[str, int], fold: int, val_groups: float, seed: int
) -> dict[str, list[str]]:
    """``{"train", "val", "test"}`` case lists for ``fold`` (test = that fold; val = groups drawn from the rest).

    With a single fold there is no test set. ``val_groups`` < 1 is a fraction of the training groups,
    >= 1 a count.
    """
    folds = max(group_folds.values(), default=0) + 1
    if not 0 <= fold < folds:
        raise ValueError(f"`fold` must be in [0, {folds - 1}], got {fold}")
    test_groups = {g for g, f in group_folds.items() if f == fold} if folds > 1 else set()
    rest = sorted(g for g in group_folds if g not in test_groups)
    count = int(round(val_groups * len(rest))) if val_groups < 1 else int(val_groups)
    count = min(count, max(len(rest) - 1, 0))
    rng = random.Random(f"{seed}/val/{fold}")
    val = set(rng.sample(rest, count)) if count else set()
    split: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for case in sorted(case_groups):
        group = case_groups[case]
        side = "test" if group in test_groups else "val" if group in val else "train"
        split[side].append(case)
    check_disjoint(split, case_groups)
    return split


def check_disjoint(split: Mapping[str, list[str]], case_groups: Mapping[str, str]) -> None:
    """Raise ``ValueError`` if any patient group appears on two sides of ``split``."""
    seen: dict[str, str] = {}
    for side, cases in split.items():
        for case in cases:
            group = case_groups.get(case, case)
            if seen.setdefault(group, side) != side:
                raise ValueError(f"patient {group!r} is on both the {seen[group]} and {side} sides of the split")


@dataclass(frozen=True)
class FoldSplit:
    """The cases of each side of one fold: ``train``, ``val`` and ``test`` (empty with a single fold)."""

    train: tuple[str, ...] = ()
    val: tuple[str, ...] = ()
    test: tuple[str, ...] = ()

    SIDES = ("train", "val", "test")

    def side(self, name: str) -> tuple[str, ...]:
        if name not in self.SIDES:
            raise ValueError(f"unknown split {name!r}; choose one of {', '.join(self.SIDES)}")
        return tuple(getattr(self, name))

    def to_json(self) -> dict[str, list[str]]:
        return {"train": list(self.train), "val": list(self.val), "test": list(self.test)}

    @classmethod
    def from_json(cls, data: Mapping[str, Sequence[str]]) -> FoldSplit:
        return cls(*(tuple(str(c) for c in data.get(side, ())) for side in cls.SIDES))
