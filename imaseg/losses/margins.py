"""IMA's per-sample margins, kept in registered buffers so checkpoints carry them.

Each training sample (a 2D slice or a 3D case, keyed by the stable sample id from preprocessing) has a
margin ``E_i``, an L2 radius, starting at ``delta``. During an epoch every visit records the norm of the
adversarial example that the inner attack returned and whether the sample survived (no failure found
within ``E_i``). At the end of the epoch (the official rule, Ma & Liang):

- a sample that survived on some visit grows: ``E_i += delta``;
- a sample visited but never surviving takes the running boundary estimate, which starts the epoch at
  ``E_i`` and is averaged with each visit's norm: ``est <- (est + ||x_adv - x||) / 2``;
- with ``survival_share`` s > 0 (for samplers that visit a sample many times per epoch, as nnU-Net's does with
  a case's slices and patches): a sample grows only when more than a share s of its visits survived, and takes
  its boundary estimate otherwise; "some visit" alone would let almost every sample grow every epoch;
- samples not visited keep ``E_i``; all margins are clamped to ``[eps_min, eps_max]``.

``eps_min`` (default 0, the published rule) is a floor: with ``eps_min`` at a fixed-budget baseline's eps,
every sample trains at least at that budget and only the samples that survive it grow beyond.

Under DDP :meth:`end_epoch` all-reduces the epoch's accumulators first, so every rank applies the same
update and holds the same margins afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import nn

from imaseg.utils.checks import check_non_negative, check_probability

__all__ = ["MarginBank"]


class MarginBank(nn.Module):
    """Per-sample margins with IMA's update rule.

    Args:
        sample_ids: the stable ids of the training samples, in index order.
        delta: initial margin and per-epoch increment (L2, model-input units).
        eps_max: upper clamp of the margins.
        eps_min: lower clamp of the margins (also their start when above ``delta``).
        survival_share: grow only samples more than this share of whose visits survived (0: any visit).
    """

    margins: torch.Tensor
    estimate: torch.Tensor
    visits: torch.Tensor
    survived: torch.Tensor
    epochs: torch.Tensor

    def __init__(
        self,
        sample_ids: Sequence[str],
        *,
        delta: float,
        eps_max: float,
        eps_min: float = 0.0,
        survival_share: float = 0.0,
    ) -> None:
        super().__init__()
        self.survival_share = check_probability("survival_share", survival_share)
        self.delta = check_non_negative("delta", delta)
        self.eps_max = check_non_negative("eps_max", eps_max)
        self.eps_min = check_non_negative("eps_min", eps_min)
        if self.delta > self.eps_max:
            raise ValueError(f"`delta` ({delta}) must not exceed `eps_max` ({eps_max})")
        if self.eps_min > self.eps_max:
            raise ValueError(f"`eps_min` ({eps_min}) must not exceed `eps_max` ({eps_max})")
        start = max(self.delta, self.eps_min)
        self.sample_ids = list(sample_ids)
        if len(set(self.sample_ids)) != len(self.sample_ids):
            raise ValueError("`sample_ids` must be unique")
        n = len(self.sample_ids)
        self.register_buffer("margins", torch.full((n,), start))
        self.register_buffer("estimate", torch.full((n,), start))
        self.register_buffer("visits", torch.zeros(n, dtype=torch.int64))
        self.register_buffer("survived", torch.zeros(n, dtype=torch.int64))
        self.register_buffer("epochs", torch.zeros((), dtype=torch.int64))

    def __len__(self) -> int:
        return len(self.sample_ids)

    def get_extra_state(self) -> dict:
        return {"sample_ids": self.sample_ids, "delta": self.delta, "eps_max": self.eps_max, "eps_min": self.eps_min}

    def set_extra_state(self, state: dict) -> None:
        if list(state["sample_ids"]) != self.sample_ids:
            raise ValueError(
                "the checkpoint's margins belong to other training samples (sample ids differ); "
                "resume with the same cache, fold and split"
            )

    def lookup(self, index: torch.Tensor) -> torch.Tensor:
        """Current margins of the samples at ``index``."""
        return self.margins[index.to(self.margins.device)]

    @torch.no_grad()
    def record(self, index: torch.Tensor, norm: torch.Tensor, survived: torch.Tensor) -> None:
        """Record one visit per sample: the adversarial norm found and whether the sample survived."""
        positions = index.tolist()  # the loader's (host) indices: no wait for the device
        norm = norm.to(self.estimate)
        survived = survived.to(self.survived.device)
        for position, i in enumerate(positions):  # a sample may appear twice in a batch; apply in order
            self.estimate[i] = (self.estimate[i] + norm[position]) / 2
            self.visits[i] += 1
            self.survived[i] += survived[position]

    @torch.no_grad()
    def end_epoch(self) -> dict[str, float]:
        """Apply the update rule (after a DDP all-reduce), reset the accumulators, return statistics."""
        visits, survived, estimate = self.visits.clone(), self.survived.clone(), self.estimate.clone()
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            contribution = torch.where(visits > 0, estimate, torch.zeros_like(estimate))
            ranks_visiting = (visits > 0).to(torch.int64)
            for tensor in (visits, survived, contribution, ranks_visiting):
                dist.all_reduce(tensor)
            estimate = torch.where(ranks_visiting > 0, contribution / ranks_visiting.clamp_min(1), self.margins)
        visited = visits > 0
        grow = visited & (survived > self.survival_share * visits)
        shrink = visited & ~grow
        margins = torch.where(grow, self.margins + self.delta, self.margins)
        margins = torch.where(shrink, estimate, margins).clamp(self.eps_min, self.eps_max)
        moved = _movement(self.margins, margins)
        self.margins.copy_(margins)
        self.estimate.copy_(margins)
        self.visits.zero_()
        self.survived.zero_()
        self.epochs += 1
        stats = self.statistics()
        stats["fail_fraction"] = float(shrink.sum()) / max(int(visited.sum()), 1)
        stats["visited_fraction"] = float(visited.float().mean()) if len(self) else 0.0
        stats.update(moved)
        return stats

    def statistics(self) -> dict[str, float]:
        """Mean, quartiles and the fraction of margins at ``eps_max``."""
        if not len(self):
            return {}
        m = self.margins.float()
        q = torch.quantile(m, torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9], device=m.device)).tolist()
        return {
            "margin_mean": float(m.mean()),
            "margin_q10": q[0],
            "margin_q25": q[1],
            "margin_median": q[2],
            "margin_q75": q[3],
            "margin_q90": q[4],
            "margin_at_max": float((m >= self.eps_max - 1e-6).float().mean()),
        }


def _movement(before: torch.Tensor, after: torch.Tensor) -> dict[str, float]:
    """Shares of margins that grew, shrank and changed at all in one update (issue 23's mechanism check:
    margins that never move make IMA a fixed-budget method).

    >>> _movement(torch.tensor([1.0, 1.0, 2.0, 2.0]), torch.tensor([1.25, 1.0, 1.5, 2.0]))
    {'margin_grown': 0.25, 'margin_shrunk': 0.25, 'margin_changed': 0.5}
    """
    if before.numel() == 0:
        return {}
    grown, shrunk = after > before + 1e-9, after < before - 1e-9
    return {
        "margin_grown": float(grown.float().mean()),
        "margin_shrunk": float(shrunk.float().mean()),
        "margin_changed": float((grown | shrunk).float().mean()),
    }
