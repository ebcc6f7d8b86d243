"""``imaseg.score``: Dice under attack for any segmentation model, in one call, as ``imaseg evaluate`` gives it.

(This module is ``imaseg.scoring``: an ``imaseg/score.py`` would replace the function ``imaseg.score`` with
itself once imported.)

The model is an ``nn.Module`` in memory, a TorchScript file, a MONAI bundle folder, or a run folder written
by ``imaseg train``; the data are a labelled NIfTI folder (MSD, nnU-Net or plain ``imagesTr`` /
``labelsTr``), preprocessed as the model expects: a run's own preprocessing, an ``imaseg export`` bundle's
record, else ``preprocess`` (``imaseg preprocess`` settings). A model is scored exactly as
``imaseg evaluate --model PATH --data DIR --run OUT`` scores it (an in-memory module is saved as TorchScript
into ``OUT`` first); a run as ``imaseg evaluate --run RUN --data DIR``. The result is the typed
:class:`imaseg.summary.Summary`: Dice per case and class, clean and per attack and budget, intervals over
patients, the sanity checks.

>>> import imaseg  # doctest: +SKIP
>>> summary = imaseg.score(network, "data/Task01", preprocess={"spatial_size": [128, 128]}, eps=[0, 0.5])  # doctest: +SKIP
>>> summary.clean_global, summary.curve("worst-l2").global_curve()  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from imaseg.config import config_from_dict, load_yaml, to_dict
from imaseg.evaluation.config import EvalConfig
from imaseg.run import RunDir
from imaseg.summary import Summary
from imaseg.transforms.chain import PreprocessConfig

__all__ = ["score"]

logger = logging.getLogger(__name__)

Preprocess = PreprocessConfig | Mapping[str, Any] | str | os.PathLike[str] | None


def _preprocess_config(preprocess: Preprocess) -> PreprocessConfig | None:
    """``PreprocessConfig``, a mapping of its fields, or a YAML file of them (its ``preprocess`` section)."""
    if preprocess is None or isinstance(preprocess, PreprocessConfig):
        return preprocess
    data = dict(preprocess) if isinstance(preprocess, Mapping) else load_yaml(preprocess)
    return config_from_dict(PreprocessConfig, data.get("preprocess", data), source="preprocess")


def _eval_config(config: EvalConfig | None, attacks, eps, settings: dict[str, Any]) -> EvalConfig:
    base = to_dict(config or EvalConfig())
    overrides = {**settings, **({"attacks": list(attacks)} if attacks is not None else {})}
    if eps is not None:
        overrides["eps"] = [float(e) for e in eps]
    return config_from_dict(EvalConfig, {**base, **overrides}, source="score")


@contextlib.contextmanager
def _output(out: str | os.PathLike[str] | None) -> Iterator[Path]:
    if out is not None:
        yield Path(out)
        return
    with tempfile.TemporaryDirectory(prefix="imaseg-score-") as folder:
        yield Path(folder) / "run"


def _torchscript(module: nn.Module, path: Path) -> Path:
    """Save the module as TorchScript, what ``imaseg evaluate --model`` loads."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        scripted = torch.jit.script(module)
    except Exception as error:  # noqa: BLE001 - scripting raises many types; all mean the same to the caller
        raise TypeError(
            f"the module does not script ({str(error).splitlines()[0]}); save it yourself with torch.jit.trace on an "
            "input like the preprocessed data, and score that file"
        ) from None
    torch.jit.save(scripted, str(path))
    return path


def _preprocess_like(run: RunDir, data: str | os.PathLike[str], out: Path) -> Path:
    """The data preprocessed as the run's own ``preprocessing.json`` says, all cases in one fold."""
    from imaseg.cache.run_record import read_preprocessing_record
    from imaseg.cache.writer import preprocess_dataset

    record = read_preprocessing_record(run.path)
    preprocess_dataset(data, out, replace(record.preprocess_config(), folds=1, val_groups=0), progress=False)
    return out


def score(
    model: nn.Module | str | os.PathLike[str],
    data: str | os.PathLike[str],
    *,
    preprocess: Preprocess = None,
    attacks: Sequence[str] | None = None,
    eps: Sequence[float] | None = None,
    out: str | os.PathLike[str] | None = None,
    config: EvalConfig | None = None,
    progress: bool = False,
    fold: str | int | None = None,
    tta: bool = True,
    **settings: Any,
) -> Summary:
    """Score ``model`` on the labelled data in ``data``, clean and under attack (see the module docstring).

    Args:
        model: an ``nn.Module`` (logits ``(B, K, *spatial)``), a TorchScript file, a MONAI bundle folder, a run
            folder, or an nnU-Net v2 results folder (``DatasetXXX/TRAINER__PLANS__CONFIG``: its own preprocessing,
            sliding window and mirroring, as ``imaseg evaluate --nnunet``; needs nnunetv2, README "nnU-Net").
        data: a labelled NIfTI folder.
        preprocess: how to prepare the data for a module, TorchScript or foreign bundle:
            :class:`~imaseg.transforms.chain.PreprocessConfig`, a mapping of its fields, or a YAML file
            (default: ``imaseg preprocess``'s defaults). A run and an ``imaseg export`` bundle bring their own.
        attacks: attack names (default: ``EvalConfig``'s ensemble).
        eps: L2 budgets in model-input units (default: ``EvalConfig``'s grid).
        out: the results folder (``out/eval/TAG/summary.json``, ``results.csv``...; a module's TorchScript in
            ``out/model.ts``); default: a temporary folder, removed once the summary is read. A run keeps
            its evaluations in ``RUN/eval/TAG``: ``out`` must then be ``None``.
        config: the evaluation settings to start from; ``attacks``, ``eps`` and ``settings`` replace fields.
        progress: progress bars.
        fold: an nnU-Net model's fold (default: its only fold, else 0); ``checkpoint="best"`` scores
            ``checkpoint_best.pth`` instead of ``checkpoint_final.pth``.
        tta: an nnU-Net model's test-time mirroring, inside the forward the attacks differentiate.
        **settings: any :class:`~imaseg.evaluation.EvalConfig` field, e.g. ``steps=10``, ``clip_range=(0, 1)``.

    Raises:
        ValueError: unknown settings, ``preprocess`` or ``out`` given for a run.
        TypeError: a module that does not script.
        DataError: unreadable data or model files, a model whose output does not fit the data.
    """
    from imaseg.evaluation.evaluate import evaluate
    from imaseg.evaluation.external import prepare_external_run

    evaluation_config = _eval_config(config, attacks, eps, settings)
    pre = _preprocess_config(preprocess)
    if not isinstance(model, nn.Module) and _is_nnunet(model):
        if pre is not None:
            raise ValueError("`preprocess` is for models imaseg prepares data for: an nnU-Net model brings its own")
        with _output(out) as folder:
            return _score_nnunet(model, data, folder, evaluation_config, fold, tta, progress)
    if not isinstance(model, nn.Module) and RunDir(model).is_run():
        if pre is not None or out is not None:
            raise ValueError(
                "`preprocess` and `out` are for models: a run brings its own preprocessing and keeps its "
                "evaluations in RUN/eval/TAG (choose the folder with tag=...)"
            )
        run = RunDir(model)
    else:
        run = None
    with _output(out) as folder:
        if run is None:
            path = _torchscript(model, folder / "model.ts") if isinstance(model, nn.Module) else Path(model)
            run = RunDir(prepare_external_run(path, folder, pre, evaluation_config.clip_range))
        cache = _preprocess_like(run, data, run.evaluation(evaluation_config.tag).cache_dir)
        summary = evaluate(run.path, evaluation_config, cache=cache, progress=progress)
        return Summary.from_json(summary)


def _is_nnunet(model: str | os.PathLike[str]) -> bool:
    from imaseg.nnunet.results import is_results_folder

    return is_results_folder(model)


def _score_nnunet(
    results: str | os.PathLike[str],
    data: str | os.PathLike[str],
    folder: Path,
    config: EvalConfig,
    fold: str | int | None,
    tta: bool,
    progress: bool,
) -> Summary:
    """``imaseg evaluate --nnunet RESULTS --data DATA --run FOLDER`` (with nnU-Net's reference check)."""
    from imaseg.evaluation.evaluate import evaluate
    from imaseg.nnunet.reference import check_against_nnunet
    from imaseg.nnunet.run import prepare_nnunet_run, preprocess_for_run

    checkpoint = "final" if config.checkpoint == "last" else config.checkpoint
    run = RunDir(
        prepare_nnunet_run(results, folder, fold=fold, checkpoint=checkpoint, tta=tta, clip_range=config.clip_range)
    )
    cache = preprocess_for_run(run.path, data, run.evaluation(config.tag).cache_dir, progress=progress)
    summary = evaluate(run.path, config, cache=cache, progress=progress)
    check_against_nnunet(run.path, config, cache)
    return Summary.from_json(summary)
