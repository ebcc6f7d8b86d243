"""Mapping arrays from the preprocessed grid back to the source image's grid, through the two affines.

Every MONAI spatial transform in the preprocessing chain updates the MetaTensor affine, so the cached
affine maps preprocessed voxel indices to world mm exactly; composing it with the source affine gives
the index map from the source grid into the preprocessed one. Predictions are resampled with nearest
neighbour, perturbations linearly; outside the preprocessed field of view (padding, crops) is 0.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import map_coordinates

__all__ = ["to_source_grid"]


def _as_4x4(affine: np.ndarray) -> np.ndarray:
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape == (4, 4):
        return affine
    out = np.eye(4)  # a 2D (3 x 3) affine: x, y and translation
    out[:2, :2], out[:2, 3] = affine[:2, :2], affine[:2, 2]
    return out


def to_source_grid(
    volume: np.ndarray, affine: np.ndarray, source_affine: np.ndarray, source_shape, *, order: int, fill: float = 0
) -> np.ndarray:
    """Resample ``volume`` (spatial only, on the grid of ``affine``) onto the source grid.

    Args:
        volume: ``(*spatial)`` array on the preprocessed grid (2D or 3D).
        affine: preprocessed affine (4 x 4, or 3 x 3 for 2D).
        source_affine: the source image's true affine (4 x 4).
        source_shape: the source spatial shape.
        order: 0 (nearest, labels) or 1 (linear, intensities).
        fill: the value outside the preprocessed field of view.
    """
    source_shape = tuple(int(s) for s in source_shape)
    index_map = np.linalg.inv(_as_4x4(affine)) @ _as_4x4(source_affine)
    dims = len(source_shape)
    out = np.zeros(source_shape, dtype=volume.dtype if order == 0 else np.float32)
    vol = volume if volume.ndim == 3 else volume[..., None]
    grid = (
        np.stack(np.meshgrid(*[np.arange(s) for s in source_shape[:2]], indexing="ij"), 0)
        .reshape(2, -1)
        .astype(np.float64)
    )
    depth = source_shape[2] if dims == 3 else 1
    for k in range(depth):  # slice by slice keeps memory small for big CTs
        homogeneous = np.vstack([grid, np.full((1, grid.shape[1]), float(k)), np.ones((1, grid.shape[1]))])
        coords = (index_map @ homogeneous)[:3]
        if volume.ndim == 2:
            coords[2] = 0.0  # a 2D grid has no third axis: the source's z offset must not move it out of view
        # inside the field of view = within half a voxel of the grid's first / last voxel centre; the rim
        # beyond the outermost centres takes the edge value (map_coordinates' constant mode would zero it)
        extent = np.array(vol.shape, dtype=np.float64)[:, None] - 0.5
        inside = ((coords >= -0.5 - 1e-6) & (coords <= extent + 1e-6)).all(0)
        values = map_coordinates(vol, coords, order=order, mode="nearest", prefilter=False)
        values = np.where(inside, values, np.asarray(fill, dtype=values.dtype))
        if dims == 3:
            out[..., k] = values.reshape(source_shape[:2])
        else:
            out[...] = values.reshape(source_shape)
    return out
