"""The one iterate loop every gradient attack walks: step, project, clip, observe.

PGD, the IMA margin search and TRADES' inner maximisation differ only in their objective, their
start and what they watch along the way; the path itself is shared, so a fix or a speed-up here
reaches all of them. Each step::

    delta <- clip(Proj_eps(delta + alpha * dir(sign * grad)))

with ``dir`` the sign (Linf) or the unit-L2 gradient (L2), per sample. ``observe(k, delta, prediction,
num_classes)`` sees every iterate *before* its step, with the prediction the forward pass computed
anyway (worst-iterate tracking, flip records, the margin predicate).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from imaseg.attacks.geometry import project, step_direction
from imaseg.metrics.prediction import predict_classes

if TYPE_CHECKING:
    from imaseg.attacks.base import Attack

__all__ = ["Objective", "Observer", "walk"]

Objective = Callable[[torch.Tensor, int], torch.Tensor]
"""``objective(logits, step) -> (B,)`` per-sample value the path ascends (``sign=-1``: descends)."""

Observer = Callable[[int, torch.Tensor, torch.Tensor, int], None]
"""``observe(step, delta, prediction, num_classes)`` called on every iterate before its step."""


def walk(
    attack: Attack,
    x: torch.Tensor,
    delta: torch.Tensor,
    eps: torch.Tensor,
    alpha: torch.Tensor,
    steps: int,
    objective: Objective,
    *,
    observe: Observer | None = None,
    sign: float = 1.0,
) -> torch.Tensor:
    """Walk ``steps`` iterates from ``delta`` and return the last one (detached).

    Args:
        attack: supplies the model forward (``logits_of``, autocast included), the norm and the clip.
        x: ``(B, C, *spatial)`` clean inputs.
        delta: ``(B, C, *spatial)`` start perturbation (inside the ball, clipped).
        eps: ``(B,)`` per-sample budgets.
        alpha: step sizes, broadcastable to ``x`` (``(B, 1, ...)``).
        steps: number of gradient steps.
        objective: per-sample value to ascend.
        observe: optional callback on every iterate (see the module docstring).
        sign: ``1`` to ascend, ``-1`` to descend (targeted attacks).
    """
    norm = attack.norm
    for k in range(steps):
        current = (x + delta).requires_grad_(True)
        logits = attack.logits_of(current)
        loss = objective(logits, k).sum()
        (grad,) = torch.autograd.grad(loss, current)
        with torch.no_grad():
            if observe is not None:
                observe(k, delta, predict_classes(logits.detach()), logits.shape[1])
            delta = delta + alpha * step_direction(sign * grad, norm)
            delta = attack.clip_delta(x, project(delta, eps, norm))
    return delta
