"""The ``Attack`` base: argument checks, the model guard, seeding, autocast, and the result record.

Every attack is configured at construction and called as ``attack(image, label) -> adversarial``.
``attack.run(image, label)`` returns an :class:`AttackResult` with more (per-sample Dice, realised
norms, per-voxel flip radii). Guarantees, for every attack:

- the caller's tensors are never modified; the result is detached, with the input's shape, dtype
  and device;
- the model runs in eval mode during the attack and gets back the exact previous mode of every
  submodule afterwards (``try/finally``), also when the attack raises;
- parameters do not require grad during the attack (so no weight gradients are computed or stored)
  and get their flags back afterwards; input gradients come from ``torch.autograd.grad``, so no
  ``.grad`` of any weight is touched;
- ``clip_range`` is explicit: ``None`` (no clamp) or ``(lo, hi)`` in the units of the model input;
- randomness comes from ``seed`` or a ``torch.Generator``: same seed, same result.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn

from imaseg.attacks.geometry import NORMS, clip_to_range, perturbation_norm
from imaseg.attacks.result import AttackResult
from imaseg.functional import as_class_labels
from imaseg.metrics.dice import sample_dice
from imaseg.metrics.prediction import predict_classes
from imaseg.utils.checks import check_choice

__all__ = ["Attack", "frozen_model"]


@contextlib.contextmanager
def frozen_model(model: Callable) -> Iterator[None]:
    """Eval mode and ``requires_grad=False`` for ``model`` (if an ``nn.Module``), restored exactly after."""
    if not isinstance(model, nn.Module):
        yield
        return
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        model.eval()
        for parameter, _ in flags:
            parameter.requires_grad_(False)
        yield
    finally:
        for module, training in modes:
            module.training = training
        for parameter, flag in flags:
            parameter.requires_grad_(flag)


class Attack:
    """Base class. Subclasses implement :meth:`_run` on validated, detached inputs.

    Args:
        model: any callable ``(B, C, *spatial) -> logits (B, K, *spatial)``: a network, or a
            :class:`~imaseg.attacks.SlidingWindowForward` around one.
        eps: budget, a float or a ``(B,)`` tensor of per-sample budgets, in model-input units.
        norm: ``"l2"`` (over the whole sample) or ``"linf"``.
        clip_range: ``(lo, hi)`` valid input range, or ``None`` for no clamp.
        seed: seed of the attack's own generator (ignored when ``generator`` is given); ``None`` draws a fresh
            seed at every call, so results are not reproducible.
        generator: a ``torch.Generator`` to draw random starts / noise from.
        autocast_dtype: ``torch.bfloat16`` / ``torch.float16`` to run the forward pass under
            autocast; the perturbation and its arithmetic stay in float32.
    """

    def __init__(
        self,
        model: Callable[[torch.Tensor], torch.Tensor],
        *,
        eps: float | torch.Tensor,
        norm: str = "l2",
        clip_range: tuple[float, float] | None = None,
        seed: int | None = 0,
        generator: torch.Generator | None = None,
        autocast_dtype: torch.dtype | None = None,
    ) -> None:
        if not callable(model):
            raise TypeError(f"`model` must be callable, got {type(model).__name__}")
        self.model = model
        self.norm = check_choice("norm", norm, NORMS)
        self.eps = self._check_eps(eps)
        if clip_range is not None:
            if len(clip_range) != 2 or not float(clip_range[0]) < float(clip_range[1]):
                raise ValueError(f"`clip_range` must be (lo, hi) with lo < hi, or None; got {clip_range!r}")
            clip_range = (float(clip_range[0]), float(clip_range[1]))
        self.clip_range = clip_range
        self.seed = seed
        self.generator = generator
        if autocast_dtype not in (None, torch.bfloat16, torch.float16):
            raise ValueError(f"`autocast_dtype` must be None, torch.bfloat16 or torch.float16, got {autocast_dtype}")
        self.autocast_dtype = autocast_dtype

    @staticmethod
    def _check_eps(eps: float | torch.Tensor) -> float | torch.Tensor:
        if isinstance(eps, torch.Tensor):
            if eps.dim() > 1:
                raise ValueError(f"`eps` tensor must be 1-D (one budget per sample), got shape {tuple(eps.shape)}")
            if eps.numel() and (eps.min() < 0 or not torch.isfinite(eps).all()):
                raise ValueError(f"`eps` must be >= 0, got {eps.min().item()}")
            return eps.detach().float()
        if isinstance(eps, bool) or not isinstance(eps, (int, float)):
            raise TypeError(f"`eps` must be a float or a tensor, got {type(eps).__name__}")
        if not eps >= 0 or eps == float("inf"):
            raise ValueError(f"`eps` must be >= 0, got {eps}")
        return float(eps)

    def __repr__(self) -> str:
        settings = {k: v for k, v in vars(self).items() if k not in ("model", "generator", "loss_fn")}
        inner = ", ".join(
            f"{k}={v!r}" if not isinstance(v, torch.Tensor) else f"{k}=tensor{tuple(v.shape)}"
            for k, v in settings.items()
        )
        return f"{type(self).__name__}({inner})"

    # ---- the public call -------------------------------------------------------------------------------
    def __call__(
        self, image: torch.Tensor, label: torch.Tensor, *, eps: float | torch.Tensor | None = None
    ) -> torch.Tensor:
        """Return the adversarial images ``(B, C, *spatial)`` (see :meth:`run`)."""
        return self.run(image, label, eps=eps).adversarial

    def run(self, image: torch.Tensor, label: torch.Tensor, *, eps: float | torch.Tensor | None = None) -> AttackResult:
        """Attack a batch.

        Args:
            image: ``(B, C, *spatial)`` float images (2D or 3D).
            label: ``(B, *spatial)`` or ``(B, 1, *spatial)`` integer labels (the target when targeted).
            eps: override the constructed budget for this call (float or ``(B,)`` tensor).
        """
        x, y = self.check_inputs(image, label)
        if self.clip_range is not None:
            lo, hi = x.min().item(), x.max().item()
            if lo < self.clip_range[0] - 1e-6 or hi > self.clip_range[1] + 1e-6:
                raise ValueError(
                    f"image values [{lo:.4g}, {hi:.4g}] lie outside `clip_range` {self.clip_range}; the clean input must "
                    "be valid (use the intensity range of the preprocessed data, or None)"
                )
        budget = self._budget(self.eps if eps is None else self._check_eps(eps), x)
        generator = self.generator
        if generator is None:
            generator = torch.Generator(device=x.device)
            if self.seed is None:
                generator.seed()  # seed=None: a fresh, unrecorded seed per call (not reproducible)
            else:
                generator.manual_seed(int(self.seed))
        with frozen_model(self.model), torch.enable_grad():
            result = self._run(x.float(), y, budget, generator)
        result.adversarial = result.adversarial.detach().to(dtype=image.dtype)
        return result

    def _run(self, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor, generator: torch.Generator) -> AttackResult:
        raise NotImplementedError

    # ---- public helpers (subclasses, the shared iterate loop and ensembles use them) -----------------
    def check_inputs(self, image: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The detached image and class-index labels ``(B, *spatial)`` (MONAI's conventions accepted)."""
        if not isinstance(image, torch.Tensor) or not image.is_floating_point():
            raise TypeError("`image` must be a floating-point tensor (B, C, *spatial)")
        if image.dim() not in (4, 5):
            raise ValueError(f"`image` must be (B, C, H, W) or (B, C, H, W, D), got shape {tuple(image.shape)}")
        return image.detach(), as_class_labels(label, image)

    def _budget(self, eps: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        if isinstance(eps, torch.Tensor):
            if eps.numel() != batch:
                raise ValueError(f"`eps` has {eps.numel()} entries for a batch of {batch}; give one per sample")
            return eps.to(x.device, torch.float32).reshape(batch)
        return torch.full((batch,), float(eps), device=x.device)

    def logits_of(self, x: torch.Tensor) -> torch.Tensor:
        """The model's float32 logits on ``x`` (under the attack's autocast, when set)."""
        if self.autocast_dtype is None:
            return self.model(x).float()
        with torch.autocast(device_type=x.device.type, dtype=self.autocast_dtype):
            return self.model(x).float()

    @torch.no_grad()
    def score(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(prediction, dice)`` of the model on ``x`` against ``y``."""
        logits = self.logits_of(x)
        prediction = predict_classes(logits)
        return prediction, sample_dice(prediction, y, logits.shape[1])

    def clip_delta(self, x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """``delta`` clipped so that ``x + delta`` stays inside ``clip_range``."""
        return clip_to_range(x, delta, self.clip_range)

    def _norm_of(self, delta: torch.Tensor) -> torch.Tensor:
        return perturbation_norm(delta, self.norm)
