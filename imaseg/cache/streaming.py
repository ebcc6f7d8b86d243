"""Training samples read from the cache on demand, so memory is bounded by a setting, not the data set's size.

:func:`sample_index` lists a split's samples from the manifest alone (no arrays are read):

- 2D mode: one entry per kept slice, id ``CASE:SSS``;
- 3D mode without patches: one entry per volume, id ``CASE``;
- 3D mode with patches: ``patches_per_case`` entries per volume, all sharing the id ``CASE``.

**What a sample id means for IMA in 3D.** A margin belongs to a *case*: every patch of a volume reads
and updates the same margin (each patch is one visit in the update rule). Per-location margins would
follow a patch grid that changes with every random crop, and per-region margins would need a
segmentation of the margins themselves; a case is the unit a clinician and an attacker both see.

:class:`StreamingSamples` is the ``Dataset`` behind the training ``DataLoader``: its items are
``(position, epoch)`` pairs from the trainer's seeded batch sampler, it keeps at most ``cache_mib``
MiB of decoded cases per process (least recently used out), and draws each patch with MONAI's
``RandCropByPosNegLabeld`` seeded by ``(seed, epoch, position)``, so the patches do not depend on the
number of workers, the order the workers run in, or a resume. (MONAI's ``CacheDataset`` keeps a fixed
set of the first items for the whole run; an LRU of cases fits slice sampling from many volumes better.)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from monai.transforms import Compose, RandCropByPosNegLabeld, SpatialPadd

from imaseg.cache.reader import CachedCase, CaseStore
from imaseg.data.errors import DataError
from imaseg.utils.seeding import derive_seed

__all__ = ["SampleIndex", "StreamingSamples", "sample_index"]


@dataclass
class SampleIndex:
    """A split's samples: ``ids`` (one per margin), and ``entries`` ``(case, slice or None, id position)``."""

    ids: list[str] = field(default_factory=list)
    cases: list[str] = field(default_factory=list)  # the case of each id
    entries: list[tuple[str, int | None, int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.entries)


def sample_index(store: CaseStore, split: str, fold: int, *, patches_per_case: int = 0) -> SampleIndex:
    """The samples of ``split`` in manifest order; ``patches_per_case > 0`` repeats each volume that often.

    Raises:
        DataError: the split holds no samples, or patches are asked of 2D slices.
    """
    index = SampleIndex()
    for case in store.case_ids(split, fold):
        meta = store.case_meta(case)
        if meta.slice_axis is not None:
            if patches_per_case:
                raise DataError(f"{store.root}: patches need a 3D cache (preprocess with --mode 3d)", [store.root])
            for slice_index, sample in zip(meta.slice_indices, meta.sample_ids):
                index.entries.append((case, int(slice_index), len(index.ids)))
                index.ids.append(sample)
                index.cases.append(case)
            continue
        for _ in range(max(patches_per_case, 1)):
            index.entries.append((case, None, len(index.ids)))
        index.ids.append(meta.sample_ids[0])
        index.cases.append(case)
    if not index.entries:
        raise DataError(f"{store.root}: split {split!r} of fold {fold} holds no samples", [store.root])
    return index


class StreamingSamples(torch.utils.data.Dataset):
    """Items ``(position, epoch) -> (image (C, *S) float32, label (1, *S) class indices, id position)``.

    Args:
        store: the cache.
        index: the split's samples (:func:`sample_index`).
        cache_mib: MiB of decoded cases kept per process (the most recent case is kept whatever its size).
        patch_size: crop volumes to this size (padded where smaller); ``None`` returns whole samples.
        pos_ratio: fraction of patches centred on foreground (MONAI's ``pos / (pos + neg)``).
        seed: the run's seed (patch positions derive from it, the epoch and the position).
    """

    def __init__(
        self,
        store: CaseStore,
        index: SampleIndex,
        *,
        cache_mib: float = 512.0,
        patch_size: Sequence[int] | None = None,
        pos_ratio: float = 0.5,
        seed: int = 0,
    ) -> None:
        if cache_mib < 0:
            raise ValueError(f"`cache_mib` must be >= 0, got {cache_mib}")
        if not 0.0 <= pos_ratio <= 1.0:
            raise ValueError(f"`pos_ratio` must be in [0, 1], got {pos_ratio}")
        self.store = store
        self.index = index
        self.cache_bytes = float(cache_mib) * 2**20
        self.seed = seed
        self.patch: Compose | None = None
        if patch_size:
            keys = ["image", "label"]
            self.patch = Compose(
                [
                    SpatialPadd(keys, list(patch_size)),
                    RandCropByPosNegLabeld(
                        keys, "label", list(patch_size), pos=pos_ratio, neg=1.0 - pos_ratio, num_samples=1
                    ),
                ]
            )
        self._cases: OrderedDict[str, CachedCase] = OrderedDict()

    def __len__(self) -> int:
        return len(self.index)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_cases"] = OrderedDict()  # workers start with an empty cache instead of a pickled copy
        return state

    def _case(self, case: str) -> CachedCase:
        if case in self._cases:
            self._cases.move_to_end(case)
            return self._cases[case]
        loaded = self.store.load_case(case)
        self._cases[case] = loaded
        held = sum(c.image.nbytes + c.label.nbytes for c in self._cases.values())
        while held > self.cache_bytes and len(self._cases) > 1:
            _, dropped = self._cases.popitem(last=False)
            held -= dropped.image.nbytes + dropped.label.nbytes
        return loaded

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, int]:
        position, epoch = key
        case_id, slice_index, margin = self.index.entries[position]
        case = self._case(case_id)
        image, label = case.image, case.label[None]
        if slice_index is not None and case.meta.slice_axis is not None:
            axis = case.meta.slice_axis + 1  # after the channel axis
            image, label = np.take(image, slice_index, axis=axis), np.take(label, slice_index, axis=axis)
        if self.patch is not None:
            self.patch.set_random_state(seed=derive_seed(self.seed, "patch", epoch, position) % (2**32))
            (cropped,) = self.patch({"image": image, "label": label.astype(np.float32)})
            image, label = np.asarray(cropped["image"]), np.asarray(cropped["label"])
        return (
            torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)),
            torch.from_numpy(np.ascontiguousarray(label).astype(case.label.dtype)),  # uint8, int16 past 256 classes
            margin,
        )
