"""Loading the pipeline scripts as modules, and tiny pipeline configs."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import sys
from pathlib import Path

import pytest
import yaml
from helpers import REPO, TINY_CHANNELS

PIPELINES = REPO / "pipelines"


def load_pipeline(name: str):
    """Import ``pipelines/NAME.py`` from its file (it puts ``pipelines/`` on ``sys.path`` for ``chain``)."""
    path = PIPELINES / f"{name}.py"
    if not path.is_file():
        pytest.skip(f"{path} does not exist")
    module_name = f"imaseg_pipeline_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def tiny_demo_config(path: Path, **changes) -> Path:
    """``pipelines/configs/demo.yaml`` shrunk to seconds on a CPU, written to ``path``.

    4 patients (8 volumes) of 32 x 32 x 4 in 4 patient-grouped folds (fold 0: 2 train, 1 val, 1 test
    patient), a 3-level UNet, STD 3 epochs, IMA 1 epoch of 2 inner steps, evaluation at eps 0 and 0.5 with
    2 PGD steps. ``changes`` are ``"section.key": value`` overrides of the ``--quick`` result, e.g.
    ``{"methods.std.epochs": 4}`` (applied to both the full and the quick section).
    """
    config = yaml.safe_load((PIPELINES / "configs" / "demo.yaml").read_text())
    config["data"].update(patients=4, shape=[32, 32, 4])
    config["preprocess"].update(spatial_size=[32, 32], folds=4)
    config["train"].update(channels=TINY_CHANNELS, res_units=0, batch_size=8, lr=0.01, val_steps=2)
    config["compare"] = ["std", "ima"]  # the machinery, not the recipe: two methods are enough
    config["methods"]["std"]["epochs"] = 3
    config["methods"]["ima"].update(epochs=1, ima_steps=2)
    config["evaluate"].update(
        attacks=["pgd-l2", "noise-l2", "worst-l2"], eps=[0.0, 0.5], steps=2, steps_check=False, overlays=1
    )
    config["quick"] = {
        "methods": {"std": {"epochs": 3}, "ima": {"epochs": 1, "ima_steps": 2}},
        "evaluate": {
            "attacks": ["pgd-l2", "noise-l2", "worst-l2"],
            "eps": [0.0, 0.5],
            "steps": 2,
            "steps_check": False,
        },
    }
    for dotted, value in changes.items():
        *parents, key = dotted.split(".")
        for section in (config, config["quick"]):
            node = section
            for parent in parents:
                node = node.setdefault(parent, {})
            node[key] = value
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@contextlib.contextmanager
def restored_logging():
    """The pipelines' ``main`` points the root logger at the (captured, later closed) stderr; undo that after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
