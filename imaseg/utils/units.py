"""Budget units that need no torch (the report reads them too)."""

from __future__ import annotations

import math

__all__ = ["budget_psnr"]


def budget_psnr(eps_rms: float, value_range: float | None) -> float:
    """The PSNR (dB) of a perturbation whose per-voxel RMS is ``eps_rms``, for inputs spanning ``value_range``
    (the clip range's width): ``20 log10(range / rms)``. NaN without a range or for a zero budget. A budget
    is an upper bound on the perturbation, so this is a lower bound on the attacked image's PSNR.

    >>> round(budget_psnr(0.01, 1.0), 1), budget_psnr(0.0, 1.0) != budget_psnr(0.0, 1.0)
    (40.0, True)
    """
    if not value_range or eps_rms <= 0:
        return float("nan")
    return 20.0 * math.log10(value_range / eps_rms)
