"""Where training and validation batches come from: the cache held in memory, or streamed from it.

``loader="memory"`` stacks every sample of the split into two tensors (fast for 2D slices of small sets);
``loader="stream"`` reads cases on demand through :class:`~imaseg.cache.streaming.StreamingSamples` and a
``DataLoader`` with ``workers`` processes, holding at most ``cache_mib`` MiB of decoded cases per process, and
is the only loader for 3D patches. Both draw the epoch's order from the same seeded generator (sharded per
rank under DDP), so on the same data they yield the same batches.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from imaseg.cache.reader import CaseStore, SampleSet
from imaseg.cache.streaming import SampleIndex, StreamingSamples, sample_index
from imaseg.training.config import TrainConfig

__all__ = ["LOADERS", "TrainingData", "resolve_loader"]

LOADERS = ("auto", "memory", "stream")


def resolve_loader(config: TrainConfig) -> str:
    """``auto``: stream for 3D patches, memory otherwise.

    Raises:
        ValueError: patches asked of the in-memory loader.
    """
    if config.loader == "auto":
        return "stream" if config.patch_size else "memory"
    if config.patch_size and config.loader == "memory":
        raise ValueError("`patch_size` needs `loader` stream (or auto): patches are cropped as cases stream in")
    return config.loader


class TrainingData:
    """One split's samples, in memory or streamed (see the module docstring).

    Args:
        store: the cache.
        config: loader, workers, cache_mib, patch_size, patch_pos_ratio, patches_per_case, fold, seed.
        split: ``train`` (patches when configured) or ``val`` (whole samples).
    """

    def __init__(self, store: CaseStore, config: TrainConfig, split: str = "train") -> None:
        self.config = config
        self.loader = resolve_loader(config)
        patches = config.patch_size if split == "train" else None
        self.memory: SampleSet | None = None
        self.dataset: StreamingSamples | None = None
        if self.loader == "memory":
            self.memory = store.samples(split, config.fold)
            self.index = SampleIndex(
                list(self.memory.ids),
                list(self.memory.cases),
                [(c, None, i) for i, c in enumerate(self.memory.cases)],
            )
        else:
            self.index = sample_index(
                store, split, config.fold, patches_per_case=config.patches_per_case if patches else 0
            )
            self.dataset = StreamingSamples(
                store,
                self.index,
                cache_mib=config.cache_mib,
                patch_size=patches,
                pos_ratio=config.patch_pos_ratio,
                seed=config.seed,
            )

    @property
    def ids(self) -> list[str]:
        """One id per margin (a 2D slice, or a 3D case whatever its patches)."""
        return self.index.ids

    def __len__(self) -> int:
        return len(self.index)

    def batches(
        self, order: list[torch.Tensor], epoch: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """``(images, labels (B, 1, *S), id positions)`` for each group of sample positions in ``order``."""
        if self.memory is not None:
            for positions in order:
                yield self.memory.images[positions], self.memory.labels[positions], positions
            return
        if self.dataset is None:  # set for the stream loader
            raise RuntimeError("no dataset for the stream loader")
        sampler = [[(int(p), epoch) for p in positions] for positions in order]
        if self.config.workers == 0:
            yield from _prefetched(self.dataset, sampler)
            return
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_sampler=sampler,
            num_workers=self.config.workers,
            pin_memory=torch.cuda.is_available(),
        )
        yield from loader

    def in_order(self, batch_size: int) -> list[torch.Tensor]:
        """Every sample once, in manifest order, in groups of ``batch_size`` (validation)."""
        positions = torch.arange(len(self))
        return [positions[i : i + batch_size] for i in range(0, len(self), batch_size)]


def _collate(dataset: StreamingSamples, keys: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    items = [dataset[key] for key in keys]
    return (
        torch.stack([i[0] for i in items]),
        torch.stack([i[1] for i in items]),
        torch.tensor([i[2] for i in items], dtype=torch.int64),
    )


def _prefetched(dataset: StreamingSamples, sampler: list[list[tuple[int, int]]]):
    """Without worker processes: one thread reads the next batch while the current one trains (file reads and
    decoding release the GIL), so streaming costs little more than holding the data in memory."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="imaseg-prefetch") as pool:
        pending = pool.submit(_collate, dataset, sampler[0]) if sampler else None
        for k in range(len(sampler)):
            assert pending is not None  # submitted for every k < len(sampler)
            batch = pending.result()
            pending = pool.submit(_collate, dataset, sampler[k + 1]) if k + 1 < len(sampler) else None
            yield batch
