"""Doctest collection of ``imaseg/`` (``./run test``): modules that subclass nnU-Net's trainer import nnunetv2 at
import time, so they are skipped where the optional nnU-Net install is absent (CI); tests/nnunet covers them."""

import importlib.util

collect_ignore = (
    []
    if importlib.util.find_spec("nnunetv2")
    else ["imaseg/nnunet/trainer.py", "imaseg/nnunet/external/imaseg_trainers.py"]
)
