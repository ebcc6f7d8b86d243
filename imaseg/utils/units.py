"""Budget units that need no torch (the report reads them too)."""

from __future__ import annotations

import math

__all__ = ["PHYSICAL_UNITS", "budget_psnr", "nsr_of_snr", "snr_db"]

PHYSICAL_UNITS: dict[str, str] = {
    "rel": "max relative intensity change",
    "nsr": "noise-to-signal ratio, SNR = -20 log10(eps) dB",
    "asr": "artefact-to-image energy ratio (RMS over RMS), the artefact -20 log10(eps) dB below the image",
    "mm": "max displacement of any voxel in mm",
    "hu": "max change of any voxel's CT number in HU",
}
"""What the budget of a physical attack kind measures (by the unit its names end in), for axes and reports."""


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


def snr_db(nsr: float) -> float:
    """The SNR in dB of a noise-to-signal ratio (RMS over RMS); ``inf`` for 0.

    >>> snr_db(0.1), snr_db(0.0)
    (20.0, inf)
    """
    return math.inf if nsr <= 0 else -20.0 * math.log10(nsr)


def nsr_of_snr(db: float) -> float:
    """The noise-to-signal ratio (the budget ``eps`` of ``snr-noise-nsr``) of an SNR in dB.

    >>> round(nsr_of_snr(20.0), 6)
    0.1
    """
    return 10.0 ** (-float(db) / 20.0)
