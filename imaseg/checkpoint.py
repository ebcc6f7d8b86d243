"""Checkpoints: written atomically, loaded safely (``torch.load(weights_only=True)``).

A checkpoint holds tensors and plain containers only: network weights, optimiser and scheduler
states, the method's state (IMA's margin buffers and their sample ids), the epoch, the RNG states and
the resolved config as a dict. A file holding anything else (arbitrary pickled objects) is refused.
"""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path
from typing import cast

import numpy as np
import torch

from imaseg.utils.atomic import atomic_path

__all__ = ["load_checkpoint", "rng_state", "save_checkpoint", "set_rng_state"]


def rng_state() -> dict:
    """RNG states of Python, NumPy and torch as tensors / plain values (safe to load)."""
    kind, keys, pos, has_gauss, cached = cast("tuple[str, np.ndarray, int, int, float]", np.random.get_state())
    state = {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | os.PathLike[str], payload: dict) -> Path:
    """Write ``payload`` to ``path`` atomically (a killed write leaves the previous file intact)."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a checkpoint, is truncated, or carries arbitrary pickled objects.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"{path}: refusing to load: the checkpoint carries objects other than tensors and plain containers "
            f"(torch.load(weights_only=True) said: {str(error).splitlines()[0]}). Only load checkpoints you trust, "
            "re-saved as plain state dicts."
        ) from error
    except (RuntimeError, EOFError, OSError) as error:
        raise ValueError(f"{path}: not a readable checkpoint (truncated or corrupt?): {error}") from error
    if not isinstance(payload, dict) or "network" not in payload:
        raise ValueError(f"{path}: not an imaseg checkpoint (no 'network' weights)")
    return payload
