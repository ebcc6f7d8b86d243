"""Hostile corpus, part 2: caches, training, and run folders received from elsewhere."""

from __future__ import annotations

import builtins
import contextlib
import json
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import torch
import yaml
from hostile_corpus import Case, Probe, Workspace

SMALL = ["--attacks", "noise-l2", "--eps", "0", "--no-hd95", "--no-steps-check", "--overlays", "0", "--no-progress"]
Build = Callable[[Workspace, Path], Probe]


def train_argv(cache: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        *("--cache", str(cache), "--out", str(out), "--epochs", "1", "--channels", "4,8", "--res-units", "0"),
        *("--no-tensorboard", "--no-progress", "--val-steps", "0", *extra),
    ]


class _Exploit:
    """Pickled, it runs ``code`` when loaded without ``weights_only``."""

    def __init__(self, marker: Path) -> None:
        self.code = f"open({str(marker)!r}, 'w').write('ran')"

    def __reduce__(self):
        return (builtins.exec, (self.code,))


def exploit(path: Path, marker: Path, key: str = "network") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({key: {"w": _Exploit(marker)}, "epoch": 1}, path)
    return path


def copy(source: Path, target: Path) -> Path:
    return Path(shutil.copytree(source, target, symlinks=True))


def file(path: Path, content: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


# -- caches ----------------------------------------------------------------------------------------------
def _flip_image_bytes(cache: Path) -> None:
    for path in (cache / "cases").iterdir():  # inside each image array: its CRC no longer holds
        raw = bytearray(path.read_bytes())
        raw[400] ^= 0xFF
        path.write_bytes(bytes(raw))


def _rotate_case_files(cache: Path) -> None:
    files = sorted((cache / "cases").iterdir())
    contents = [p.read_bytes() for p in files]
    for path, content in zip(files, contents[1:] + contents[:1]):
        path.write_bytes(content)


def cache_case(edit: Callable[[Path], object], expect: str) -> Build:
    def build(ws: Workspace, folder: Path) -> Probe:
        cache = copy(ws.cache, folder / "cache")
        edit(cache)
        return Probe(train_argv(cache, folder / "run"), expect, watch=[ws.cache])

    return build


def manifest(text: str) -> Callable[[Path], object]:
    return lambda cache: (cache / "manifest.json").write_text(text)


# -- training --------------------------------------------------------------------------------------------
def live_lock(ws: Workspace, folder: Path) -> Probe:
    from imaseg.run import RunDir

    lock = RunDir(folder / "run").training_lock()  # held by "another trainer" while the command runs
    expect = r"this run folder is in use by another imaseg process \(pid \d+ on "
    return Probe(train_argv(ws.cache, folder / "run"), expect, patch=lambda: lock)


def stale_lock(ws: Workspace, folder: Path) -> Probe:
    owner = {"pid": 4206649, "host": socket.gethostname(), "started": "earlier", "command": "imaseg train"}
    file(folder / "run" / "train.lock", json.dumps(owner))
    return Probe(train_argv(ws.cache, folder / "run"), r"taking over a stale lock of pid 4206649", code=0)


def disk_full(ws: Workspace, folder: Path) -> Probe:
    from imaseg import checkpoint

    run = copy(ws.run, folder / "run")
    full = mock.patch.object(checkpoint, "open", lambda path, mode: builtins.open("/dev/full", mode), create=True)
    expect = r"checkpoints/(last|best)\.pt: the disk is full \(ENOSPC: No space left on device\); free some space"
    argv = train_argv(ws.cache, run, "--epochs", "2", "--resume")
    return Probe(argv, expect, watch=[run / "checkpoints"], patch=lambda: full)


def trainer(
    expect: str,
    *extra: str | Callable[[Path], Path],
    out: Callable[[Workspace, Path], Path] | None = None,
    markers: tuple[str, ...] = (),
) -> Build:
    def build(ws: Workspace, folder: Path) -> Probe:
        flags = [str(e(folder)) if callable(e) else e for e in extra]
        run = out(ws, folder) if out else folder / "run"
        return Probe(train_argv(ws.cache, run, *flags), expect, watch=[ws.cache], markers=[folder / m for m in markers])

    return build


# -- received run folders --------------------------------------------------------------------------------
EVIL = """
import pathlib
pathlib.Path({folder!r}, "IMPORTED").write_text("imported")


def make(spatial_dims, in_channels, out_channels):
    pathlib.Path({folder!r}, "CALLED").write_text("called")
    import torch
    return torch.nn.Conv2d(in_channels, out_channels, 3, padding=1)
"""


def hostile_run(ws: Workspace, folder: Path, network: str = "evil_nets:make") -> Path:
    run = copy(ws.run, folder / "run")
    file(folder / "mods" / "evil_nets.py", EVIL.format(folder=str(folder)))
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["train"]["network"]["name"] = network
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    return run


def importable(folder: Path) -> Callable[[], contextlib.AbstractContextManager]:
    @contextlib.contextmanager
    def on_path():
        with mock.patch.object(sys, "path", [str(folder / "mods"), *sys.path]):
            try:
                yield
            finally:
                sys.modules.pop("evil_nets", None)

    return on_path


def commands(run: Path, ws: Workspace, folder: Path) -> dict[str, list[str]]:
    image = sorted((ws.data / "imagesTr").iterdir())[0]
    return {
        "evaluate": ["evaluate", "--run", str(run), *SMALL],
        "predict": ["predict", str(run), "--input", str(image), "--output", str(folder / "seg"), "--no-progress"],
        "export": ["export", str(run), "--bundle", str(folder / "bundle")],
    }


def factory(command: str, network: str = "evil_nets:make", expect: str = "", *extra: str) -> Build:
    def build(ws: Workspace, folder: Path) -> Probe:
        argv = [*commands(hostile_run(ws, folder, network), ws, folder)[command], *extra]
        pattern = expect or rf"config\.yaml: its network '{network}' is code .*--trust-factory {network}"
        markers = [] if extra else [folder / "IMPORTED", folder / "CALLED"]
        return Probe(argv, pattern, markers=markers, patch=importable(folder))

    return build


def beside_the_run(ws: Workspace, folder: Path) -> Probe:
    modules = ("typing", "numpy", "yaml", "torch", "nibabel")
    for module in modules:
        file(folder / f"{module}.py", f"open({str(folder / ('MARK_' + module))!r}, 'w').write('x')\n")

    def command() -> int:
        argv = [sys.executable, "-m", "imaseg", "check", str(ws.data)]
        done = subprocess.run(argv, cwd=folder, capture_output=True, text=True)
        print(done.stdout[-300:], done.stderr[-2000:])
        return done.returncode

    return Probe([], r"the data set is ready", code=0, markers=[folder / f"MARK_{m}" for m in modules], command=command)


def run_edit(edit: Callable[[Path, Path], object], command: str, expect: str, markers: tuple[str, ...] = ()) -> Build:
    def build(ws: Workspace, folder: Path) -> Probe:
        run = copy(ws.run, folder / "run")
        edit(run, folder)
        return Probe(commands(run, ws, folder)[command], expect, markers=[folder / m for m in markers])

    return build


def _cut(path: Path, size: int) -> None:
    path.write_bytes(path.read_bytes()[:size])


LAST = "checkpoints/last.pt"
YAML_CODE = "train: !!python/object/apply:os.system ['touch {marker}']\n"


def _group(group: str, rows: list[tuple[str, str, Build]]) -> list[Case]:
    return [Case(name, group, what, build) for name, what, build in rows]


# fmt: off
CASES = [
    *_group("caches", [
        ("cache/corrupt-image", "cached cases whose image arrays are corrupt", cache_case(
            _flip_image_bytes, r"cached case is unreadable .*delete this file and rerun `imaseg preprocess`")),
        ("cache/foreign-case", "cached case files of other cases",
         cache_case(_rotate_case_files, r"cached case does not match .*manifest.json")),
        ("cache/manifest-garbage", "manifest.json that is not JSON",
         cache_case(manifest("{"), r"manifest\.json: not valid JSON .*re-run `imaseg preprocess")),
        ("cache/manifest-list", "manifest.json holding a list",
         cache_case(manifest("[]"), r"manifest\.json: the cache manifest must be a JSON object, got list")),
        ("cache/manifest-version", "manifest.json of another imaseg",
         cache_case(manifest('{"version": 999}'), r"manifest\.json: the cache manifest lacks the keys .*re-run")),
        ("cache/missing", "a cache folder that does not exist",
         lambda ws, f: Probe(train_argv(f / "none", f / "run"), r"no manifest\.json; run `imaseg preprocess")),
    ]),
    *_group("training", [
        ("train/out-is-cache", "train --out CACHE",
         lambda ws, f: Probe(train_argv(copy(ws.cache, f / "c"), f / "c"), r"--out .*c is the same folder as --cache",
                             watch=[f / "c"])),
        ("train/out-inside-cache", "train --out CACHE/run",
         lambda ws, f: Probe(train_argv(ws.cache, ws.cache / "run"), r"--out .* is inside --cache", watch=[ws.cache])),
        ("train/live-lock", "a second train on a run folder another process trains in", live_lock),
        ("train/stale-lock", "a lock file left by a killed trainer", stale_lock),
        ("train/already-trained", "train into a finished run without --resume", trainer(
            r"already holds a trained run .*--resume .*--overwrite", out=lambda ws, f: copy(ws.run, f / "run"))),
        ("train/init-garbage", "--init naming a file that is no checkpoint", trainer(
            r"x\.pt: not a readable PyTorch checkpoint", "--init", lambda f: file(f / "x.pt", b"junk"))),
        ("train/init-pickle-code", "--init checkpoint whose pickle runs code", trainer(
            r"evil\.pt: refusing to load: .*can run code", "--init", lambda f: exploit(f / "evil.pt", f / "MARKER"),
            markers=("MARKER",))),
        ("train/disk-full", "the disk fills while a checkpoint is written", disk_full),
        ("train/network-os-system", "--network os:system",
         trainer(r"network 'os:system': cannot be called as a network factory", "--network", "os:system")),
        ("train/network-popen", "--network subprocess:Popen", trainer(
            r"network 'subprocess:Popen': cannot be called as a network factory", "--network", "subprocess:Popen")),
        ("train/network-exec", "--network builtins:exec", trainer(
            r"network 'builtins:exec': (cannot be called as|not a function whose)", "--network", "builtins:exec")),
        ("train/network-missing", "--network no_such_package.nets:make", trainer(
            r"cannot import 'make' from 'no_such_package.nets'", "--network", "no_such_package.nets:make")),
        ("train/network-not-callable", "--network os:sep",
         trainer(r"network 'os:sep': str is not callable", "--network", "os:sep")),
    ]),
    *_group("run folders", [
        ("run/factory-evaluate", "evaluate of a run whose config.yaml names a factory that leaves markers",
         factory("evaluate")),
        ("run/factory-predict", "predict of the same run", factory("predict")),
        ("run/factory-export", "export of the same run", factory("export")),
        ("run/factory-os-system", "evaluate of a run whose config.yaml names os:system", factory("evaluate", "os:system")),
        ("run/factory-trusted", "the same run with --trust-factory (built: its weights do not fit)", factory(
            "evaluate", "evil_nets:make", r"the weights do not fit", "--trust-factory", "evil_nets:make")),
        ("run/module-beside-run", "python -m imaseg run from a folder shipping typing.py, numpy.py, yaml.py",
         beside_the_run),
        ("run/checkpoint-pickle-code", "last.pt whose pickle runs code", run_edit(
            lambda r, f: exploit(r / LAST, f / "MARKER"), "evaluate", r"last\.pt: refusing to load", ("MARKER",))),
        ("run/checkpoint-pickle-predict", "the same checkpoint given to predict", run_edit(
            lambda r, f: exploit(r / LAST, f / "MARKER"), "predict", r"last\.pt: refusing to load", ("MARKER",))),
        ("run/checkpoint-truncated", "a truncated last.pt", run_edit(
            lambda r, f: _cut(r / LAST, 300), "evaluate", r"last\.pt: not a readable PyTorch checkpoint")),
        ("run/checkpoint-missing", "a run without checkpoints", run_edit(
            lambda r, f: shutil.rmtree(r / "checkpoints"), "predict", r"checkpoint .*last\.pt does not exist")),
        ("run/config-yaml-code", "config.yaml with a python/object tag", run_edit(
            lambda r, f: file(r / "config.yaml", YAML_CODE.format(marker=f / "MARKER")), "evaluate",
            r"config\.yaml: not valid YAML", ("MARKER",))),
        ("run/config-train-list", "config.yaml whose train section is a list", run_edit(
            lambda r, f: file(r / "config.yaml", "train: [1, 2]\n"), "evaluate",
            r"config\.yaml: its 'train' section must be a mapping")),
        ("run/config-missing", "a run folder without config.yaml", run_edit(
            lambda r, f: (r / "config.yaml").unlink(), "evaluate", r"config\.yaml does not exist: is .* a run folder")),
        ("run/preprocessing-garbage", "preprocessing.json that is not JSON", run_edit(
            lambda r, f: file(r / "preprocessing.json", "{"), "predict", r"preprocessing\.json: not valid JSON")),
        ("run/tag-escape", "evaluate --tag ../escape", lambda ws, f: Probe(
            ["evaluate", "--run", str(ws.run), "--tag", "../escape", "--no-progress"],
            r"`tag` must be a plain folder name", watch=[ws.run])),
        ("run/report-not-run", "report of a folder that is no run", lambda ws, f: Probe(
            ["report", str(f)], r"is not a run folder \(no config\.yaml\); pass a folder written by `imaseg train`")),
    ]),
]
# fmt: on
