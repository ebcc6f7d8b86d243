"""An evaluation's state in one object, as training has its ``Session``: what is scored, how, and where.

:func:`open_session` loads the run, picks the cases, resolves the settings once (the run's clip range
when none is given), plans the cells and opens the stored-cell folder; the steps of
:func:`imaseg.evaluation.evaluate.evaluate` then take the session instead of a dozen loose values.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from imaseg.attacks import attack_spec
from imaseg.cache.reader import CachedCase
from imaseg.config import save_config
from imaseg.evaluation.cell_store import CellStore
from imaseg.evaluation.cells import CaseSettings, Cell
from imaseg.evaluation.config import EvalConfig
from imaseg.evaluation.loader import LoadedRun, load_run
from imaseg.evaluation.plan import case_settings, fingerprint, plan_cells
from imaseg.networks import resolve_device
from imaseg.postprocess import check_postprocess
from imaseg.run import EvalDir, RunDir
from imaseg.transforms.chain import hu_per_input_unit

__all__ = ["EvaluationSession", "open_session"]


@dataclass
class EvaluationSession:
    """Everything the evaluation steps share."""

    run: RunDir
    evaluation: EvalDir
    config: EvalConfig  # resolved: the run's clip range filled in
    loaded: LoadedRun
    cases: list[str]
    cells: list[Cell]
    settings: CaseSettings
    store: CellStore
    device: torch.device
    load_case: Callable[[str], CachedCase]  # each case read once, shared by cells, checks and endpoints

    @property
    def num_classes(self) -> int:
        return self.loaded.store.num_classes

    @property
    def labels(self) -> dict[int, str]:
        return self.loaded.store.labels

    def patients(self) -> dict[str, str]:
        """Case -> patient, from the data's own grouping."""
        return {cid: self.loaded.store.patient(cid) for cid in self.cases}


def open_session(
    run_dir: str | os.PathLike[str], config: EvalConfig, *, cache: str | os.PathLike[str] | None = None
) -> EvaluationSession:
    """Load the run and its data, resolve the settings and write ``settings.yaml``.

    Raises:
        ValueError: a tag that is not a plain folder name, an empty split, (with another ``cache``) cases the
            run trained on, unless ``allow_training_cases``, or a ``postprocess`` whose package is missing.
        FileNotFoundError / DataError: see :func:`imaseg.evaluation.loader.load_run`.
    """
    check_postprocess(config.postprocess)  # a missing package is named before the run is loaded
    run = RunDir(run_dir)
    evaluation = run.evaluation(config.tag)  # refuses a tag that is not a plain folder name
    device = resolve_device(config.device)
    loaded = load_run(run.path, cache=cache, checkpoint=config.checkpoint, device=device)
    cases = _cases(loaded, config, cache)
    if cache is not None and not config.allow_training_cases:
        _refuse_training_cases(run, cases, cache)
    if config.clip_range is None and loaded.clip_range:
        config = replace(config, clip_range=loaded.clip_range)
    hu_per_unit = _hu_per_unit(loaded.store, config.attacks)
    store = CellStore(evaluation.path, fingerprint(config, loaded.checkpoint, cases, hu_per_unit))
    _save_settings(evaluation, run, config, loaded, cases, store.fingerprint)
    window = loaded.patch_size or loaded.store.manifest.config.get("spatial_size")  # patch runs: their patch
    return EvaluationSession(
        run,
        evaluation,
        config,
        loaded,
        cases,
        plan_cells(config),
        case_settings(config, loaded.store.spatial_dims, window, hu_per_unit),
        store,
        device,
        functools.cache(loaded.store.load_case),
    )


def _cases(loaded: LoadedRun, config: EvalConfig, cache) -> list[str]:
    split = config.split if cache is None else "all"
    store = loaded.store
    cases = store.case_ids(split, loaded.fold) if split != "all" else store.case_ids("all")
    if not cases:
        raise ValueError(f"split {config.split!r} of fold {loaded.fold} holds no cases")
    return cases


def _refuse_training_cases(run: RunDir, cases: list[str], cache) -> None:
    """Evaluating another cache must not score the cases the model was trained on (leakage)."""
    leaked = sorted(run.trained_cases().intersection(cases))
    if leaked:
        raise ValueError(
            f"{cache} holds {len(leaked)} case(s) this run trained on ({', '.join(leaked[:5])}"
            f"{', ...' if len(leaked) > 5 else ''}): their Dice is not a held-out number; evaluate the run's test "
            "split (omit --cache / --data), other data, or pass --allow-training-cases to do it anyway"
        )


def _save_settings(
    evaluation: EvalDir, run: RunDir, config: EvalConfig, loaded: LoadedRun, cases: list[str], key: str
) -> Path:
    return save_config(
        evaluation.settings_path,
        {
            "evaluate": config,
            "run": str(run.path.resolve()),
            "checkpoint": str(loaded.checkpoint),
            "epoch": loaded.epoch,
            "cases": cases,
            "fingerprint": key,
        },
    )


def _hu_per_unit(store, attacks) -> float | None:
    """HU per model-input unit of the cache (its CT window), for budgets in HU; ``None`` for caches of other
    intensities. Raises where an attack with a budget in HU is asked for and the scale is unknown."""
    manifest = store.manifest
    config = manifest.config if isinstance(manifest.config, dict) else {}
    scale = hu_per_input_unit(config, manifest.modality)
    in_hu = [a for a in attacks if "hu" in attack_spec(a).norms]
    if in_hu and scale is None:
        raise ValueError(
            f"{', '.join(in_hu)}: budgets in HU need inputs linear in HU, but the cache's intensity is "
            f"{config.get('intensity', 'unknown')!r} ({manifest.modality}); preprocess the CT with imaseg's window, range or "
            "none intensity (imaseg preprocess --intensity window)"
        )
    return scale
