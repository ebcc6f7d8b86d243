"""One robust training step inside ``monai.engines.SupervisedTrainer``, on MONAI's terms.

The step keeps the contract of ``SupervisedTrainer._iteration``: ``engine.amp`` (autocast on CUDA and
``engine.scaler`` for the backward and the optimiser step), ``engine.optim_set_to_none``,
``engine.accumulation_steps``, and MONAI's ``IterationEvents`` in MONAI's order (``FORWARD_COMPLETED``,
``LOSS_COMPLETED``, ``BACKWARD_COMPLETED``, ``MODEL_COMPLETED``), so handlers such as gradient clipping on
``BACKWARD_COMPLETED`` run. ``PRED`` is the network's clean prediction in eval mode, without gradients,
before the step: no forward besides the method's own runs in train mode (norm statistics and dropout see
only the training forward). The method's epoch end (IMA: the margin update) runs inside the epoch's last
iteration, before any ``EPOCH_COMPLETED`` handler (``StatsHandler``, ``ValidationHandler``,
``CheckpointSaver``), so ``robust_*`` metrics are those of the epoch being logged.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from monai.engines.utils import IterationEvents
from monai.utils import CommonKeys as Keys
from torch import nn

from imaseg.config import config_from_dict
from imaseg.monai.labels import class_indices
from imaseg.training.config import TrainConfig
from imaseg.training.methods import build_method, method_class

__all__ = ["RobustIteration"]

logger = logging.getLogger(__name__)


def _autocast(engine: Any, device: torch.device) -> contextlib.AbstractContextManager:
    """MONAI's ``torch.autocast("cuda", **engine.amp_kwargs)`` under ``engine.amp``; nothing off CUDA (where
    MONAI's own autocast is a disabled no-op) or without ``amp``."""
    if not getattr(engine, "amp", False) or engine.scaler is None or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast("cuda", **getattr(engine, "amp_kwargs", {}))


@contextlib.contextmanager
def _eval_mode(network: nn.Module) -> Iterator[None]:
    training = network.training
    network.eval()
    try:
        yield
    finally:
        network.train(training)


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
        predict: compute ``PRED`` (the clean prediction, one no-gradient eval-mode forward); ``False`` skips
            it and leaves ``PRED`` ``None`` for trainers whose handlers do not read it.
        **settings: any :class:`~imaseg.training.config.TrainConfig` field, e.g. ``eps=1.0``,
            ``attack_steps=10``, ``ima={"eps_max": 1.5}`` or ``ima_eps_max=1.5``.

    Labels may be ``(B, *spatial)``, ``(B, 1, *spatial)`` or one-hot ``(B, K, *spatial)``. The method is
    ``self.method``, an ``nn.Module``: put it in ``CheckpointSaver``'s ``save_dict`` and IMA's margins travel
    with the checkpoint. Epoch ends need no handler when the loader has a length; :meth:`attach` covers
    loaders without one.

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
        predict: bool = True,
        **settings: Any,
    ) -> None:
        self.config = config_from_dict(TrainConfig, {"method": method, "seed": seed, **settings})
        ids = [str(i) for i in (sample_ids or [])]
        if method_class(self.config.method).needs_sample_ids and not ids:
            raise ValueError(f"`sample_ids` must list every training sample for {method} (it keeps state per sample)")
        self.method = build_method(self.config, network, ids, num_classes)
        self.positions = {sample: i for i, sample in enumerate(ids)}
        self.id_key = id_key
        self.predict = predict
        self.history: list[dict[str, float]] = []
        self._ended: tuple[int, int] | None = None  # (engine id, epoch) whose end already ran

    def attach(self, engine: Any) -> None:
        """Also end epochs on ``EPOCH_COMPLETED`` (for loaders without a length; a no-op otherwise)."""
        from ignite.engine import Events

        if not engine.has_event_handler(self.epoch_completed, Events.EPOCH_COMPLETED):
            engine.add_event_handler(Events.EPOCH_COMPLETED, self.epoch_completed)

    def epoch_completed(self, engine: Any) -> None:
        """The method's epoch end (IMA: margin update) once per epoch; ``robust_*`` fields into the metrics."""
        if self._ended == (id(engine), engine.state.epoch):
            return
        self._ended = (id(engine), engine.state.epoch)
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

    def _accumulation(self, engine: Any) -> tuple[int, bool, bool]:
        """``(steps, zero_grad now, step now)`` as ``SupervisedTrainer`` computes them."""
        steps = int(getattr(engine, "accumulation_steps", 1) or 1)
        if steps <= 1:
            return 1, True, True
        length = engine.state.epoch_length
        local = (engine.state.iteration - 1) % length if length is not None else engine.state.iteration - 1
        last = length is not None and local + 1 == length
        return steps, local % steps == 0, (local + 1) % steps == 0 or last

    def __call__(self, engine: Any, batchdata: Any) -> dict:
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        batch = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs)
        inputs, targets = batch[0], batch[1]
        args, kwargs = (batch[2], batch[3]) if len(batch) == 4 else ((), {})
        images = inputs.as_tensor() if hasattr(inputs, "as_tensor") else inputs
        labels = class_indices(targets, images)
        index = self._index(batchdata, images.shape[0])
        generator = torch.Generator(device=images.device)
        generator.manual_seed(self.config.seed * 1_000_003 + engine.state.iteration)
        network = engine.network
        scaler = engine.scaler if getattr(engine, "amp", False) else None
        steps, zero_grad, step = self._accumulation(engine)
        engine.state.output = {Keys.IMAGE: inputs, Keys.LABEL: targets, Keys.PRED: None}
        if self.predict:
            with torch.no_grad(), _eval_mode(network), _autocast(engine, images.device):
                engine.state.output[Keys.PRED] = engine.inferer(inputs, network, *args, **kwargs)
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)
        network.train()
        if zero_grad:
            engine.optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
        with _autocast(engine, images.device):
            loss, logs = self.method.loss(network, network, images, labels, index, generator)
        engine.state.output[Keys.LOSS] = loss
        engine.fire_event(IterationEvents.LOSS_COMPLETED)
        scaled = loss / steps if steps > 1 else loss
        (scaler.scale(scaled) if scaler is not None else scaled).backward()
        engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
        if step:
            if scaler is not None:
                scaler.step(engine.optimizer)
                scaler.update()
            else:
                engine.optimizer.step()
        engine.state.output[Keys.LOSS] = loss.detach()
        engine.state.output.update({key: float(value) for key, value in logs.items()})  # read after the step
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        length = engine.state.epoch_length
        if length is not None and engine.state.iteration % length == 0:
            self.epoch_completed(engine)  # before every EPOCH_COMPLETED handler: they log this epoch's fields
        return engine.state.output
