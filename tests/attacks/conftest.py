"""A tiny segmenter trained in seconds on synthetic discs, shared by the attack tests."""

from __future__ import annotations

import pytest
import torch

from imaseg.networks import build_network


def disc_batch(n: int, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images of a bright disc (class 1) with a brighter core (class 2) on noise; labels to match."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    images, labels = [], []
    for _ in range(n):
        cy, cx = (torch.rand(2, generator=g) * size * 0.4 + size * 0.3).tolist()
        r = float(torch.rand(1, generator=g) * size * 0.12 + size * 0.15)
        d = ((yy - cy) ** 2 + (xx - cx) ** 2).float().sqrt()
        label = (d < r).long() + (d < r * 0.5).long()
        image = 0.2 + 0.3 * (label >= 1) + 0.3 * (label == 2) + 0.05 * torch.randn(size, size, generator=g)
        images.append(image[None])
        labels.append(label)
    return torch.stack(images).float(), torch.stack(labels)


@pytest.fixture(scope="session")
def trained_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_network("unet", 2, 1, 3, channels=(8, 16, 32), num_res_units=1)
    images, labels = disc_batch(64, seed=1)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(60):
        index = torch.arange(step * 16, step * 16 + 16) % 64
        loss = torch.nn.functional.cross_entropy(model(images[index]), labels[index])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    return model


@pytest.fixture(scope="session")
def test_batch() -> tuple[torch.Tensor, torch.Tensor]:
    return disc_batch(8, seed=99)
