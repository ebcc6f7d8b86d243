"""Checkpoints: written atomically, loaded safely (``torch.load(weights_only=True)``).

A checkpoint holds tensors and plain containers only: network weights, optimiser and scheduler
states, the method's state (IMA's margin buffers and their sample ids), the epoch, the RNG states and
the resolved config as a dict. A file holding anything else (arbitrary pickled objects) is refused.
"""

from __future__ import annotations

import os
import pickle
import random
import re
import struct
from pathlib import Path
from typing import cast

import numpy as np
import torch

from imaseg.utils.atomic import atomic_path

__all__ = ["load_checkpoint", "load_weights", "rng_state", "save_checkpoint", "set_rng_state"]


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
    """Write ``payload`` to ``path`` atomically (a killed write leaves the previous file intact); a full disk is
    named as such (written through a Python file, torch passes the OS error on instead of its own)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(payload, handle)
    return Path(path)


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a checkpoint, is truncated, or carries arbitrary pickled objects (the
            message never suggests ``weights_only=False``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's message suggests retrying with weights_only=False: that is the unsafe path, so only the
        # offending type is quoted (the line that names it), never the hint
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
        culprit = f"a pickled {found.group(1)}" if found else ""
        raise ValueError(
            f"{path}: refusing to load: the checkpoint carries objects other than tensors and plain containers"
            f"{' (' + culprit + ')' if culprit else ''}, which can run code when loaded; re-save the weights as a "
            "plain state dict from a trusted copy"
        ) from None
    except (RuntimeError, EOFError, OSError, KeyError, ValueError, IndexError, TypeError, struct.error) as error:
        kind = f"{type(error).__name__}: {str(error).splitlines()[0][:120] if str(error) else ''}"
        raise ValueError(
            f"{path}: not a readable PyTorch checkpoint (truncated, corrupt, or another kind of file; {kind}); "
            "pass a checkpoints/last.pt or best.pt written by `imaseg train`"
        ) from None
    if not isinstance(payload, dict) or "network" not in payload:
        raise ValueError(f"{path}: not an imaseg checkpoint (no 'network' weights)")
    return payload


def load_weights(network: torch.nn.Module, weights: dict, source: str | os.PathLike[str]) -> None:
    """``network.load_state_dict(weights)`` with an error that lists the tensors that do not fit.

    Raises:
        ValueError: missing or unexpected tensors, or shapes that differ, each named (first 8 of each kind).
    """
    own = network.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    shapes = [
        f"{k}: checkpoint {tuple(weights[k].shape)} vs network {tuple(own[k].shape)}"
        for k in own
        if k in weights and hasattr(weights[k], "shape") and tuple(weights[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        for title, items in (
            ("shapes differ", shapes),
            ("missing in the checkpoint", missing),
            ("not in the network", unexpected),
        ):
            if items:
                more = f" and {len(items) - 8} more" if len(items) > 8 else ""
                parts.append(f"{title} ({len(items)}): {'; '.join(items[:8])}{more}")
        raise ValueError(
            f"{source}: the weights do not fit this network ({'. '.join(parts)}); build the network with the "
            "settings the checkpoint was trained with (network, channels, res_units, classes and channels of the data)"
        )
    network.load_state_dict(weights)
