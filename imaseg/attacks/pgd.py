"""Projected gradient descent on dense outputs (Madry et al. 2018), for segmentation, 2D and 3D.

Each step: ``delta <- Proj_eps(delta + alpha * dir(grad))`` then clip ``x + delta`` to ``clip_range``,
with ``dir`` the sign (Linf) or the unit-L2 gradient (L2), per sample. Budgets may differ per sample.

With ``select="worst"`` (default) the prediction at every iterate, which the forward pass computes
anyway, is scored (hard Dice against the label) and each sample keeps its worst iterate, so a longer
attack with the same seed and step size can never end better for the model than a shorter one; over
``restarts`` the per-sample worst is kept too. ``select="last"`` returns the final iterate (the usual
choice inside adversarial training, one forward cheaper). ``record_flips=True`` also records, per
voxel, the perturbation norm at which its predicted class first left the clean prediction.
"""

from __future__ import annotations

import torch

from imaseg.attacks.base import Attack
from imaseg.attacks.geometry import random_in_ball
from imaseg.attacks.losses import AttackLoss, build_attack_loss
from imaseg.attacks.path import walk
from imaseg.attacks.registry import AttackSettings, register_attack
from imaseg.attacks.result import AttackResult, worst_over_restarts
from imaseg.attacks.tracking import IterateTracker
from imaseg.metrics.dice import sample_dice
from imaseg.metrics.prediction import predict_classes
from imaseg.utils.checks import check_choice, check_non_negative, check_positive_int

__all__ = ["FLIP_START", "PGD", "build_cospgd", "build_pgd", "build_segpgd"]

# With record_flips the random start has this fraction of the budget, not the full budget: a Linf start
# at full budget already sits at norm eps, and every flip norm would read "about eps".
FLIP_START = 0.05


class PGD(Attack):
    """PGD for segmentation.

    Args:
        model, eps, norm, clip_range, seed, generator, autocast_dtype: see :class:`~imaseg.attacks.Attack`.
        steps: gradient steps.
        alpha: absolute step size (model-input units); default ``alpha_factor * eps / steps``.
        alpha_factor: step size as a multiple of ``eps / steps`` when ``alpha`` is not given (2.5).
        loss: attack loss name (``ce``, ``dice``, ``dice-ce``, ``segpgd``, ``cospgd``) or an
            :class:`~imaseg.attacks.losses.AttackLoss`.
        random_start: start from a random point in the ball.
        restarts: independent random starts; the per-sample worst result is kept.
        targeted: descend the loss towards ``label`` (then the label is the target map).
        select: ``"worst"`` (the iterate worst for the model, per sample) or ``"last"`` (final iterate).
        record_flips: record per-voxel flip norms along the attack path, an upper bound on the distance to
            the voxel's decision boundary (the random start then has radius ``FLIP_START * eps``).

    Example:
        >>> import torch
        >>> from imaseg.networks import build_network
        >>> net = build_network("unet", 2, 1, 3, channels=(4, 8), num_res_units=0)
        >>> attack = PGD(net, eps=0.5, steps=3, clip_range=(0.0, 1.0))
        >>> x, y = torch.rand(2, 1, 16, 16), torch.randint(0, 3, (2, 16, 16))
        >>> adv = attack(x, y)
        >>> bool(((adv - x).flatten(1).norm(dim=1) <= 0.5 + 1e-5).all())
        True
    """

    def __init__(
        self,
        model,
        *,
        eps: float | torch.Tensor,
        norm: str = "l2",
        steps: int = 20,
        alpha: float | None = None,
        alpha_factor: float = 2.5,
        loss: str | AttackLoss = "ce",
        random_start: bool = True,
        restarts: int = 1,
        targeted: bool = False,
        select: str = "worst",
        record_flips: bool = False,
        clip_range: tuple[float, float] | None = None,
        seed: int | None = 0,
        generator: torch.Generator | None = None,
        autocast_dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            model,
            eps=eps,
            norm=norm,
            clip_range=clip_range,
            seed=seed,
            generator=generator,
            autocast_dtype=autocast_dtype,
        )
        self.steps = check_positive_int("steps", steps, minimum=0)
        self.alpha = None if alpha is None else check_non_negative("alpha", alpha)
        self.alpha_factor = check_non_negative("alpha_factor", alpha_factor)
        self.loss_fn = build_attack_loss(loss)
        self.random_start = bool(random_start)
        self.restarts = check_positive_int("restarts", restarts)
        self.targeted = bool(targeted)
        if select == "best":
            raise ValueError('`select` "best" was renamed "worst" (the iterate worst for the model), got "best"')
        self.select = check_choice("select", select, ("worst", "last"))
        self.record_flips = bool(record_flips)

    def _run(self, x, y, eps, generator) -> AttackResult:
        return worst_over_restarts(self.restarts, lambda: self._path(x, y, eps, generator), targeted=self.targeted)

    def _path(self, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor, generator: torch.Generator) -> AttackResult:
        steps, norm = self.steps, self.norm
        shape = (-1, *([1] * (x.dim() - 1)))
        alpha = (
            torch.full_like(eps, self.alpha) if self.alpha is not None else self.alpha_factor * eps / max(steps, 1)
        ).view(shape)
        track = self.select == "worst" or self.restarts > 1
        record = self.record_flips
        sign = -1.0 if self.targeted else 1.0

        if self.random_start:  # a path that records flips starts near x: its flip norms are path distances
            delta = random_in_ball(x.shape, eps * (FLIP_START if record else 1.0), norm, generator).to(x.device)
            delta = self.clip_delta(x, delta)
        else:
            delta = torch.zeros_like(x)
        clean_pred = self.score(x, y)[0] if (record and self.random_start) else None

        tracker = IterateTracker(
            y,
            self._norm_of,
            track=track,
            record=record,
            targeted=self.targeted,
            clean_prediction=clean_pred,
            start=delta,
        )

        delta = walk(
            self,
            x,
            delta,
            eps,
            alpha,
            steps,
            lambda logits, k: self.loss_fn(logits, y, step=k, steps=steps, targeted=self.targeted),
            observe=tracker if tracker.active else None,
            sign=sign,
        )

        prediction = dice = None
        if track or record or steps == 0:
            with torch.no_grad():
                logits = self.logits_of(x + delta)
                pred = predict_classes(logits)
                tracker(steps, delta, pred, logits.shape[1])
                if track:
                    assert tracker.best_delta is not None  # set from the start when tracking
                    delta, prediction, dice = tracker.best_delta, tracker.best_prediction, tracker.best_dice
                else:
                    prediction, dice = pred, sample_dice(pred, y, logits.shape[1])
        adversarial = x + delta
        return AttackResult(
            adversarial=adversarial,
            dice=dice,
            norm=self._norm_of(delta),
            prediction=prediction,
            flip_radius=tracker.flip_radius,
            flip_step=tracker.flip_step,
            source=torch.zeros(x.shape[0], dtype=torch.long, device=x.device),
        )


def _pgd_common(eps, norm: str, settings: AttackSettings) -> dict:
    return {
        **settings.base_arguments(eps),
        "norm": norm,
        "steps": settings.steps,
        "alpha": settings.step_size,
        "restarts": settings.restarts,
        "record_flips": settings.record_flips,
    }


@register_attack(
    "pgd",
    "{steps}-step PGD, loss {losses} (worst iterate per sample; several losses: the worst by global Dice), "
    "{restarts} restart(s)",
    uses_losses=True,
    records_flips=True,
    citation="PGD: Madry et al., ICLR 2018",
)
def build_pgd(model, *, eps, norm: str, settings: AttackSettings) -> Attack:
    """PGD with the configured loss; several losses -> their worst case by the global-Dice rule (``WorstCase``)."""
    from imaseg.attacks.ensemble import WorstCase

    losses = list(settings.losses)
    if not losses:
        raise ValueError("`losses` must name at least one attack loss for pgd")
    common = _pgd_common(eps, norm, settings)
    if len(losses) == 1:
        return PGD(model, loss=losses[0], **common)
    return WorstCase([PGD(model, loss=loss, **common) for loss in losses])


@register_attack(
    "segpgd",
    "{steps}-step PGD, loss segpgd (worst iterate per sample), {restarts} restart(s)",
    citation="SegPGD: Gu et al., ECCV 2022",
)
def build_segpgd(model, *, eps, norm: str, settings: AttackSettings) -> Attack:
    """SegPGD (Gu et al. 2022): PGD whose loss shifts weight to still-correct voxels over the steps."""
    return PGD(model, loss="segpgd", **_pgd_common(eps, norm, settings))


@register_attack(
    "cospgd",
    "{steps}-step PGD, loss cospgd (worst iterate per sample), {restarts} restart(s)",
    citation="CosPGD: Agnihotri et al., ICML 2024",
)
def build_cospgd(model, *, eps, norm: str, settings: AttackSettings) -> Attack:
    """CosPGD (Agnihotri et al. 2024): PGD whose per-voxel loss is weighted by prediction-target agreement."""
    return PGD(model, loss="cospgd", **_pgd_common(eps, norm, settings))
