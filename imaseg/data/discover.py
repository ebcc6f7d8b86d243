"""Find image / label pairs in a NIfTI folder, whatever its layout, as a MONAI-style datalist.

Layouts recognised (checked in this order):

- **MSD**: ``dataset.json`` with a ``training`` list of ``{"image", "label"}`` paths and ``labels`` as
  ``{"0": "background", "1": ...}``.
- **nnU-Net v2**: ``dataset.json`` with ``channel_names``, ``labels`` as ``{"background": 0, ...}`` and
  ``file_ending``; images ``imagesTr/CASE_0000.nii.gz`` (``_0001``... for more channels), labels
  ``labelsTr/CASE.nii.gz``.
- **plain pairs**: ``imagesTr/`` + ``labelsTr/`` or ``images/`` + ``labels/``, matched by file name, no json.

Every entry is ``{"image": path or [paths per channel], "label": path, "case": case_id}``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from imaseg.data.containment import listed_path, refuse_outside_links
from imaseg.data.errors import DataError
from imaseg.data.images import is_image, strip_image_suffix

__all__ = ["DatasetInfo", "discover", "discover_with_info"]

logger = logging.getLogger(__name__)

_FOLDER_PAIRS = (("imagesTr", "labelsTr"), ("images", "labels"))
_CHANNEL_SUFFIX = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


@dataclass
class DatasetInfo:
    """What a folder declares about itself (from ``dataset.json`` where there is one)."""

    root: str
    layout: str  # "msd" | "nnunet" | "plain"
    labels: dict[int, str] = field(default_factory=dict)  # empty when undeclared
    channels: dict[int, str] = field(default_factory=lambda: {0: "image"})
    name: str = ""
    tensor_size: str | None = None  # "2D" / "3D" where the json says

    @property
    def modality(self) -> str:
        """The first channel's declared modality, e.g. ``"MRI"``, ``"CT"`` or ``"X-ray"``."""
        return self.channels.get(0, "")


def discover(root: str | os.PathLike[str], *, allow_outside_paths: bool = False) -> list[dict]:
    """Return the datalist of ``root``; see :func:`discover_with_info`."""
    return discover_with_info(root, allow_outside_paths=allow_outside_paths)[0]


def discover_with_info(
    root: str | os.PathLike[str], *, allow_outside_paths: bool = False
) -> tuple[list[dict], DatasetInfo]:
    """Return ``(datalist, info)`` for the NIfTI folder ``root``, sorted by case id.

    Args:
        root: the data folder.
        allow_outside_paths: accept files that resolve outside ``root``: dataset.json entries (``../..`` or
            absolute paths) and symbolic links (of files or of ``imagesTr/`` itself), in every layout; refused
            by default, since they would pull any readable file into the outputs.

    Raises:
        DataError: missing, unreadable or empty folder, images without labels or labels without images (all
            listed), duplicate case ids, files among the images or labels that are not NIfTI, NRRD or MetaImage, broken links,
            malformed dataset.json, entries or links outside the folder.
    """
    root = Path(root)
    try:
        return _discover(root, allow_outside_paths)
    except PermissionError as error:
        where = error.filename or root
        raise DataError(
            f"{where}: permission denied while reading the data set; give your user read access to it "
            f"(e.g. chmod -R u+rX {root})",
            [where],
        ) from None


def _discover(root: Path, allow_outside_paths: bool) -> tuple[list[dict], DatasetInfo]:
    if not root.is_dir():
        raise DataError(f"{root}: data folder does not exist", [root])
    meta_path = root / "dataset.json"
    meta = _read_json(meta_path) if meta_path.is_file() else None
    if meta is not None and "training" in meta:
        datalist, info = _discover_msd(root, meta, allow_outside_paths)
    elif meta is not None and "channel_names" in meta:
        datalist, info = _discover_nnunet(root, meta, allow_outside_paths)
    else:
        datalist, info = _discover_plain(root, meta, allow_outside_paths)
    if not datalist:
        raise DataError(
            f"{root}: no image/label pairs found (expected imagesTr/ + labelsTr/ or images/ + labels/ "
            "with NIfTI files, or a dataset.json listing them)",
            [root],
        )
    _check_unique(datalist, root)
    datalist.sort(key=lambda entry: entry["case"])
    logger.info("%s: %s layout, %d cases", root, info.layout, len(datalist))
    return datalist, info


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise DataError(
            f"{path}: not UTF-8 text ({error.reason} at byte {error.start}); save it as UTF-8", [path]
        ) from None
    except (OSError, json.JSONDecodeError) as error:
        raise DataError(f"{path}: cannot parse dataset.json ({error})", [path]) from error
    if not isinstance(data, dict):
        raise DataError(f"{path}: dataset.json must hold a JSON object", [path])
    for key, kind, example in (
        ("labels", dict, '{"0": "background", "1": "heart"}'),
        ("training", list, '[{"image": ..., "label": ...}]'),
    ):
        if key in data and not isinstance(data[key], kind):
            raise DataError(
                f"{path}: `{key}` must be a JSON {'object' if kind is dict else 'list'} like {example}, got "
                f"{type(data[key]).__name__} {data[key]!r:.60}",
                [path],
            )
    return data


def _msd_labels(labels: dict, source: Path) -> dict[int, str]:
    out: dict[int, str] = {}
    for key, value in labels.items():
        if str(key).lstrip("-").isdigit():  # MSD: {"0": "background"}
            out[int(key)] = str(value)
        elif isinstance(value, int):  # nnU-Net v2: {"background": 0}
            out[value] = str(key)
        elif isinstance(value, (list, tuple)):  # nnU-Net v2 regions: {"whole": [1, 2, 3]}
            continue
        else:
            raise DataError(
                f"{source}: cannot read label entry {key!r}: {value!r}; write labels as "
                '{"0": "background", "1": "heart"} (MSD) or {"background": 0, "heart": 1} (nnU-Net)',
                [source],
            )
    return dict(sorted(out.items()))


def _channels(meta: dict, key: str) -> dict[int, str]:
    channels = meta.get(key) or {}
    return {int(k): str(v) for k, v in channels.items()} or {0: "image"}


def _discover_msd(root: Path, meta: dict, allow_outside_paths: bool = False) -> tuple[list[dict], DatasetInfo]:
    info = DatasetInfo(
        str(root),
        "msd",
        _msd_labels(meta.get("labels", {}), root / "dataset.json"),
        _channels(meta, "modality"),
        str(meta.get("name", "")),
        meta.get("tensorImageSize"),
    )
    datalist, missing_images, missing_labels = [], [], []
    for item in meta["training"]:
        if not isinstance(item, dict) or "image" not in item:
            raise DataError(f"{root / 'dataset.json'}: training entry without an image: {item!r}", [root])
        image = listed_path(root, item["image"], "image", allow_outside_paths)
        label = listed_path(root, item["label"], "label", allow_outside_paths) if item.get("label") else None
        if not image.is_file():  # listed, but the image file is not there
            missing_images.append(
                f"{label} (its image {_why_missing(image)} is missing)" if label else _why_missing(image)
            )
            continue
        if label is None or not label.is_file():
            missing_labels.append(str(image) + (f" (its label {_why_missing(label)})" if label else ""))
            continue
        _require_nifti([image, label])
        datalist.append({"image": str(image), "label": str(label), "case": strip_image_suffix(image.name)})
    if missing_images or missing_labels:
        raise DataError(_pairing_message(root, missing_labels, missing_images), missing_labels + missing_images)
    return datalist, info


def _why_missing(path: Path) -> str:
    if path.is_symlink():
        return f"{path} (a broken symbolic link)"
    return str(path)


def _discover_nnunet(root: Path, meta: dict, allow_outside_paths: bool) -> tuple[list[dict], DatasetInfo]:
    ending = meta.get("file_ending", ".nii.gz")
    if ending not in (".nii.gz", ".nii"):
        raise DataError(f"{root / 'dataset.json'}: file_ending {ending!r} is not NIfTI; imaseg reads NIfTI only")
    channels = _channels(meta, "channel_names")
    declared = _msd_labels(meta.get("labels", {}), root / "dataset.json")
    info = DatasetInfo(str(root), "nnunet", declared, channels, str(meta.get("name", "")))
    images_dir, labels_dir = root / "imagesTr", root / "labelsTr"
    images = _list_nifti(images_dir, root, allow_outside_paths)
    labels = {strip_image_suffix(p.name): p for p in _list_nifti(labels_dir, root, allow_outside_paths)}
    by_case: dict[str, dict[int, Path]] = {}
    for path in images:
        match = _CHANNEL_SUFFIX.match(strip_image_suffix(path.name))
        if match is None:
            raise DataError(f"{path}: nnU-Net image names end in _0000, _0001... (one file per channel)", [path])
        case_channels = by_case.setdefault(match["case"], {})
        channel = int(match["channel"])
        if channel in case_channels:
            raise DataError(f"duplicate case id {match['case']!r} channel {channel}: {case_channels[channel]}, {path}")
        case_channels[channel] = path
    datalist = []
    for case, files in by_case.items():
        wanted = sorted(channels)
        if sorted(files) != wanted:
            raise DataError(
                f"{images_dir}: case {case!r} has channels {sorted(files)}, dataset.json declares {wanted}",
                [str(p) for p in files.values()],
            )
        if case not in labels:
            continue
        paths = [str(files[c]) for c in wanted]
        datalist.append({"image": paths if len(paths) > 1 else paths[0], "label": str(labels[case]), "case": case})
    _raise_unpaired(root, set(by_case), set(labels), {c: str(f[min(f)]) for c, f in by_case.items()}, labels)
    return datalist, info


def _discover_plain(root: Path, meta: dict | None, allow_outside_paths: bool) -> tuple[list[dict], DatasetInfo]:
    labels_decl = _msd_labels(meta.get("labels", {}), root / "dataset.json") if meta else {}
    info = DatasetInfo(str(root), "plain", labels_decl, _channels(meta or {}, "modality"))
    for image_name, label_name in _FOLDER_PAIRS:
        images_dir, labels_dir = root / image_name, root / label_name
        if images_dir.is_dir() and labels_dir.is_dir():
            break
    else:
        raise DataError(
            f"{root}: no imagesTr/ + labelsTr/, images/ + labels/ or dataset.json found; "
            "put images and labels with matching file names in those folders",
            [root],
        )
    images = {strip_image_suffix(p.name): p for p in _list_nifti(images_dir, root, allow_outside_paths)}
    labels = {strip_image_suffix(p.name): p for p in _list_nifti(labels_dir, root, allow_outside_paths)}
    # nnU-Net-style single-channel names without a json: CASE_0000 image, CASE label.
    if images and all(_CHANNEL_SUFFIX.match(c) for c in images) and not any(_CHANNEL_SUFFIX.match(c) for c in labels):
        images = {cast("re.Match[str]", _CHANNEL_SUFFIX.match(c))["case"]: p for c, p in images.items()}
    _raise_unpaired(root, set(images), set(labels), images, labels)
    datalist = [{"image": str(images[c]), "label": str(labels[c]), "case": c} for c in images]
    return datalist, info


def _list_nifti(folder: Path, root: Path, allow_outside_paths: bool) -> list[Path]:
    if not folder.is_dir():
        return []
    entries = [p for p in sorted(folder.iterdir()) if not p.name.startswith(".")]
    broken = [str(p) for p in entries if p.is_symlink() and not p.exists()]
    if broken:
        raise DataError(f"{folder}: broken symbolic links {broken}; fix or remove them", broken)
    files = [p for p in entries if p.is_file()]
    if not allow_outside_paths:
        refuse_outside_links([folder, *files], root)
    _require_nifti(files)
    counts = Counter(strip_image_suffix(p.name) for p in files)
    duplicated = sorted(name for name, n in counts.items() if n > 1)
    if duplicated:
        paths = [str(p) for p in files if strip_image_suffix(p.name) in duplicated]
        raise DataError(
            f"{folder}: duplicate case ids {duplicated} (the same name as .nii and .nii.gz): {paths}; keep one",
            paths,
        )
    return files


def _require_nifti(files: list[Path]) -> None:
    others = [str(p) for p in files if not is_image(p)]
    if others:
        raise DataError(
            f"non-image files among the images/labels: {others}; imaseg reads NIfTI (.nii, .nii.gz), NRRD "
            "(.nrrd, .nhdr) and MetaImage (.mha, .mhd): convert these or move them out of the folder",
            others,
        )


def _raise_unpaired(root: Path, image_cases: set, label_cases: set, images: dict, labels: dict) -> None:
    no_label = [str(images[c]) for c in sorted(image_cases - label_cases)]
    no_image = [str(labels[c]) for c in sorted(label_cases - image_cases)]
    if no_label or no_image:
        raise DataError(_pairing_message(root, no_label, no_image), no_label + no_image)


def _pairing_message(root: Path, no_label: list[str], no_image: list[str]) -> str:
    parts = [f"{root}: images and labels do not pair up."]
    if no_label:
        parts.append(f"Images without a label ({len(no_label)}): {', '.join(no_label)}.")
    if no_image:
        parts.append(f"Labels without an image ({len(no_image)}): {', '.join(no_image)}.")
    parts.append("Names must match (CASE.nii.gz in both folders, or CASE_0000.nii.gz for nnU-Net images).")
    return " ".join(parts)


def _check_unique(datalist: list[dict], root: Path) -> None:
    counts = Counter(entry["case"] for entry in datalist)
    duplicated = sorted(case for case, n in counts.items() if n > 1)
    if duplicated:
        paths = [str(e["image"]) for e in datalist if e["case"] in duplicated]
        raise DataError(f"{root}: duplicate case ids {duplicated}: {paths}; case ids must be unique", paths)
