"""Hostile corpus, part 3: prediction, bundles and models imaseg did not train, and outputs."""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from helpers import write_nifti
from hostile_builders import elsewhere, plain
from hostile_cases_runs import SMALL, Build, copy, exploit, file
from hostile_corpus import Case, Probe, Workspace
from monai.networks.nets import UNet

UNET = {"spatial_dims": 2, "in_channels": 1, "out_channels": 4, "channels": [4, 8], "strides": [2], "num_res_units": 0}


# -- prediction ------------------------------------------------------------------------------------------
def scans(ws: Workspace, folder: Path) -> Path:
    target = folder / "scans"
    target.mkdir()
    for image in sorted((ws.data / "imagesTr").iterdir())[:2]:
        shutil.copy(image, target / image.name)
    return target


def predicting(
    source: Callable[[Path], Path], output: Callable[[Path], Path] | None, expect: str, code: int = 1, *extra: str
) -> Build:
    def build(ws: Workspace, folder: Path) -> Probe:
        inputs = scans(ws, folder)
        out = output(inputs) if output else folder / "seg"
        argv = ["predict", str(ws.run), "--input", str(source(inputs)), "--output", str(out), "--no-progress", *extra]
        return Probe(argv, expect, code, watch=[inputs, ws.run])

    return build


def _other_settings(scans: Path) -> Path:
    return file(scans.parent / "seg" / "predict.json", '{"run": "other"}').parent


# -- bundles ---------------------------------------------------------------------------------------------
def bundle(root: Path, network_def, **extra) -> Path:
    file(root / "configs" / "inference.json", json.dumps({"network_def": network_def, **extra}))
    (root / "models").mkdir()
    torch.save(UNet(**UNET).state_dict(), root / "models" / "model.pt")
    return root


def code(marker: Path) -> str:
    return f"$__import__('pathlib').Path({str(marker)!r}).write_text('ran') * 0"


def scoring(model: Callable[[Path], Path], expect: str, code: int = 1) -> Build:
    def build(ws: Workspace, folder: Path) -> Probe:
        argv = ["evaluate", "--model", str(model(folder)), "--data", str(ws.data), "--run", str(folder / "ext"), *SMALL]
        return Probe(argv, expect, code, watch=[ws.data], markers=[folder / "MARKER"])

    return build


def hostile_def(network_def: Callable[[Path], object], expect: str) -> Build:
    """A bundle whose network_def is ``network_def(folder)``, beside an item ``evil`` holding code."""
    model = lambda f: bundle(f / "b", network_def(f), evil=code(f / "MARKER"))  # noqa: E731
    return scoring(model, expect + r".*--trust-bundle-code")


def edited(edit: Callable[[Path], object]) -> Callable[[Path], Path]:
    def model(folder: Path) -> Path:
        root = bundle(folder / "b", {"_target_": "UNet", **UNET})
        edit(root)
        return root

    return model


def _yaml_tag(root: Path) -> None:
    (root / "configs" / "inference.json").unlink()
    file(
        root / "configs" / "inference.yaml",
        f"network_def: !!python/object/apply:os.system ['touch {root.parent}/MARKER']",
    )


def _linked_data(folder: Path) -> Path:
    root = plain(folder / "data", shape=(16, 16, 3))
    os.symlink(elsewhere(root, folder), root / "imagesTr" / "c.nii.gz")
    shutil.copy(root / "labelsTr" / "a.nii.gz", root / "labelsTr" / "c.nii.gz")
    return root


# -- outputs ---------------------------------------------------------------------------------------------
def blocked(folder: Path) -> Path:
    return file(folder / "blocker", "a file")


def unreadable_message(ws: Workspace, folder: Path) -> Probe:
    from imaseg.cli import os_error_message

    def command() -> int:
        with mock.patch.object(os, "access", lambda path, mode: False):
            print(os_error_message(PermissionError(errno.EACCES, "Permission denied", str(folder))))
        return 1

    return Probe([], r"^cannot read .*: Permission denied; give your user access", command=command)


def _group(group: str, rows: list[tuple[str, str, Build]]) -> list[Case]:
    return [Case(name, group, what, build) for name, what, build in rows]


UNET_DEF = {"_target_": "UNet", **UNET}
CINE = np.zeros((16, 16, 3, 5), np.float32)

# fmt: off
CASES = [
    *_group("prediction", [
        ("predict/output-is-input", "predict --output equal to --input",
         predicting(lambda s: s, lambda s: s, r"--output .* is the same folder as --input")),
        ("predict/output-inside-input", "predict --output inside --input",
         predicting(lambda s: s, lambda s: s / "seg", r"--output .*seg is inside --input")),
        ("predict/output-beside-file", "predict --input scans/a.nii.gz --output scans/",
         predicting(lambda s: next(s.iterdir()), lambda s: s, r"--output .* is the folder of --input")),
        ("predict/works", "predict into a folder of its own", predicting(lambda s: s, None, r"2 case\(s\) segmented", 0)),
        ("predict/over-budget", "predict --memory-budget below one image",
         predicting(lambda s: s, None, r"decoding it needs", 1, "--memory-budget", "0.000001")),
        ("predict/4d-input", "a 4D image given to predict", predicting(
            lambda s: write_nifti(s / "cine.nii.gz", CINE), None,
            r"cine\.nii\.gz: image is 4D \(16, 16, 3, 5\) where 2D or 3D was expected")),
        ("predict/not-an-image", "a text file given to predict", predicting(
            lambda s: file(s / "notes.txt", "x"), None, r"notes\.txt: not an image file imaseg reads")),
        ("predict/missing-input", "an input that does not exist",
         predicting(lambda s: s / "gone.nii.gz", None, r"gone\.nii\.gz: no such file or folder")),
        ("predict/empty-folder", "an empty input folder",
         predicting(lambda s: file(s / "empty" / ".keep", "").parent, None, r"empty: no images")),
        ("predict/other-settings", "an output folder holding another run's predictions",
         predicting(lambda s: s, _other_settings, r"holds predictions of another run or other settings")),
    ]),
    *_group("bundles", [
        ("bundle/dollar-expression", "network_def argument holding a $ expression",
         hostile_def(lambda f: {**UNET_DEF, "dropout": code(f / "MARKER")}, r"holds the expression")),
        ("bundle/builtins-open", "_target_ builtins.open", hostile_def(
            lambda f: {"_target_": "builtins.open", "file": str(f / "MARKER"), "mode": "w"}, r"_target_ 'builtins\.open'")),
        ("bundle/os-system", "_target_ os.system", hostile_def(
            lambda f: {"_target_": "os.system", "command": f"touch {f / 'MARKER'}"}, r"_target_ 'os\.system'")),
        ("bundle/subprocess", "_target_ subprocess.run", hostile_def(
            lambda f: {"_target_": "subprocess.run", "args": ["touch", str(f / "MARKER")]}, r"_target_ 'subprocess\.run'")),
        ("bundle/reference-to-code", "network_def referring to a $ item",
         hostile_def(lambda f: {**UNET_DEF, "act": "@evil"}, r"holds the expression")),
        ("bundle/requires", "network_def with _requires_",
         hostile_def(lambda f: {**UNET_DEF, "_requires_": "@evil"}, r"holds _requires_")),
        ("bundle/debug-mode", "network_def with _mode_ debug",
         hostile_def(lambda f: {**UNET_DEF, "_mode_": "debug"}, r"_mode_ 'debug'")),
        ("bundle/macro", "network_def as a % macro", hostile_def(lambda f: "%configs/other.json#net", r"the macro")),
        ("bundle/imaseg-builder-factory", "imaseg's builder naming os:system", hostile_def(
            lambda f: {"_target_": "imaseg.networks.build_network", "name": "os:system", **UNET},
            r"network 'os:system' is code")),
        ("bundle/nested-target", "an allowed network with a nested builtins.eval argument", hostile_def(
            lambda f: {**UNET_DEF, "act": {"_target_": "builtins.eval", "source": "1"}}, r"_target_ 'builtins\.eval'")),
        ("bundle/no-configs", "a folder without configs/", scoring(
            edited(lambda b: shutil.rmtree(b / "configs")), r"not a MONAI bundle \(no configs/inference\.json")),
        ("bundle/no-network-def", "inference.json without network_def or model.ts", scoring(
            edited(lambda b: file(b / "configs/inference.json", "{}")), r"defines no network_def")),
        ("bundle/bad-json", "inference.json that is not JSON", scoring(
            edited(lambda b: file(b / "configs/inference.json", "{")), r"inference\.json: cannot read the bundle config")),
        ("bundle/yaml-object-tag", "inference.yaml with a python/object tag",
         scoring(edited(_yaml_tag), r"inference\.yaml: cannot read the bundle config")),
        ("bundle/weights-pickle-code", "models/model.pt whose pickle runs code", scoring(
            edited(lambda b: exploit(b / "models/model.pt", b.parent / "MARKER", key="model")),
            r"model\.pt: refusing to load")),
        ("bundle/weights-garbage", "models/model.pt that is no checkpoint", scoring(
            edited(lambda b: file(b / "models/model.pt", b"junk")), r"model\.pt: not readable PyTorch weights")),
        ("bundle/weights-mismatch", "weights of another network", scoring(edited(
            lambda b: torch.save(UNet(**{**UNET, "channels": [8, 16]}).state_dict(), b / "models/model.pt")),
            r"the weights do not fit")),
        ("bundle/weights-not-a-dict", "models/model.pt holding a list", scoring(
            edited(lambda b: torch.save([1, 2], b / "models/model.pt")), r"holds a list, not a state dict")),
        ("bundle/no-weights", "a bundle without models/",
         scoring(edited(lambda b: shutil.rmtree(b / "models")), r"needs models/model\.pt")),
        ("bundle/plain-monai-works", "a plain MONAI UNet bundle (no trust flag needed)", scoring(
            lambda f: bundle(f / "b", {**UNET_DEF, "_target_": "monai.networks.nets.UNet", "spatial_dims": "@dims"},
                             dims=2), r"results: ", 0)),
        ("bundle/torchscript-garbage", "a .ts file that is no TorchScript",
         scoring(lambda f: file(f / "m.ts", b"junk"), r"m\.ts: not a TorchScript model")),
        ("bundle/missing", "--model naming nothing",
         scoring(lambda f: f / "gone", r"gone: no such model file or bundle folder")),
        ("bundle/trust-without-bundle", "--trust-bundle-code on an imaseg run", lambda ws, f: Probe(
            ["evaluate", "--run", str(copy(ws.run, f / "run")), "--trust-bundle-code", *SMALL], r"scores no bundle")),
        ("bundle/run-inside-data", "evaluate --run inside --data", lambda ws, f: Probe(
            ["evaluate", "--model", str(f / "m.ts"), "--data", str(copy(ws.data, f / "d")), "--run", str(f / "d/ext")],
            r"--run .*ext is inside --data", watch=[f / "d"])),
        ("bundle/data-link-outside", "evaluate --data holding a link outside", lambda ws, f: Probe(
            ["evaluate", "--run", str(copy(ws.run, f / "run")), "--data", str(_linked_data(f)), *SMALL],
            r"symbolic links lead outside")),
    ]),
    *_group("outputs", [
        ("out/check-json-folder", "check --json naming a folder", lambda ws, f: Probe(
            ["check", str(ws.data), "--json", str(f)], r"cannot write .*: Is a directory", watch=[ws.data])),
        ("out/check-json-under-file", "check --json under a file", lambda ws, f: Probe(
            ["check", str(ws.data), "--json", str(blocked(f) / "r.json")], r"blocker is a file, not a folder",
            watch=[ws.data])),
        ("out/preprocess-out-is-data", "preprocess --out equal to --data", lambda ws, f: Probe(
            ["preprocess", "--data", str(copy(ws.data, f / "d")), "--out", str(f / "d")],
            r"--out .*d is the same folder as --data", watch=[f / "d"])),
        ("out/preprocess-out-inside-data", "preprocess --out inside --data", lambda ws, f: Probe(
            ["preprocess", "--data", str(copy(ws.data, f / "d")), "--out", str(f / "d" / "cache")],
            r"--out .*cache is inside --data", watch=[f / "d"])),
        ("out/preprocess-out-under-file", "preprocess --out under a file", lambda ws, f: Probe(
            ["preprocess", "--data", str(ws.data), "--out", str(blocked(f) / "cache")], r"blocker is a file, not a folder",
            watch=[ws.data])),
        ("out/report-under-file", "report --out under a file", lambda ws, f: Probe(
            ["report", str(ws.run), "--out", str(blocked(f) / "r")], r"blocker is a file, not a folder", watch=[ws.run])),
        ("out/demo-data-over-file", "demo-data into a path that is a file", lambda ws, f: Probe(
            ["demo-data", str(blocked(f))], r"blocker is a file, not a folder")),
        ("out/unreadable-folder-message", "an unreadable folder is named unreadable, not unwritable",
         unreadable_message),
    ]),
]
# fmt: on
