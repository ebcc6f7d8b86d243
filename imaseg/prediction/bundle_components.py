"""What a bundle written by ``imaseg export`` instantiates besides MONAI's own components.

``configs/inference.json`` names these by ``_target_`` so that it needs no ``$`` expression: a bundle
root-relative path (:func:`bundle_file`), the network on the chosen device (:func:`on_device`), and
:class:`SourceGridd`, the post-processing step that maps a prediction from the preprocessed grid back onto
each input's own grid, with the data set's label values, exactly as ``imaseg predict`` does
(:func:`imaseg.evaluation.geometry.to_source_grid`), for MONAI's ``SaveImaged`` to write.

The preprocessing chain is not invertible as a whole (its fit-to-size step is imaseg's), so MONAI's
``Invertd`` cannot undo it; the affines recorded by every step map the prediction back instead.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform
from torch import nn

from imaseg.cache.manifest import label_values
from imaseg.evaluation.geometry import to_source_grid

__all__ = ["SourceGridd", "bundle_file", "on_device"]


def bundle_file(root: str | os.PathLike[str], path: str) -> str:
    """``root/path`` as a string (``"$@bundle_root + '/models/model.pt'"`` without an expression).

    >>> bundle_file(".", "models/model.pt")
    'models/model.pt'
    """
    return str(Path(root) / path)


def on_device(network: nn.Module, device: torch.device | str) -> nn.Module:
    """The network moved to ``device`` (``"$@network_def.to(@device)"`` without an expression)."""
    return network.to(device)


class SourceGridd(MapTransform):
    """Class predictions on the preprocessed grid -> label maps on the source grid of ``ref_key``'s image.

    Each key holds ``(1, *spatial)`` class indices (after ``AsDiscreted(argmax=True)``) on the grid of the
    preprocessed image ``data[ref_key]``, whose meta data keep the source image's affine and shape (imaseg's
    loader records them). The result is a ``MetaTensor`` ``(1, *source_shape)`` with the data set's label
    values, the source affine, and the case id (``data[case_key]``) as its file name, so that MONAI's
    ``SaveImaged(output_postfix="", separate_folder=False)`` writes ``CASE.nii.gz`` as ``imaseg predict`` does.
    Voxels outside the model's field of view are background.

    Args:
        keys: the prediction keys.
        class_values: label value of each class index (the run's ``class_values``); empty keeps indices.
        ref_key: the preprocessed image whose meta data carry the geometry.
        case_key: the case id of each data dict (``find_images`` gives ``"case"``); missing: the file name.
    """

    def __init__(
        self,
        keys: KeysCollection,
        class_values: Sequence[int] = (),
        ref_key: str = "image",
        case_key: str = "case",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.class_values = [int(v) for v in class_values]
        self.ref_key = ref_key
        self.case_key = case_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        reference = d[self.ref_key]
        if not isinstance(reference, MetaTensor) or "source_affine" not in reference.meta:
            raise ValueError(
                f"`{self.ref_key}` must be a MetaTensor loaded by imaseg (with source_affine and source_shape in its "
                f"meta data), got {type(reference).__name__}"
            )
        meta = reference.meta
        affine = np.asarray(torch.as_tensor(reference.affine), dtype=np.float64)
        source_affine = np.asarray(torch.as_tensor(meta["source_affine"]), dtype=np.float64)
        source_shape = [int(s) for s in np.asarray(torch.as_tensor(meta["source_shape"])).reshape(-1)]
        name = str(d.get(self.case_key) or meta.get("filename_or_obj", "case"))
        for key in self.key_iterator(d):
            classes = np.asarray(torch.as_tensor(d[key]).detach().cpu())
            if classes.ndim != affine.shape[0]:  # (1, *spatial): one channel, a spatial axis per affine row but one
                raise ValueError(f"`{key}` must be (1, *spatial) class indices, got shape {tuple(classes.shape)}")
            on_source = to_source_grid(classes[0].astype(np.uint8), affine, source_affine, source_shape, order=0)
            values = label_values(on_source, self.class_values) if self.class_values else on_source
            d[key] = MetaTensor(
                torch.from_numpy(np.ascontiguousarray(values)[None].astype(np.int32)),
                affine=torch.as_tensor(source_affine),
                # "no_channel": what MONAI's loader records for a label map; its writer needs it for 2D images
                meta={"filename_or_obj": name, "original_channel_dim": "no_channel", "spatial_shape": source_shape},
            )
        return d
