"""The cache of nnU-Net-preprocessed cases: grids mapped back to the source, nnU-Net's properties kept as JSON."""

from __future__ import annotations

import numpy as np

from imaseg.nnunet.cache import grid_affines
from imaseg.nnunet.preprocessing import properties_from_json, properties_to_json

SITK = {"spacing": (0.5, 0.7, 3.0), "origin": (10.0, -20.0, 5.0), "direction": (1, 0, 0, 0, 1, 0, 0, 0, 1)}


def _properties(cropped=(2, 8, 5)) -> dict:
    return {
        "sitk_stuff": SITK,
        "spacing": [3.0, 0.7, 0.5],  # nnU-Net's array order (z, y, x)
        "shape_before_cropping": (4, 12, 5),
        "bbox_used_for_cropping": [[1, 3], [2, 10], [0, 5]],
        "shape_after_cropping_and_before_resampling": cropped,
    }


def _world(affine: np.ndarray, index) -> np.ndarray:
    return (affine @ np.array([*index, 1.0]))[:3]


def test_a_preprocessed_voxel_maps_to_its_source_voxel():
    affine, source, source_shape = grid_affines(_properties(), [0, 1, 2], (2, 8, 5))
    assert source_shape == (5, 12, 4)  # SimpleITK / NIfTI index order (x, y, z)
    # preprocessed (z, y, x) = (0, 0, 0) is array (1, 2, 0) of the source: SimpleITK index (0, 2, 1)
    lps = np.array(SITK["origin"]) + np.array([0 * 0.5, 2 * 0.7, 1 * 3.0])
    np.testing.assert_allclose(_world(affine, (0, 0, 0)), lps * [-1, -1, 1])
    np.testing.assert_allclose(_world(source, (0, 2, 1)), lps * [-1, -1, 1])
    np.testing.assert_allclose(np.linalg.norm(affine[:3, :3], axis=0), [3.0, 0.7, 0.5])  # spacing per stored axis


def test_resampling_and_transpose_scale_the_grid():
    affine, _, _ = grid_affines(_properties(), [0, 1, 2], (2, 16, 5))  # y resampled 8 -> 16 voxels
    np.testing.assert_allclose(np.linalg.norm(affine[:3, :3], axis=0), [3.0, 0.35, 0.5])
    # centre to centre: preprocessed y = 0 is cropped y = -0.25, i.e. source y = 1.75
    np.testing.assert_allclose(_world(affine, (0, 0, 0))[1], -(-20.0 + 1.75 * 0.7))
    # transpose_forward (2, 0, 1): nnU-Net's shapes and crop box are in the transposed order (x, z, y)
    properties = {
        **_properties((5, 2, 8)),
        "shape_before_cropping": (5, 4, 12),
        "bbox_used_for_cropping": [[0, 5], [1, 3], [2, 10]],
    }
    transposed, _, shape = grid_affines(properties, [2, 0, 1], (5, 2, 8))
    assert shape == (5, 12, 4)
    np.testing.assert_allclose(np.linalg.norm(transposed[:3, :3], axis=0), [0.5, 3.0, 0.7])
    np.testing.assert_allclose(_world(transposed, (0, 0, 0)), _world(affine, (0, 0, 0)) + [0, -0.25 * 0.7, 0])


def test_properties_survive_json_arrays_included():
    properties = {
        **_properties(),
        "nibabel_stuff": {"original_affine": np.eye(4)},
        "class_locations": {1: np.zeros((3, 4))},
    }
    back = properties_from_json(properties_to_json(properties))
    assert "class_locations" not in back  # sampling locations of training: not kept
    assert isinstance(back["nibabel_stuff"]["original_affine"], np.ndarray)
    np.testing.assert_array_equal(back["nibabel_stuff"]["original_affine"], np.eye(4))
    assert back["bbox_used_for_cropping"] == [[1, 3], [2, 10], [0, 5]] and back["sitk_stuff"]["spacing"] == [
        0.5,
        0.7,
        3.0,
    ]
