"""One robust training step inside ``monai.engines.SupervisedTrainer``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from monai.utils import CommonKeys as Keys
from torch import nn

from imaseg.config import config_from_dict
from imaseg.functional import as_class_labels
from imaseg.training.config import TrainConfig
from imaseg.training.methods import build_method, method_class

__all__ = ["RobustIteration"]

logger = logging.getLogger(__name__)


class RobustIteration:
    """``iteration_update`` for ``SupervisedTrainer``: one step of an imaseg training method.

    Args:
        network: the network the trainer optimises (the method's inner attacks use it).
        method: a registered method name: ``std``, ``pgd-at``, ``trades``, ``ima``.
        num_classes: classes including background.
        sample_ids: the ids of every training sample, as the batch dict carries them under ``id_key``
            (required by ``ima``: each sample keeps its own margin).
        id_key: key of the sample ids in the batch dict (a string per sample after collation).
        seed: seed of the inner attacks' random starts (drawn per epoch and iteration).
        **settings: any :class:`~imaseg.training.config.TrainConfig` field, e.g. ``eps=1.0``,
            ``attack_steps=10``, ``ima={"eps_max": 1.5}`` or ``ima_eps_max=1.5``.

    The method is ``self.method``, an ``nn.Module``: put it in ``CheckpointSaver``'s ``save_dict`` and
    IMA's margins travel with the checkpoint. Call :meth:`attach` so epoch ends update the margins.

    Raises:
        ValueError: an unknown method or setting, or ``ima`` without ``sample_ids``.
    """

    def __init__(
        self,
        network: nn.Module,
        method: str = "ima",
        *,
        num_classes: int,
        sample_ids: Sequence[str] | None = None,
        id_key: str = "sample_id",
        seed: int = 0,
        **settings: Any,
    ) -> None:
        self.config = config_from_dict(TrainConfig, {"method": method, "seed": seed, **settings})
        ids = [str(i) for i in (sample_ids or [])]
        if method_class(self.config.method).needs_sample_ids and not ids:
            raise ValueError(f"`sample_ids` must list every training sample for {method} (it keeps state per sample)")
        self.method = build_method(self.config, network, ids, num_classes)
        self.positions = {sample: i for i, sample in enumerate(ids)}
        self.id_key = id_key
        self.history: list[dict[str, float]] = []

    def attach(self, engine: Any) -> None:
        """Run the method's epoch end (IMA: margin update) after every epoch of ``engine``."""
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_COMPLETED, self.epoch_completed)

    def epoch_completed(self, engine: Any) -> None:
        fields = self.method.end_epoch()
        self.method.reset_epoch()
        self.history.append(fields)
        engine.state.metrics.update({f"robust_{k}": v for k, v in fields.items()})
        if fields:
            logger.info("epoch %d: %s", engine.state.epoch, ", ".join(f"{k} {v:.4g}" for k, v in fields.items()))

    def _index(self, batchdata: Any, batch: int) -> torch.Tensor:
        if not self.positions:
            return torch.zeros(batch, dtype=torch.int64)
        if not isinstance(batchdata, dict) or self.id_key not in batchdata:
            raise KeyError(f"the batch dict has no {self.id_key!r} key; add the sample ids to every data dict")
        ids = [str(i) for i in batchdata[self.id_key]]
        unknown = [i for i in ids if i not in self.positions]
        if unknown:
            raise KeyError(f"sample ids {unknown[:5]} were not in `sample_ids` given to RobustIteration")
        return torch.tensor([self.positions[i] for i in ids], dtype=torch.int64)

    def __call__(self, engine: Any, batchdata: Any) -> dict:
        batch = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs)
        inputs, targets = batch[0], batch[1]
        images = inputs.as_tensor() if hasattr(inputs, "as_tensor") else inputs
        labels = as_class_labels(targets, images)
        index = self._index(batchdata, images.shape[0])
        generator = torch.Generator(device=images.device)
        generator.manual_seed(self.config.seed * 1_000_003 + engine.state.iteration)
        network = engine.network
        network.train()
        engine.optimizer.zero_grad(set_to_none=True)
        loss, logs = self.method.loss(network, network, images, labels, index, generator)
        loss.backward()
        engine.optimizer.step()
        with torch.no_grad():
            prediction = engine.inferer(inputs, network)
        logged = {key: float(value) for key, value in logs.items()}  # read after the step: no wait inside it
        return {Keys.IMAGE: inputs, Keys.LABEL: targets, Keys.PRED: prediction, Keys.LOSS: loss.detach(), **logged}
