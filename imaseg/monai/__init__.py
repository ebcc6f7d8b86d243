"""imaseg inside MONAI's own engines: robust training steps, attacked inference, Dice under attack.

- :class:`RobustIteration`: ``SupervisedTrainer(iteration_update=...)`` for any imaseg training method
  (``pgd-at``, ``trades``, ``ima``...); IMA's margins are keyed by a sample-id key of the batch dict.
- :class:`AdversarialInferer`: an ``Inferer`` for ``SupervisedEvaluator``, so MONAI's metric handlers
  report Dice under attack; :func:`prepare_batch_with_label` hands it the labels to attack.
- :class:`RobustDiceMetric`: Dice under attack with MONAI's cumulative metric API.

They need ``pytorch-ignite`` for the engines (``pip install pytorch-ignite``), as MONAI's engines do.
"""

from imaseg.monai.inferer import AdversarialInferer, prepare_batch_with_label
from imaseg.monai.iteration import RobustIteration
from imaseg.monai.metric import RobustDiceMetric

__all__ = ["AdversarialInferer", "RobustDiceMetric", "RobustIteration", "prepare_batch_with_label"]
