"""The hostile-input corpus: broken, odd and malicious inputs, each run through the real command line.

Every case builds its input (tiny, in a folder of its own), runs ``imaseg ...`` in this process and is
judged as one of:

- ``security``: a marker file that only the input's code would write exists afterwards;
- ``data loss``: a watched input changed (byte for byte);
- ``traceback``: an exception escaped the command line;
- ``unclear``: the exit status or the message is not the one expected (a message names the file and fix);
- ``ok``: none of these.

``python tests/security/hostile_corpus.py`` runs every case and writes the summary to
``docs/hostile_inputs.md``; ``tests/security/test_hostile_corpus.py`` runs them in the suite and checks that
summary is current. The cases live in ``hostile_cases_data.py`` (files and data sets, built with
``hostile_builders.py``), ``hostile_cases_runs.py`` (caches, training, received run folders) and
``hostile_cases_models.py`` (prediction, bundles, outputs).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

OUTCOMES = ("ok", "unclear", "traceback", "data loss", "security")
REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs" / "hostile_inputs.md"


@dataclass
class Probe:
    """One command and what a correct run of it looks like."""

    argv: list[str]
    expect: str  # a regex the command's stdout + stderr must match
    code: int = 1
    watch: list[Path] = field(default_factory=list)  # inputs that must stay byte-identical
    markers: list[Path] = field(default_factory=list)  # files only the input's own code would write
    patch: Callable[[], contextlib.AbstractContextManager] | None = None
    command: Callable[[], int] | None = None  # instead of ``imaseg argv`` (e.g. a subprocess); prints its output


@dataclass(frozen=True)
class Case:
    name: str
    group: str
    what: str  # one line for the docs
    build: Callable[[Workspace, Path], Probe]


@dataclass
class Workspace:
    """Artefacts several cases read (never change: a case that alters one copies it first)."""

    root: Path
    data: Path
    cache: Path
    run: Path

    @classmethod
    def create(cls, root: Path) -> Workspace:
        from imaseg.cache.writer import preprocess_dataset
        from imaseg.data.demo import write_demo_data
        from imaseg.training.trainer import train
        from imaseg.transforms.chain import PreprocessConfig

        data = write_demo_data(root / "shared" / "data", patients=2, shape=(16, 16, 3), seed=0)
        cache = root / "shared" / "cache"
        config = PreprocessConfig(
            intensity="none", spatial_size=[16, 16], folds=2, val_groups=0, group_regex=r"^(patient\d+)"
        )
        preprocess_dataset(data, cache, config, progress=False)
        run = root / "shared" / "run"
        train(cache, run, tiny_train_config(epochs=1, val_steps=0), progress=False)
        return cls(root, data, cache, run)


def tiny_train_config(**overrides):
    from imaseg.config import config_from_dict
    from imaseg.training.config import TrainConfig

    settings = {"channels": [4, 8], "res_units": 0, "epochs": 1, "batch_size": 8, "tensorboard": False}
    settings.update({"clip_range": [0.0, 1.0], "deterministic": True, **overrides})
    return config_from_dict(TrainConfig, settings)


def _digests(paths: list[Path]) -> dict[str, str]:
    found: dict[str, str] = {}
    for path in paths:
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else []
        for file in files:
            found[str(file)] = hashlib.sha256(file.read_bytes()).hexdigest()
    return found


@contextlib.contextmanager
def _kept_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


@dataclass
class Result:
    case: Case
    outcome: str
    output: str
    seconds: float


def run_case(case: Case, workspace: Workspace) -> Result:
    """Build ``case``'s input in a folder of its own, run it and judge the outcome."""
    from imaseg.cli import main

    with process_settings_kept():
        return _run(case, workspace, main)


@contextlib.contextmanager
def process_settings_kept() -> Iterator[None]:
    """What a command's flags change for the process (memory budget, trusted code) is undone after a case."""
    from imaseg import foreign, networks
    from imaseg.utils import memory

    factories, bundles, budget = set(networks._TRUSTED_FACTORIES), set(foreign._TRUSTED_BUNDLES), memory._override
    try:
        yield
    finally:
        networks._TRUSTED_FACTORIES.clear()
        networks._TRUSTED_FACTORIES.update(factories)
        foreign._TRUSTED_BUNDLES.clear()
        foreign._TRUSTED_BUNDLES.update(bundles)
        memory._override = budget


def _run(case: Case, workspace: Workspace, main: Callable[[list[str]], int]) -> Result:
    folder = workspace.root / re.sub(r"[^\w.-]+", "_", case.name)
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    probe = case.build(workspace, folder)
    before = _digests(probe.watch)
    out, err = io.StringIO(), io.StringIO()
    code: int | None
    with _kept_logging(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        with probe.patch() if probe.patch else contextlib.nullcontext():
            try:
                code = probe.command() if probe.command else main(probe.argv)
            except SystemExit as stop:  # argparse: usage errors
                code = stop.code if isinstance(stop.code, int) else 1
            except Exception:  # noqa: BLE001  (any escape is the finding)
                import traceback

                code = None
                err.write(traceback.format_exc())
    text = out.getvalue() + err.getvalue()
    if any(marker.exists() for marker in probe.markers):
        outcome = "security"
    elif _digests(probe.watch) != before:
        outcome = "data loss"
    elif code is None or "Traceback (most recent call last)" in text:
        outcome = "traceback"
    elif code != probe.code or not re.search(probe.expect, text, re.S):
        outcome = "unclear"
    else:
        outcome = "ok"
    return Result(case, outcome, text, time.perf_counter() - started)


def all_cases() -> list[Case]:
    from hostile_cases_data import CASES as DATA_CASES
    from hostile_cases_models import CASES as MODEL_CASES
    from hostile_cases_runs import CASES as RUN_CASES

    cases = [*DATA_CASES, *RUN_CASES, *MODEL_CASES]
    duplicated = [name for name, n in Counter(c.name for c in cases).items() if n > 1]
    if duplicated:
        raise ValueError(f"duplicate corpus case names: {duplicated}")
    return cases


def summary_markdown(results: list[Result]) -> str:
    """``docs/hostile_inputs.md``: the totals per outcome, per group, and every case."""
    totals = Counter(r.outcome for r in results)
    groups = sorted({r.case.group for r in results})
    lines = [
        "# Hostile inputs",
        "",
        "Broken, odd and malicious inputs, each run through the real command line by",
        "`tests/security/hostile_corpus.py` (the suite runs it: `tests/security/test_hostile_corpus.py`).",
        "An outcome is `security` when the input's own code ran (a marker file appeared), `data loss` when an",
        "input changed, `traceback` when an exception escaped, `unclear` when the exit status or the message",
        "(which must name the file and the fix) is not the expected one, and `ok` otherwise.",
        "Regenerate with `python tests/security/hostile_corpus.py`.",
        "",
        f"**{len(results)} cases: " + ", ".join(f"{totals.get(o, 0)} {o}" for o in OUTCOMES) + "**",
        "",
        "| group | cases | " + " | ".join(OUTCOMES) + " |",
        "|---|---|" + "---|" * len(OUTCOMES),
    ]
    for group in groups:
        mine = Counter(r.outcome for r in results if r.case.group == group)
        count = sum(mine.values())
        lines.append(f"| {group} | {count} | " + " | ".join(str(mine.get(o, 0)) for o in OUTCOMES) + " |")
    lines += ["", "| case | group | input | outcome |", "|---|---|---|---|"]
    lines += [f"| `{r.case.name}` | {r.case.group} | {r.case.what} | {r.outcome} |" for r in results]
    return "\n".join(lines) + "\n"


def main() -> int:
    import tempfile

    here = Path(__file__).resolve().parent
    sys.path[:0] = [str(here), str(here.parent)]  # the case modules, and tests/helpers.py
    with tempfile.TemporaryDirectory(prefix="hostile_") as tmp:
        workspace = Workspace.create(Path(tmp))
        results = [run_case(case, workspace) for case in all_cases()]
    for result in results:
        if result.outcome != "ok":
            print(f"--- {result.case.name}: {result.outcome}\n{result.output[-2000:]}", file=sys.stderr)
    DOCS.write_text(summary_markdown(results), encoding="utf-8")
    totals = Counter(r.outcome for r in results)
    print(f"{len(results)} cases: " + ", ".join(f"{totals.get(o, 0)} {o}" for o in OUTCOMES) + f"; wrote {DOCS}")
    return 0 if totals.get("ok", 0) == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
