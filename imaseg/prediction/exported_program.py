"""``models/model.pt2`` of an exported bundle: the network as a ``torch.export`` program with a dynamic batch.

``torch.export.load("models/model.pt2").module()`` runs it without the network's Python class (no MONAI, no
imaseg), on any batch size of the trained input shape; ``model.ts`` (TorchScript) is the older format of the
same thing. Best effort: a network that does not export leaves a warning and no file.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from imaseg.utils.atomic import atomic_path

__all__ = ["write_exported_program"]

logger = logging.getLogger(__name__)


def write_exported_program(network: nn.Module, input_shape: tuple[int, ...], path: Path) -> bool:
    """Export ``network`` (eval mode, on the CPU) for inputs ``(B, *input_shape)`` with any ``B``; returns
    whether ``path`` was written."""
    example = torch.zeros(2, *input_shape)  # a batch of 2: torch.export specialises a size-1 dimension
    batch = torch.export.Dim("batch", min=1, max=4096)
    was_training = network.training
    try:
        network.eval()
        with torch.no_grad():
            program = torch.export.export(network.cpu(), (example,), dynamic_shapes=({0: batch},))
        with atomic_path(path) as tmp:
            torch.export.save(program, tmp)
    except Exception as error:  # noqa: BLE001 - exporting is best effort: model.pt holds the weights
        logger.warning("no models/model.pt2: the network does not export (%s)", str(error).splitlines()[0])
        return False
    finally:
        network.train(was_training)
    return True
