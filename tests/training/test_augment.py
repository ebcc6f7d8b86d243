"""BatchAugment: seeded, label-safe, identity when every range is zero, same geometry for images and labels."""

from __future__ import annotations

import pytest
import torch

from imaseg.training.augment import BatchAugment

IDENTITY = {"rotate": 0.0, "scale": (1.0, 1.0), "flip": False, "intensity": 0.0}


def batch(dims: int = 2):
    """Four samples of three nested blocks (classes 1..3) with a smooth intensity ramp."""
    size = (24,) * dims
    labels = torch.zeros(4, 1, *size, dtype=torch.long)
    centre = tuple(slice(4, 20) for _ in range(dims))
    labels[(slice(None), 0, *centre)] = 1
    labels[(slice(None), 0, *(slice(7, 17) for _ in range(dims)))] = 2
    labels[(slice(None), 0, *(slice(10, 14) for _ in range(dims)))] = 3
    ramp = torch.linspace(0, 1, 24).view(24, *([1] * (dims - 1)))
    images = 0.2 * labels.float() + 0.1 * ramp + 0.05 * torch.arange(4).view(4, 1, *([1] * dims))
    return images, labels


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("dims", [2, 3], ids=["2d", "3d"])
def test_zero_ranges_are_the_identity(dims):
    images, labels = batch(dims)
    out_images, out_labels = BatchAugment(**IDENTITY)(images.clone(), labels.clone(), gen(0))
    assert torch.allclose(out_images, images, atol=1e-5)
    assert torch.equal(out_labels, labels)


@pytest.mark.parametrize("dims", [2, 3], ids=["2d", "3d"])
def test_same_seed_same_augmentation_other_seed_differs(dims):
    images, labels = batch(dims)
    augment = BatchAugment(rotate=20, scale=(0.85, 1.2), flip=True, intensity=0.15, noise=0.01)
    a = augment(images.clone(), labels.clone(), gen(5))
    b = augment(images.clone(), labels.clone(), gen(5))
    c = augment(images.clone(), labels.clone(), gen(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_labels_stay_integer_classes_with_the_same_set(seed):
    images, labels = batch()
    out_images, out_labels = BatchAugment(rotate=20, scale=(0.85, 1.2), flip=True, intensity=0.15)(
        images.clone(), labels.clone(), gen(seed)
    )
    assert out_labels.dtype == torch.long and out_labels.shape == labels.shape
    assert out_images.shape == images.shape and out_images.dtype == images.dtype
    for sample in range(4):
        assert out_labels[sample].unique().tolist() == [0, 1, 2, 3]
    assert not torch.equal(out_labels, labels), "the geometry did change"


def test_flips_move_images_and_labels_together():
    images, labels = batch()
    images = images + torch.linspace(0, 0.5, 24).view(1, 1, 1, 24)  # break the symmetry along both axes
    labels[:, 0, 0, :3] = 1  # an asymmetric label mark
    out_images, out_labels = BatchAugment(**{**IDENTITY, "flip": True})(images.clone(), labels.clone(), gen(3))
    seen = set()
    for sample in range(4):
        matches = [
            axes
            for axes in [(), (2,), (3,), (2, 3)]
            if torch.allclose(
                out_images[sample : sample + 1],
                images[sample : sample + 1].flip(axes) if axes else images[sample : sample + 1],
                atol=1e-5,
            )
        ]
        assert len(matches) == 1, "each image is one of the four flips"
        axes = matches[0]
        expected = labels[sample : sample + 1].flip(axes) if axes else labels[sample : sample + 1]
        assert torch.equal(out_labels[sample : sample + 1], expected), "the label gets the image's flip"
        seen.add(axes)
    assert len(seen) > 1, "different samples get different flips"


def test_intensity_changes_only_images_and_stay_in_each_samples_range():
    images, labels = batch()
    out_images, out_labels = BatchAugment(**{**IDENTITY, "intensity": 0.3})(images.clone(), labels.clone(), gen(1))
    assert torch.equal(out_labels, labels)
    assert not torch.allclose(out_images, images)
    lo, hi = images.flatten(1).amin(1), images.flatten(1).amax(1)
    assert (out_images.flatten(1).amin(1) >= lo - 1e-6).all() and (out_images.flatten(1).amax(1) <= hi + 1e-6).all()


def test_the_callers_tensors_are_not_modified():
    images, labels = batch()
    before = images.clone(), labels.clone()
    BatchAugment(rotate=20, flip=True, intensity=0.2, noise=0.1)(images, labels, gen(0))
    assert torch.equal(images, before[0]) and torch.equal(labels, before[1])
