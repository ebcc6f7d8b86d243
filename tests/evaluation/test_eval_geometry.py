"""``to_source_grid`` on hand-made grids: where each source voxel's value comes from."""

from __future__ import annotations

import numpy as np
import pytest

from imaseg.evaluation import to_source_grid


def _volume(shape=(4, 4, 2)) -> np.ndarray:
    return np.arange(1, int(np.prod(shape)) + 1, dtype=np.uint8).reshape(shape)


def _affine(spacing, origin=(0.0, 0.0, 0.0)) -> np.ndarray:
    affine = np.diag([*map(float, spacing), 1.0])
    affine[:3, 3] = origin
    return affine


def _flip_x(n: int) -> np.ndarray:
    affine = np.diag([-1.0, 1.0, 1.0, 1.0])
    affine[0, 3] = n - 1  # index i sits at world x = n - 1 - i
    return affine


def _swap_xy() -> np.ndarray:
    return np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=float)


GRID_CASES = [
    # (preprocessed volume, its affine, source affine, source shape, expected source array)
    pytest.param(
        _volume(),
        _affine((1.5, 1.5, 3), (2, -1, 4)),
        _affine((1.5, 1.5, 3), (2, -1, 4)),
        (4, 4, 2),
        _volume(),
        id="identity",
    ),
    pytest.param(
        _volume((8, 8, 2)),
        _affine((0.5, 0.5, 1)),
        np.eye(4),
        (4, 4, 2),
        _volume((8, 8, 2))[::2, ::2],
        id="finer-grid-2x",
    ),
    pytest.param(
        _volume(),
        _affine((2, 2, 1), (0.5, 0.5, 0)),  # voxel i covers source voxels 2i and 2i + 1
        np.eye(4),
        (8, 8, 2),
        np.repeat(np.repeat(_volume(), 2, 0), 2, 1),
        id="coarser-grid-2x",
    ),
    pytest.param(_volume(), _flip_x(4), np.eye(4), (4, 4, 2), _volume()[::-1], id="flipped-x"),
    pytest.param(_volume(), _swap_xy(), np.eye(4), (4, 4, 2), _volume().transpose(1, 0, 2), id="swapped-axes"),
    pytest.param(
        _volume(),
        _affine((1, 1, 1), (2, 0, 0)),  # the preprocessed grid covers source x = 2..5 only (a crop)
        np.eye(4),
        (8, 4, 2),
        np.concatenate([np.zeros((2, 4, 2), np.uint8), _volume(), np.zeros((2, 4, 2), np.uint8)]),
        id="crop-outside-is-zero",
    ),
    pytest.param(
        _volume((4, 4)),
        np.eye(3),
        _affine((1, 1, 1), (0, 0, 3.0)),
        (4, 4),
        _volume((4, 4)),
        id="2d-source-with-z-offset",
    ),
    pytest.param(
        _volume((8, 6)),
        np.diag([0.5, 0.5, 1.0]),
        np.eye(4),
        (4, 3),
        _volume((8, 6))[::2, ::2],
        id="2d-finer-grid-2x",
    ),
]


@pytest.mark.parametrize("volume,affine,source_affine,shape,expected", GRID_CASES)
def test_nearest_mapping_puts_values_in_the_right_voxels(volume, affine, source_affine, shape, expected):
    out = to_source_grid(volume, affine, source_affine, shape, order=0)
    assert out.shape == tuple(shape) and out.dtype == volume.dtype
    np.testing.assert_array_equal(out, expected)


def test_linear_mapping_interpolates_between_coarse_voxels():
    values = np.array([1.0, 3.0, 4.0, 8.0], dtype=np.float32)
    volume = np.broadcast_to(values[:, None, None], (4, 4, 2)).copy()  # varies along x only
    out = to_source_grid(volume, _affine((2, 2, 1), (0.5, 0.5, 0)), np.eye(4), (8, 8, 2), order=1)
    assert out.dtype == np.float32
    # source x = 2i + 1 sits a quarter of the way from coarse voxel i to i + 1, x = 2i + 2 three quarters
    expected = [1.0, 1.5, 2.5, 3.25, 3.75, 5.0, 7.0, 8.0]
    # the rim beyond the outermost voxel centres (x = 0 and 7) is inside the grid: edge values, not zero
    np.testing.assert_allclose(out, np.broadcast_to(np.array(expected)[:, None, None], (8, 8, 2)), rtol=1e-6)


def test_linear_mapping_is_exact_on_coinciding_grids():
    volume = np.random.default_rng(0).normal(size=(5, 4, 3)).astype(np.float32)
    affine = _affine((1.2, 0.8, 5), (-3, 2, 1))
    out = to_source_grid(volume, affine, affine, (5, 4, 3), order=1)
    np.testing.assert_allclose(out, volume, rtol=1e-6, atol=1e-6)
