"""FitToSize: output shapes per mode, aspect ratio, the kept axis, and an affine that still maps voxels to mm."""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor

from imaseg.transforms.spatial import FitToSize, FitToSized


def ones(*spatial: int, affine=None) -> MetaTensor:
    return MetaTensor(torch.ones(1, *spatial), affine=affine)


def content_extent(image: torch.Tensor, axis: int) -> tuple[int, int]:
    """First and last index along spatial ``axis`` holding non-zero voxels."""
    reduce = [d for d in range(image.ndim) if d != axis + 1]
    hits = torch.nonzero(image.abs().amax(dim=reduce) > 0.5).flatten()
    return int(hits[0]), int(hits[-1])


def test_pad_resize_keeps_the_aspect_ratio():
    out = FitToSize([16, 16], "pad-resize")(ones(40, 20))
    assert out.shape == (1, 16, 16)
    assert content_extent(out, 0) == (0, 15)  # 40 -> 16
    assert content_extent(out, 1) == (4, 11)  # 20 -> 8, padded by 4 on each side


@pytest.mark.parametrize(
    ("mode", "spatial", "size", "keep_axis", "expected"),
    [
        ("pad-resize", (40, 20), (16, 16), None, (16, 16)),
        ("pad-resize", (10, 12), (24, 24), None, (24, 24)),
        ("resize", (40, 20), (16, 16), None, (16, 16)),
        ("pad-crop", (40, 10), (16, 16), None, (16, 16)),
        ("none", (40, 10), (16, 16), None, (40, 10)),
        ("pad-resize", (40, 20, 5), (16, 16), 2, (16, 16, 5)),
        ("resize", (40, 20, 5), (16, 16), 2, (16, 16, 5)),
        ("pad-crop", (40, 20, 5), (16, 16), 2, (16, 16, 5)),
        ("pad-resize", (5, 40, 20), (16, 16), 0, (5, 16, 16)),
        ("pad-resize", (24, 20, 6), (16, 16, 8), None, (16, 16, 8)),
    ],
    ids=[
        "pad-resize-2d",
        "pad-resize-upscale",
        "resize-2d",
        "pad-crop-2d",
        "none",
        "pad-resize-keep-z",
        "resize-keep-z",
        "pad-crop-keep-z",
        "pad-resize-keep-x",
        "pad-resize-3d",
    ],
)
def test_output_shapes(mode, spatial, size, keep_axis, expected):
    assert tuple(FitToSize(size, mode, keep_axis)(ones(*spatial)).shape[1:]) == expected


def test_upscaling_pad_resize_scales_by_the_limiting_axis():
    out = FitToSize([24, 24])(ones(10, 12))
    assert content_extent(out, 1) == (0, 23)  # 12 -> 24, factor 2
    assert content_extent(out, 0) == (2, 21)  # 10 -> 20, padded by 2


def test_resize_stretches():
    out = FitToSize([16, 16], "resize")(ones(40, 20))
    # the interior stays 1 (MONAI's anti-aliasing blur zero-pads, which dims the outermost voxels slightly)
    torch.testing.assert_close(out[0, 1:-1, 1:-1].as_tensor(), torch.ones(14, 14), rtol=0, atol=1e-4)
    assert content_extent(out, 0) == (0, 15) and content_extent(out, 1) == (0, 15)


def test_pad_crop_does_not_scale():
    image = torch.zeros(1, 40, 10)
    image[0, :, :] = torch.arange(40.0)[:, None]
    out = FitToSize([16, 16], "pad-crop")(MetaTensor(image))
    assert out[0, :, 3].tolist() == list(range(12, 28))  # centre crop of 40 -> 16
    assert content_extent(out, 1) == (3, 12)  # 10 padded to 16


def test_kept_axis_is_untouched_slice_by_slice():
    image = torch.zeros(1, 8, 8, 3)
    for z in range(3):
        image[0, 2:6, 2:6, z] = z + 1
    out = FitToSize([16, 16], "pad-crop", keep_axis=2)(MetaTensor(image))
    assert [float(out[0, ..., z].max()) for z in range(3)] == [1.0, 2.0, 3.0]


def test_label_uses_nearest_neighbour():
    label = torch.zeros(1, 40, 20)
    label[0, 10:30, 5:15] = 3
    out = FitToSize([16, 16], label=True)(MetaTensor(label))
    assert set(out.unique().tolist()) == {0.0, 3.0}


def test_pad_resize_affine_maps_the_image_centre_to_the_same_world_point():
    affine = torch.tensor([[2.0, 0, 10], [0, 3, -5], [0, 0, 1]], dtype=torch.float64)
    out = FitToSize([16, 16])(ones(40, 20, affine=affine))
    centre_in = affine @ torch.tensor([19.5, 9.5, 1.0], dtype=torch.float64)
    centre_out = out.affine.double() @ torch.tensor([7.5, 7.5, 1.0], dtype=torch.float64)
    torch.testing.assert_close(centre_out, centre_in)
    # 40 voxels -> 16: every voxel is 2.5 times larger on both axes (aspect kept)
    torch.testing.assert_close(out.affine.double().diagonal()[:2], torch.tensor([5.0, 7.5], dtype=torch.float64))


def test_pad_resize_affine_maps_content_corners_to_the_source_corners():
    affine = torch.tensor([[2.0, 0, 10], [0, 3, -5], [0, 0, 1]], dtype=torch.float64)
    out = FitToSize([16, 16])(ones(40, 20, affine=affine)).affine.double()
    # outer edge of the first content voxel (index -0.5 in the source) sits at the same world point
    first_in = affine @ torch.tensor([-0.5, -0.5, 1.0], dtype=torch.float64)
    first_out = out @ torch.tensor([-0.5, 4 - 0.5, 1.0], dtype=torch.float64)
    torch.testing.assert_close(first_out, first_in)


def test_keep_axis_leaves_its_affine_column():
    affine = torch.diag(torch.tensor([1.5, 1.5, 10.0, 1.0], dtype=torch.float64))
    out = FitToSize([12, 12], keep_axis=2)(ones(24, 24, 4, affine=affine))
    torch.testing.assert_close(out.affine.double()[:3, 2], torch.tensor([0.0, 0.0, 10.0], dtype=torch.float64))
    torch.testing.assert_close(out.affine.double()[0, 0], torch.tensor(3.0, dtype=torch.float64))


def test_dictionary_version_interpolates_images_smoothly_and_labels_with_nearest():
    label = torch.zeros(1, 40, 20)
    label[0, 12:28, 4:16] = 2
    data = {"image": MetaTensor(label / 2), "label": MetaTensor(label)}
    out = FitToSized(["image", "label"], [16, 16])(data)
    assert out["image"].shape == out["label"].shape == (1, 16, 16)
    assert set(out["label"].unique().tolist()) == {0.0, 2.0}
    image_values = out["image"].unique()
    assert ((image_values > 0.05) & (image_values < 0.95)).any()  # bilinear: edges between 0 and 1


@pytest.mark.parametrize(
    ("args", "match", "spatial"),
    [
        (([16, 16], "stretch"), r"unknown `resize` 'stretch'; choose one of pad-resize, resize, pad-crop, none", None),
        (([16, 0],), r"`spatial_size` entries must be >= 1, got \[16, 0\]", None),
        (([16, 16, 16],), r"`spatial_size` has 3 entries but the image has 2 axes to fit", (40, 20)),
        (([16, 16], "pad-resize", 2), r"`spatial_size` has 2 entries but the image has 3 axes to fit", (8, 8, 8, 8)),
    ],
    ids=["unknown-mode", "zero-size", "too-many-entries", "too-few-entries"],
)
def test_invalid_arguments_raise(args, match, spatial):
    with pytest.raises(ValueError, match=match):
        fit = FitToSize(*args)
        fit(ones(*spatial))
