"""Random-noise baselines with the same budget as the attacks they are compared with.

Noise is drawn (Gaussian or uniform), scaled per sample onto the sphere of radius ``eps`` in the
chosen norm (the full budget, as the attack may use), then clipped to ``clip_range``. With
``draws > 1`` each sample keeps its worst draw. A useful sanity row: on our heart data same-norm
Gaussian noise moved Dice by <= 0.001 where PGD erased it.
"""

from __future__ import annotations

import torch

from imaseg.attacks.base import Attack
from imaseg.attacks.geometry import scale_to_sphere
from imaseg.attacks.registry import AttackSettings, register_attack
from imaseg.attacks.result import AttackResult, keep_worse
from imaseg.utils.checks import check_choice, check_positive_int

__all__ = ["NoiseAttack", "build_gaussian_noise", "build_uniform_noise"]


class NoiseAttack(Attack):
    """Random noise on the eps-sphere.

    Args:
        distribution: ``"gaussian"`` or ``"uniform"`` (in [-1, 1] per element before scaling).
        draws: independent draws; the per-sample worst (lowest Dice) is kept.
        Others: see :class:`~imaseg.attacks.Attack`.
    """

    def __init__(
        self,
        model,
        *,
        distribution: str = "gaussian",
        draws: int = 1,
        **common,
    ) -> None:
        super().__init__(model, **common)
        self.distribution = check_choice("distribution", distribution, ("gaussian", "uniform"))
        self.draws = check_positive_int("draws", draws)

    def _run(self, x, y, eps, generator) -> AttackResult:
        result = None
        for _ in range(self.draws):
            if self.distribution == "gaussian":
                noise = torch.randn(x.shape, generator=generator, device=generator.device)
            else:
                noise = torch.rand(x.shape, generator=generator, device=generator.device) * 2 - 1
            delta = self.clip_delta(x, scale_to_sphere(noise.to(x.device), eps, self.norm))
            prediction, dice = self.score(x + delta, y)
            draw = AttackResult(
                x + delta,
                dice,
                self._norm_of(delta),
                prediction,
                source=torch.zeros(x.shape[0], dtype=torch.long, device=x.device),
            )
            result = draw if result is None else keep_worse(result, draw)
        if result is None:  # draws >= 1 (checked in __init__)
            raise RuntimeError("the noise attack made no draw")
        return result


def _noise(model, eps, norm: str, settings: AttackSettings, distribution: str) -> NoiseAttack:
    return NoiseAttack(
        model,
        distribution=distribution,
        draws=settings.noise_draws,
        eps=eps,
        norm=norm,
        clip_range=settings.clip_range,
        seed=settings.seed,
        autocast_dtype=settings.autocast_dtype,
    )


@register_attack("noise", "random noise scaled to the eps-sphere", gradient=False, uses_steps=False)
def build_gaussian_noise(model, *, eps, norm: str, settings: AttackSettings) -> NoiseAttack:
    """Gaussian noise on the eps-sphere."""
    return _noise(model, eps, norm, settings, "gaussian")


@register_attack("uniform", "random noise scaled to the eps-sphere", gradient=False, uses_steps=False)
def build_uniform_noise(model, *, eps, norm: str, settings: AttackSettings) -> NoiseAttack:
    """Uniform noise on the eps-sphere."""
    return _noise(model, eps, norm, settings, "uniform")
