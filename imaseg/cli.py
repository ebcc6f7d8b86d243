"""``imaseg``: the command line. ``imaseg SUBCOMMAND --help`` explains each step.

imaseg demo-data OUT                         write the synthetic demo data (MSD layout)
imaseg check DATA_DIR                        integrity check with a per-case table
imaseg preprocess --data DIR --out CACHE     NIfTI -> cache of model inputs + split manifest
imaseg train --cache CACHE --out RUN         standard, adversarial or IMA training
imaseg evaluate --run RUN                    Dice (and HD95) under attack at a grid of budgets
imaseg predict RUN --input PATH --output DIR  segment new images (source geometry, volumes in mL)
imaseg export RUN --bundle OUT               a MONAI bundle with the run's robustness card
imaseg report RUN [RUN ...]                  HTML + Markdown robustness report
imaseg study run|status|report STUDY.yaml    a declared study: its cells resumably, progress, or its report
imaseg nnunet train DATASET CONFIG FOLD      robust training inside nnU-Net v2 (score: evaluate --nnunet)
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from imaseg import __version__
from imaseg.config_flags import HelpFormatter
from imaseg.utils.atomic import OutputError, blocking_file

__all__ = ["SUBCOMMANDS", "build_parser", "main", "os_error_message", "run_guarded"]

SUBCOMMANDS = {
    "demo-data": "imaseg.commands.demo_data",
    "check": "imaseg.commands.check",
    "preprocess": "imaseg.commands.preprocess",
    "train": "imaseg.commands.train",
    "evaluate": "imaseg.commands.evaluate",
    "predict": "imaseg.commands.predict",
    "export": "imaseg.commands.export",
    "report": "imaseg.commands.report",
    "study": "imaseg.commands.study",
    "nnunet": "imaseg.commands.nnunet",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imaseg",
        description=__doc__.split("\n\n", 1)[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"imaseg {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v: debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    subparsers = parser.add_subparsers(dest="command", metavar="SUBCOMMAND")
    for name, module_name in SUBCOMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            continue
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP, formatter_class=HelpFormatter)
        module.configure(sub)
        sub.set_defaults(handler=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 problems found or bad input, 2 usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    from imaseg.utils.logs import setup_logging

    setup_logging(-1 if args.quiet else args.verbose)
    return run_guarded(f"imaseg {args.command}", args.handler, args)


def run_guarded(prog: str, function: Callable[..., int | None], *args: Any) -> int:
    """``function(*args)`` as a command runs it: bad input and failed file operations become one line
    ``PROG: error: ...`` on stderr and exit status 1, an interrupt says how to resume (130); no traceback.
    The pipelines' scripts run their ``main`` through it too."""
    from imaseg.data.errors import DataError

    try:
        return int(function(*args) or 0)
    except (DataError, ValueError) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"{prog}: error: {os_error_message(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


_WRITE_ERRORS = {errno.EACCES, errno.EROFS, errno.ENOSPC, errno.EISDIR, errno.ENOTDIR, errno.EEXIST, errno.EDQUOT}


def os_error_message(error: OSError) -> str:
    """One line for a failed file operation: our own messages as they are, the OS's as 'cannot write X: reason'."""
    if isinstance(error, OutputError) or error.errno is None or error.filename is None:
        return str(error)  # ours already names the file meant
    verb = "write" if error.errno in _WRITE_ERRORS and not _unreadable(error) else "read"
    blocker = blocking_file(error.filename)
    reason = f"{blocker} is a file, not a folder" if blocker is not None else str(error.strerror)
    if blocker is None and error.errno in (errno.EACCES, errno.EPERM):
        reason += f"; give your user access to it (see `ls -ld {error.filename}`) or choose another folder"
    return f"cannot {verb} {error.filename}: {reason}"


def _unreadable(error: OSError) -> bool:
    """A permission error on something that exists and this user may not read: a read failed, not a write."""
    if error.errno not in (errno.EACCES, errno.EPERM):
        return False
    try:
        return os.path.exists(error.filename) and not os.access(error.filename, os.R_OK)
    except (OSError, TypeError, ValueError):
        return False


if __name__ == "__main__":
    sys.exit(main())
