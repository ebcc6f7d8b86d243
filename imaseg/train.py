"""``python -m imaseg.train ARGS`` = ``imaseg train ARGS`` (the form ``torchrun`` launches)."""

import sys

from imaseg.cli import main


def _main() -> int:
    return main(["train", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(_main())
