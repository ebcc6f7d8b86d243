"""Hostile corpus, part 1: image files and data sets, judged through ``imaseg check`` and ``preprocess``."""

from __future__ import annotations

import gzip
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from helpers import write_nifti
from hostile_builders import (
    A_IMAGE,
    A_LABEL,
    SHAPE,
    checked,
    denied,
    dims,
    edit_json,
    elsewhere,
    first_entry,
    header,
    image,
    label_values,
    link,
    msd,
    nnunet,
    plain,
    raw_bytes,
    sform,
    truncate,
    unreadable,
    zero_pixdim_z,
)

RNG = np.random.default_rng(1)
IMG = RNG.normal(size=SHAPE).astype(np.float32)
LAB = np.zeros(SHAPE, np.uint8)
LAB[2:5, 2:5] = 1
ZEROS = np.zeros(SHAPE, np.uint8)
BIG = np.zeros((64, 64, 64), np.float32)
RGB = np.zeros(SHAPE, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
SHIFTED = np.array([[1, 0, 0, 5.0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
READY = r"the data set is ready"
C = checked


def _pad(size: int) -> Callable[[Path, Path], None]:
    return lambda r, f: (r / A_IMAGE).write_bytes((r / A_IMAGE).read_bytes() + b"\0" * size)


def _each(*names: str, action: Callable[[Path], object]) -> Callable[[Path, Path], None]:
    return lambda r, f: [action(p) for name in names for p in sorted(r.glob(name))]


def _moved_to_store(r: Path, f: Path) -> None:
    shutil.move(r / A_IMAGE, r / "a_store.nii.gz")
    os.symlink(r / "a_store.nii.gz", r / A_IMAGE)


def _linked_folder(r: Path, f: Path) -> None:
    shutil.move(r / "imagesTr", f / "moved")
    os.symlink(f / "moved", r / "imagesTr")


def _outside_label(r: Path, f: Path) -> Path:
    return plain(f / "o", cases=("z",)) / "labelsTr/z.nii.gz"


def _relative(r: Path, f: Path) -> str:
    return os.path.relpath(elsewhere(r, f), r)


def _append(entry) -> Callable[[dict, Path, Path], None]:
    return lambda m, r, f: m["training"].append(entry(m) if callable(entry) else entry)


def _write(name: str, content: str | bytes) -> Callable[[Path, Path], None]:
    return lambda r, f: (r / name).write_bytes(content if isinstance(content, bytes) else content.encode())


PAIRLESS = "labelsTr/c.nii.gz"

# fmt: off
CASES = [
    C("file/truncated-gz", "a .nii.gz cut after 60 bytes",
      r"a\.nii\.gz: cannot read the file, it is truncated or corrupt", truncate()),
    C("file/garbage-gz", "random bytes named .nii.gz", r"a\.nii\.gz: cannot read .*truncated or corrupt",
      raw_bytes(os.urandom(400))),
    C("file/empty", "an empty .nii.gz", r"a\.nii\.gz: cannot read .*truncated or corrupt", raw_bytes(b"")),
    C("file/text-as-nifti", "a text file named .nii.gz", r"a\.nii\.gz: cannot read", raw_bytes(b"hello\n" * 100)),
    C("file/gzip-of-text", "gzip of text, named .nii.gz", r"a\.nii\.gz: cannot read",
      raw_bytes(gzip.compress(b"x" * 500))),
    C("file/claims-1200-cubed", "header claims 1200^3 voxels in a tiny file",
      r"truncated or corrupt: its header claims \(1200, 1200, 1200\)", header(dims(1200, 1200, 1200))),
    C("file/claims-4000-cubed", "header claims 4000^3 voxels (238 GiB)", r"more than imaseg reads",
      header(dims(4000, 4000, 4000))),
    C("file/claims-negative-dim", "header with a negative dimension",
      r"a\.nii\.gz: the header claims \(8, -8, 3\) voxels: no voxels along an axis", header(dims(8, -8, 3))),
    C("file/claims-zero-dim", "header with a zero dimension",
      r"a\.nii\.gz: the header claims \(8, 0, 3\) voxels: no voxels along an axis", header(dims(8, 0, 3))),
    C("file/zero-affine", "sform all zero", r"affine is degenerate", header(sform((0, 0, 0, 0)))),
    C("file/nan-affine", "sform holds NaN", r"affine holds NaN/Inf", header(sform((float("nan"), 0, 0, 0)))),
    C("file/rgb", "an RGB NIfTI", r"a colour \(RGB\) NIfTI", image(RGB)),
    C("file/nan-voxels", "image with NaN voxels", r"a\.nii\.gz: \d+ NaN/Inf voxels; replace them",
      image(np.where(LAB > 0, np.nan, IMG).astype(np.float32))),
    C("file/inf-voxels", "image with Inf voxels", r"NaN/Inf voxels", image(np.where(LAB > 0, np.inf, IMG))),
    C("file/4d-image", "a 4D (cine) image", r"a\.nii\.gz: image is 4D \(8, 8, 3, 4\)",
      image(np.zeros((*SHAPE, 4), np.float32))),
    C("file/4d-label", "a 4D label map", r"labels must be 2D or 3D", image(np.zeros((*SHAPE, 2), np.uint8), A_LABEL)),
    C("file/2d-label-4d-image", "(X, Y) label for an (X, Y, 1, 1) image",
      r"different number of axes; save both", image(IMG[..., :1, None]), image(LAB[..., 0], A_LABEL)),
    C("file/pixdim-zero-no-sform", "pixdim z = 0 and no sform",
      r"holds 0 for axis 2 and the file has no sform, so its voxel spacing is unknown", header(zero_pixdim_z(False))),
    C("file/pixdim-zero-with-sform", "pixdim z = 0 with an sform (spacing from the sform)", READY,
      header(zero_pixdim_z(True)), header(zero_pixdim_z(True), A_LABEL), code=0),
    C("file/int16", "an int16 image", READY, image((IMG * 100).astype(np.int16)), code=0),
    C("file/big-endian", "big-endian float image", READY, image(IMG.astype(">f4")), code=0),
    C("file/uncompressed-nii", "a .nii beside .nii.gz files", READY,
      lambda r, f: ((r / A_IMAGE).unlink(), write_nifti(r / "imagesTr/a.nii", IMG)), code=0),
    C("label/float-probabilities", "a label holding probabilities", r"non-integer values \(a probability map\?\)",
      image(LAB * 0.5, A_LABEL)),
    C("label/nan", "a label holding NaN", r"label holds NaN/Inf values",
      image(np.where(LAB > 0, np.nan, 0).astype(np.float32), A_LABEL)),
    C("label/negative", "negative label values", r"label values \[-1\] are not among the non-negative class indices",
      image(-LAB.astype(np.int16), A_LABEL)),
    C("label/2^31", "label value 2^31", r"label values up to 2147483648 exceed 2147483647", label_values(2**31)),
    C("label/2^32+1", "label value 2^32 + 1 (wrapped to 1 before)", r"label values up to 4294967297 exceed",
      label_values(2**32 + 1)),
    C("label/2^40", "label value 2^40 (wrapped to 0 before)", r"label values up to 1099511627776 exceed",
      label_values(2**40)),
    C("label/large-fits", "label value 40000 (fits int32)", READY, label_values(40000), code=0),
    C("label/shape-mismatch", "label of another shape",
      r"label shape \(8, 8, 4\) does not match image shape .*resample", image(np.zeros((8, 8, 4), np.uint8), A_LABEL)),
    C("label/spacing-mismatch", "label with another spacing", r"label spacing .* differs from the image's",
      image(LAB, A_LABEL, affine=np.diag([2.0, 1, 1, 1]))),
    C("label/origin-mismatch", "label with another origin", r"label affine differs from the image's .*origin off by",
      image(LAB, A_LABEL, affine=SHIFTED)),
    C("label/undeclared", "label value not in dataset.json", r"label values \[7\] are not among the dataset.json labels",
      label_values(7), layout=msd),
    C("label/no-foreground", "every label map is background", r"no label map holds a class other than \[0\]",
      image(ZEROS, A_LABEL), image(ZEROS, "labelsTr/b.nii.gz"), group="data set"),
    C("label/no-foreground-preprocess", "preprocess of a background-only set", r"every label map holds background only",
      image(ZEROS, A_LABEL), image(ZEROS, "labelsTr/b.nii.gz"), command="preprocess", group="data set"),
    C("label/2^40-preprocess", "preprocess with label value 2^40", r"label values up to 1099511627776 exceed 2147483647",
      label_values(2**40), command="preprocess"),
    C("link/broken", "a broken symbolic link among the images", r"broken symbolic links \[.*c\.nii\.gz'\]; fix or remove",
      link(lambda r, f: f / "gone.nii.gz", "imagesTr/c.nii.gz"), group="links"),
    C("link/loop", "a symbolic link loop among the images", r"broken symbolic links",
      link(lambda r, f: r / "imagesTr" / "c.nii.gz", "imagesTr/c.nii.gz"), group="links"),
    C("link/outside-plain", "plain layout: an image linked to another patient's file outside",
      r"symbolic links lead outside the data folder .*secret\.nii\.gz.*--allow-outside-paths",
      link(elsewhere, "imagesTr/c.nii.gz"), group="links"),
    C("link/outside-plain-allowed", "the same link with --allow-outside-paths", READY,
      link(elsewhere, "imagesTr/c.nii.gz"), flags=("--allow-outside-paths",), code=0, group="links"),
    C("link/outside-label", "plain layout: a label linked outside", r"symbolic links lead outside",
      link(_outside_label, PAIRLESS), group="links"),
    C("link/outside-nnunet", "nnU-Net layout: an image linked outside", r"symbolic links lead outside",
      link(elsewhere, "imagesTr/c_0000.nii.gz"), layout=nnunet, group="links"),
    C("link/outside-folder", "imagesTr/ itself linked outside", r"symbolic links lead outside .*imagesTr -> ",
      _linked_folder, group="links"),
    C("link/outside-preprocess", "preprocess of a folder with a link outside", r"symbolic links lead outside",
      link(elsewhere, "imagesTr/c.nii.gz"), command="preprocess", group="links"),
    C("link/inside-ok", "a link to a file inside the data folder", READY, _moved_to_store, code=0, group="links"),
    C("link/msd-dotdot", "dataset.json entry ../outside", r"resolves to .*secret\.nii\.gz, outside the data folder",
      edit_json(training=first_entry("image", _relative)), layout=msd, group="links"),
    C("link/msd-absolute", "dataset.json entry with an absolute path", r"outside the data folder",
      edit_json(training=first_entry("image", lambda r, f: str(elsewhere(r, f)))), layout=msd, group="links"),
    C("link/msd-symlink", "dataset.json entry that is a link outside", r"outside the data folder",
      link(elsewhere, "imagesTr/c.nii.gz", pair=False), edit_json(training=first_entry("image", "./imagesTr/c.nii.gz")),
      layout=msd, group="links"),
    C("json/not-utf8", "dataset.json in latin-1", r"not UTF-8 text .*save it as UTF-8",
      _write("dataset.json", '{"name": "caf\u00e9"}'.encode("latin-1")), layout=msd, group="dataset.json"),
    C("json/not-json", "dataset.json that is not JSON", r"cannot parse dataset.json",
      _write("dataset.json", "{training: [}"), layout=msd, group="dataset.json"),
    C("json/a-list", "dataset.json holding a list", r"dataset.json must hold a JSON object",
      _write("dataset.json", "[1, 2]"), layout=msd, group="dataset.json"),
    C("json/labels-list", "labels given as a list", r"`labels` must be a JSON object",
      edit_json(labels=["bg", "x"]), layout=msd, group="dataset.json"),
    C("json/training-string", "training given as a string", r"`training` must be a JSON list",
      edit_json(training="imagesTr/a.nii.gz"), layout=msd, group="dataset.json"),
    C("json/number-path", "an image path that is a number", r"image must be a path string, got 12",
      edit_json(training=first_entry("image", 12)), layout=msd, group="dataset.json"),
    C("json/entry-without-image", "a training entry without an image", r"training entry without an image",
      edit_json(training=_append({"label": "x"})), layout=msd, group="dataset.json"),
    C("json/missing-image", "an entry whose image file is missing", r"Labels without an image .*its image .*missing",
      edit_json(training=first_entry("image", "./imagesTr/gone.nii.gz")), layout=msd, group="dataset.json"),
    C("json/missing-label", "an entry whose label file is missing", r"Images without a label .*its label",
      edit_json(training=first_entry("label", "./labelsTr/gone.nii.gz")), layout=msd, group="dataset.json"),
    C("json/duplicate-case", "the same case listed twice", r"duplicate case ids \['a'\]",
      edit_json(training=_append(lambda m: dict(m["training"][0]))), layout=msd, group="dataset.json"),
    C("json/bad-label-entry", "a label entry that is neither index nor name",
      r"data/dataset\.json: cannot read label entry 'x': 'y'; write labels as",
      edit_json(labels={"0": "bg", "x": "y"}), layout=msd, group="dataset.json"),
    C("json/tensor-size-2d", "tensorImageSize 2D for 3D files", r"dataset.json says tensorImageSize 2D",
      edit_json(tensorImageSize="2D"), layout=msd, group="dataset.json"),
    C("json/nnunet-png", "nnU-Net file_ending .png", r"file_ending '.png' is not NIfTI",
      edit_json(file_ending=".png"), layout=nnunet, group="dataset.json"),
    C("json/nnunet-no-suffix", "nnU-Net image without _0000", r"nnU-Net image names end in _0000",
      lambda r, f: (r / "imagesTr/a_0000.nii.gz").rename(r / A_IMAGE), layout=nnunet, group="dataset.json"),
    C("json/nnunet-missing-channel", "nnU-Net case lacking a declared channel",
      r"case 'a' has channels \[0\], dataset.json declares \[0, 1\]",
      edit_json(channel_names={"0": "T1", "1": "T2"}), layout=nnunet, group="dataset.json"),
    C("set/unpaired-image", "an image without a label", r"Images without a label \(1\): .*c\.nii\.gz",
      lambda r, f: shutil.copy(r / A_IMAGE, r / "imagesTr/c.nii.gz"), group="data set"),
    C("set/unpaired-label", "a label without an image", r"Labels without an image \(1\)",
      lambda r, f: shutil.copy(r / A_LABEL, r / PAIRLESS), group="data set"),
    C("set/nii-and-niigz", "the same case as .nii and .nii.gz",
      r"duplicate case ids \['a'\] \(the same name as .nii and .nii.gz\)",
      lambda r, f: write_nifti(r / "imagesTr/a.nii", IMG), group="data set"),
    C("set/text-file", "a text file among the images", r"non-image files among the images/labels: .*notes\.txt",
      _write("imagesTr/notes.txt", "hi"), group="data set"),
    C("set/empty-folders", "empty imagesTr/ and labelsTr/", r"no image/label pairs found",
      _each("imagesTr/*", "labelsTr/*", action=Path.unlink), group="data set"),
    C("set/no-layout", "a folder with no known layout", r"no imagesTr/ \+ labelsTr/, images/ \+ labels/ or dataset.json",
      _each("imagesTr", "labelsTr", action=shutil.rmtree), group="data set"),
    C("set/dotfiles", "hidden files among the images", READY, _write("imagesTr/.DS_Store", "x"), code=0,
      group="data set"),
    C("set/unicode-names", "case names with spaces and accents", READY,
      _each("imagesTr/*", "labelsTr/*", action=lambda p: p.rename(p.with_name("é " + p.name))), code=0, group="data set"),
    C("set/unreadable-image", "an image the user may not read", r"a\.nii\.gz: cannot read the file: permission denied",
      patch=lambda r: unreadable(r / A_IMAGE), group="permissions"),
    C("set/unenterable-folder", "a data folder the user may not enter", r"permission denied while reading the data set",
      patch=lambda r: denied(lambda p: p.parent == r), group="permissions"),
    C("set/missing-folder", "a data folder that does not exist", r"data folder does not exist",
      lambda r, f: shutil.rmtree(r), group="data set"),
    C("set/folder-is-file", "a file given as the data folder", r"data folder does not exist",
      lambda r, f: (shutil.rmtree(r), r.write_text("x")), group="data set"),
    C("budget/over-flag", "an honest volume above --memory-budget", r"a\.nii\.gz: decoding it needs .*the file is intact",
      image(BIG), flags=("--memory-budget", "0.0005"), group="memory"),
    C("budget/claims-4.5GiB", "a 4.7 MB .nii.gz claiming 2000x2000x300 float32",
      r"decoding it needs 4\.5 GiB .*more than the memory budget set", header(dims(2000, 2000, 300)),
      _pad(4_700_000), flags=("--memory-budget", "2"), group="memory"),
    C("budget/preprocess", "preprocess of a volume above --memory-budget", r"decoding it needs", image(BIG),
      command="preprocess", flags=("--memory-budget", "0.0005"), group="memory"),
    C("budget/negative", "--memory-budget -1", r"`memory_budget` must be a positive number of GiB",
      flags=("--memory-budget", "-1"), group="memory"),
]
# fmt: on
