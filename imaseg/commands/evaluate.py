"""``imaseg evaluate --run RUN``: Dice / HD95 per case and class, clean and under attack, at a budget grid."""

from __future__ import annotations

import argparse

from imaseg.commands.options import (
    add_memory_budget,
    add_outside_paths,
    add_trust_bundle_code,
    add_trust_factory,
    apply_options,
)
from imaseg.config import config_part
from imaseg.config_flags import add_config_arguments
from imaseg.evaluation.config import EvalConfig

HELP = "evaluate a trained run under attack: Dice/HD95 per case and class at a grid of budgets (resumable)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--run",
        required=True,
        help="run folder written by `imaseg train`; with --model, the folder to create for that model's results",
    )
    parser.add_argument(
        "--model",
        help="score a model imaseg did not train: a TorchScript file or a MONAI bundle folder (needs --data); "
        "a bundle from `imaseg export` brings its preprocessing, others take --preprocess-config",
    )
    parser.add_argument(
        "--preprocess-config",
        help="with --model: YAML of `imaseg preprocess` settings (intensity, spatial_size, mode...) for the data",
    )
    parser.add_argument(
        "--nnunet",
        metavar="RESULTS_FOLDER",
        help="score one fold of a trained nnU-Net v2 model: its results folder DatasetXXX/TRAINER__PLANS__CONFIG "
        "(needs --data, and nnunetv2: README, 'nnU-Net'); the data are preprocessed by nnU-Net, attacks run in its "
        "preprocessed space through its sliding window; --checkpoint final (default) or best",
    )
    parser.add_argument("--fold", help="with --nnunet: the fold to score (0-4 or all; default: the only fold, else 0)")
    parser.add_argument(
        "--tta",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="with --nnunet: nnU-Net's test-time mirroring in the forward the attacks differentiate, so their "
        "gradients average over the mirrored passes (default: on)",
    )
    parser.add_argument("--cache", help="evaluate on this cache instead of the run's (all its cases)")
    parser.add_argument("--data", help="evaluate on this NIfTI folder, preprocessed like the run's cache (all cases)")
    parser.add_argument("--config", help="YAML file; its 'evaluate' section (or the whole file) sets the options")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit 3 when a sanity check fails (forward determinism, noise vs attack, Dice falling with eps, "
        "2x steps); without it failures are warnings in the log, summary.json and report",
    )
    add_trust_bundle_code(parser)
    add_trust_factory(parser)
    add_outside_paths(parser)
    add_memory_budget(parser)
    add_config_arguments(parser, EvalConfig, title="evaluation options")


def run(args: argparse.Namespace) -> int:
    import logging

    from imaseg.config import load_yaml
    from imaseg.config_flags import resolve_config
    from imaseg.evaluation.evaluate import evaluate
    from imaseg.postprocess import check_postprocess
    from imaseg.run import RunDir
    from imaseg.summary import Summary
    from imaseg.utils.paths import refuse_output_in_input

    apply_options(args)
    data = load_yaml(args.config)
    config = resolve_config(
        EvalConfig, config_part(data, "evaluate", args.config), args, source=str(args.config or "defaults")
    )
    check_postprocess(config.postprocess)  # before --model / --data do any work
    inputs = {"--data": args.data, "--model": args.model, "--nnunet": args.nnunet}
    refuse_output_in_input(args.run, inputs, output_flag="--run")
    cache = args.cache
    _check_nnunet_flags(args)
    if args.model:
        _prepare_model_run(args, config)
    if args.nnunet:
        _prepare_nnunet_run(args, config)
    if args.trust_bundle_code:
        _trust_bundle(args)
    nnunet = _nnunet_settings(args.run)
    if args.data:
        evaluation = RunDir(args.run).evaluation(config.tag)
        if nnunet is not None:
            cache = _preprocess_for_nnunet(args, evaluation.cache_dir)
        else:
            cache = _preprocess_like_run(args.run, args.data, evaluation.cache_dir, args.allow_outside_paths)
    summary = evaluate(args.run, config, cache=cache, progress=not args.no_progress)
    if nnunet is not None and cache is not None:
        from imaseg.nnunet.reference import check_against_nnunet

        check_against_nnunet(args.run, config, cache)
    logging.getLogger("imaseg").info("results: %s", RunDir(args.run).evaluation(config.tag).summary_path)
    failed = Summary.from_json(summary).failed_checks()
    if failed and args.strict:
        logging.getLogger("imaseg").error("sanity checks failed: %s (--strict)", ", ".join(failed))
        return 3
    return 0


def _prepare_model_run(args: argparse.Namespace, config: EvalConfig) -> None:
    from imaseg.config import config_from_dict, load_yaml
    from imaseg.evaluation.external import prepare_external_run
    from imaseg.transforms.chain import PreprocessConfig

    if not args.data:
        raise ValueError("--model needs --data DIR: a model imaseg did not train has no cache of its own")
    settings = load_yaml(args.preprocess_config)
    part = config_part(settings, "preprocess", args.preprocess_config)
    preprocess = config_from_dict(PreprocessConfig, part, source=str(args.preprocess_config)) if settings else None
    prepare_external_run(args.model, args.run, preprocess, config.clip_range)


def _check_nnunet_flags(args: argparse.Namespace) -> None:
    if args.nnunet and args.model:
        raise ValueError("--nnunet and --model each name the model to score: give one of them")
    if args.nnunet and not args.data:
        raise ValueError("--nnunet needs --data DIR: the labelled cases to preprocess with nnU-Net and score")
    if not args.nnunet and (args.fold is not None or args.tta is not None):
        raise ValueError("--fold and --tta/--no-tta choose what --nnunet RESULTS_FOLDER scores: give --nnunet too")


def _prepare_nnunet_run(args: argparse.Namespace, config: EvalConfig) -> None:
    from imaseg.nnunet.run import prepare_nnunet_run

    checkpoint = "final" if config.checkpoint == "last" else config.checkpoint
    tta = True if args.tta is None else bool(args.tta)
    prepare_nnunet_run(
        args.nnunet, args.run, fold=args.fold, checkpoint=checkpoint, tta=tta, clip_range=config.clip_range
    )


def _nnunet_settings(run: str) -> dict | None:
    from imaseg.nnunet.run import nnunet_settings

    return nnunet_settings(run)


def _preprocess_for_nnunet(args: argparse.Namespace, out) -> str:
    from imaseg.nnunet.run import preprocess_for_run

    progress = not args.no_progress
    return preprocess_for_run(args.run, args.data, out, progress=progress, allow_outside_paths=args.allow_outside_paths)


def _trust_bundle(args: argparse.Namespace) -> None:
    from imaseg.foreign import trust_bundle_code
    from imaseg.run import RunDir

    model = args.model or RunDir(args.run).train_settings().get("model")
    if not model:
        raise ValueError(
            f"--trust-bundle-code: {args.run} scores no bundle (it is a run imaseg trained); give the bundle with --model"
        )
    trust_bundle_code(model)


def _preprocess_like_run(run: str, data: str, out, allow_outside_paths: bool = False) -> str:
    from dataclasses import replace

    from imaseg.cache.run_record import read_preprocessing_record
    from imaseg.cache.writer import preprocess_dataset

    record = read_preprocessing_record(run)  # the run's own copy: the training cache may be gone
    config = replace(record.preprocess_config(), folds=1, val_groups=0)
    preprocess_dataset(data, out, config, allow_outside_paths=allow_outside_paths)
    return str(out)
