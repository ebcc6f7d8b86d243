"""imaseg inside MONAI's own engines: robust training steps, attacked inference, Dice under attack.

- :class:`RobustIteration`: ``SupervisedTrainer(iteration_update=...)`` for any imaseg training method
  (``pgd-at``, ``trades``, ``ima``...); IMA's margins are keyed by a sample-id key of the batch dict. It
  keeps ``SupervisedTrainer``'s contract: ``amp`` and ``engine.scaler``, ``optim_set_to_none``,
  ``accumulation_steps`` and MONAI's ``IterationEvents``.
- :class:`AdversarialInferer`: an ``Inferer`` for ``SupervisedEvaluator``, so MONAI's metric handlers
  report Dice under attack (per-slice budgets under a ``SliceInferer``); :func:`prepare_batch_with_label`
  hands it the labels to attack. With ``CheckpointSaver(save_key_metric=True, key_metric_name=...)`` in
  its ``val_handlers`` and a ``ValidationHandler`` on the trainer, it keeps the best robust checkpoint
  (the README's recipe, tested in ``tests/monai/test_contracts.py``).
- :class:`RobustDiceMetric`: Dice under attack with MONAI's cumulative metric API.

Labels may be class indices ``(B, [1,] *spatial)`` or one-hot ``(B, K, *spatial)``. The engines need
``pytorch-ignite`` (``pip install pytorch-ignite``), as all of MONAI's engines do.
"""

from imaseg.monai.inferer import AdversarialInferer, prepare_batch_with_label
from imaseg.monai.iteration import RobustIteration
from imaseg.monai.metric import RobustDiceMetric

__all__ = ["AdversarialInferer", "RobustDiceMetric", "RobustIteration", "prepare_batch_with_label"]
