"""``imaseg nnunet train|install-trainers``: robust training inside nnU-Net v2 (scoring is ``imaseg evaluate --nnunet``)."""

from __future__ import annotations

import argparse

from imaseg.config_flags import add_config_arguments

HELP = "robust training inside nnU-Net v2 (PGD-AT, TRADES, IMA), and making imaseg's trainers visible to nnUNetv2_train -tr"

_TRAIN = """Train one fold of a dataset that nnU-Net has planned and preprocessed (nnUNetv2_plan_and_preprocess) with
imaseg's PGD-AT, TRADES or IMA inside nnU-Net's own trainer: its plans, data augmentation, deep supervision,
schedule, validation and checkpoints (which also carry IMA's margins, one per case). The result is an ordinary
nnU-Net results folder, RESULTS/DatasetXXX/TRAINER__PLANS__CONFIG/fold_F, that nnUNetv2_predict runs and
`imaseg evaluate --nnunet` scores under attack. Budgets are in nnU-Net's normalised input units (z-scores for
MR). nnU-Net draws each case many times per epoch, so IMA's margins (one per case) grow only when more than half
of the case's visits survived (--ima-survival-share 0.5 here; 0 is the published one-visit rule). nnU-Net's
default schedule (1000 epochs x 250 iterations) needs a GPU; --epochs and --iterations reduce it."""

_INSTALL = """nnUNetv2_train -tr NAME and nnUNetv2_predict find trainer classes only inside nnU-Net's package or in the
folders named by the nnUNet_extTrainer environment variable. This writes a one-line module importing imaseg's
trainers (nnUNetTrainerPGDAT, nnUNetTrainerTRADES, nnUNetTrainerIMA, nnUNetTrainerIMAVoxel) into nnU-Net's
package; --print-folder instead prints a folder to put in nnUNet_extTrainer, changing nothing."""


def configure(parser: argparse.ArgumentParser) -> None:
    from imaseg.nnunet.robust_steps import RobustSettings

    actions = parser.add_subparsers(dest="nnunet_command", metavar="ACTION", required=True)
    train = actions.add_parser("train", help="train one fold robustly inside nnU-Net", description=_TRAIN)
    train.add_argument("dataset", help="dataset id or name, e.g. 27 or Dataset027_ACDC")
    train.add_argument("configuration", help="nnU-Net configuration, e.g. 2d or 3d_fullres")
    train.add_argument("fold", help="fold 0-4, or all")
    train.add_argument(
        "--preprocessed", required=True, help="nnU-Net's preprocessed folder (what nnUNet_preprocessed names)"
    )
    train.add_argument("--results", required=True, help="nnU-Net's results folder (what nnUNet_results names)")
    train.add_argument(
        "--trainer-name",
        help="name of the results folder's trainer (default: by method, e.g. nnUNetTrainerPGDAT). nnUNetv2_predict and "
        "nnUNetv2_train -c find only the named classes (after install-trainers); a folder of another name is scored by "
        "imaseg evaluate --nnunet and continued by imaseg nnunet train --resume",
    )
    train.add_argument("--plans", default="nnUNetPlans", help="plans identifier (default: nnUNetPlans)")
    train.add_argument("--epochs", type=int, help="epochs (default: nnU-Net's 1000)")
    train.add_argument("--iterations", type=int, help="training iterations per epoch (default: nnU-Net's 250)")
    train.add_argument("--val-iterations", type=int, help="validation iterations per epoch (default: nnU-Net's 50)")
    train.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    train.add_argument("--resume", action="store_true", help="continue from the fold's latest checkpoint")
    train.add_argument(
        "--no-validation", action="store_true", help="skip nnU-Net's final validation of the fold's validation cases"
    )
    add_config_arguments(train, RobustSettings, title="robust training options")
    install = actions.add_parser(
        "install-trainers", help="make imaseg's trainers visible to nnU-Net", description=_INSTALL
    )
    install.add_argument("--print-folder", action="store_true", help="print a folder for nnUNet_extTrainer instead")


def run(args: argparse.Namespace) -> int:
    from imaseg.config_flags import resolve_config
    from imaseg.nnunet.robust_steps import NNUNET_DEFAULTS, RobustSettings
    from imaseg.nnunet.training import external_trainer_folder, install_trainers, train_nnunet

    if args.nnunet_command == "install-trainers":
        print(external_trainer_folder() if args.print_folder else f"wrote {install_trainers()}")
        return 0
    settings = resolve_config(RobustSettings, NNUNET_DEFAULTS, args)
    output = train_nnunet(
        args.dataset,
        args.configuration,
        args.fold,
        settings,
        preprocessed=args.preprocessed,
        results=args.results,
        trainer_name=args.trainer_name,
        plans=args.plans,
        epochs=args.epochs,
        iterations=args.iterations,
        val_iterations=args.val_iterations,
        device=args.device,
        resume=args.resume,
        validate=not args.no_validation,
    )
    print(
        f"trained: {output}; score it with: imaseg evaluate --nnunet {output} --fold {args.fold} --data DIR --run OUT"
    )
    return 0
