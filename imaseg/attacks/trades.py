"""The inner maximisation of TRADES (Zhang et al., ICML 2019): find ``x'`` in the ball that maximises
``KL(f(x) || f(x'))`` per voxel, i.e. pushes the prediction away from the model's own clean prediction
(no label needed). Starts at ``x + 0.001 * N(0, 1)`` as the reference implementation does."""

from __future__ import annotations

import torch

from imaseg.attacks.base import Attack
from imaseg.attacks.geometry import project
from imaseg.attacks.path import walk
from imaseg.attacks.result import AttackResult
from imaseg.functional import kl_per_sample
from imaseg.utils.checks import check_non_negative, check_positive_int

__all__ = ["TradesAttack"]


class TradesAttack(Attack):
    """TRADES' KL-maximising PGD. Args: ``steps`` and ``alpha_factor`` (step = factor * eps / steps)
    plus those of :class:`~imaseg.attacks.Attack`."""

    def __init__(
        self,
        model,
        *,
        steps: int = 10,
        alpha_factor: float = 2.5,
        **common,
    ) -> None:
        super().__init__(model, **common)
        self.steps = check_positive_int("steps", steps)
        self.alpha_factor = check_non_negative("alpha_factor", alpha_factor)

    def _run(self, x, y, eps, generator) -> AttackResult:
        shape = (-1, *([1] * (x.dim() - 1)))
        with torch.no_grad():
            clean_probs = self.logits_of(x).softmax(1)
        noise = torch.randn(x.shape, generator=generator, device=generator.device).to(x.device) * 1e-3
        delta = self.clip_delta(x, project(noise, eps, self.norm))
        alpha = (self.alpha_factor * eps / self.steps).view(shape)
        delta = walk(self, x, delta, eps, alpha, self.steps, lambda logits, _k: kl_per_sample(logits, clean_probs))
        return AttackResult(x + delta, None, self._norm_of(delta), None)
