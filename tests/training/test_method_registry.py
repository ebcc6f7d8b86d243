"""The method registry: names and order, errors, and a new method as one registration that the trainer,
the run folder and the report pick up without further edits."""

from __future__ import annotations

import pytest
import yaml
from helpers import tiny_train_config

from imaseg.functional import dice_ce_per_sample
from imaseg.report.collect import collect_run
from imaseg.training import Method, method_names, register_method, train
from imaseg.training.methods import METHODS, method_class


def test_builtin_methods_are_listed_baselines_first():
    assert method_names()[:4] == ("std", "pgd-at", "trades", "ima")


@pytest.mark.parametrize(
    ("name", "adversarial", "run_files"),
    [("std", False, ()), ("pgd-at", True, ()), ("trades", True, ()), ("ima", True, ("margins.json",))],
)
def test_classes_declare_what_the_trainer_needs(name, adversarial, run_files):
    cls = method_class(name)
    assert (cls.name, cls.adversarial, cls.run_files) == (name, adversarial, run_files)


@pytest.mark.parametrize(
    ("overrides", "label", "settings"),
    [
        ({"method": "std"}, "STD", ""),
        ({"method": "pgd-at", "eps": 1.0}, "PGD-AT (eps 1.0)", "eps 1.0 l2, 2 steps"),
        ({"method": "trades", "eps": 0.5, "trades_beta": 3.0}, "TRADES (eps 0.5)", "eps 0.5, beta 3.0"),
        ({"method": "ima", "ima_margin": "sample"}, "IMA (sample)", "delta 0.25, eps_max 1.0, tau 0.6, 2 steps"),
    ],
)
def test_labels_and_settings_text_come_from_the_config(overrides, label, settings):
    config = tiny_train_config(**overrides)
    cls = method_class(config.method)
    assert (cls.label(config), cls.settings_text(config)) == (label, settings)


def test_unknown_method_names_the_choices():
    with pytest.raises(ValueError, match="unknown `method` 'magic'"):
        method_class("magic")


def test_a_new_method_is_one_registration(tiny_cache, tmp_path):
    @register_method("half-std")
    class HalfStandard(Method):
        """Standard training at half the loss: a method the trainer has never heard of."""

        order = 90

        @classmethod
        def label(cls, config):
            return "HALF"

        @classmethod
        def settings_text(cls, config):
            return f"lr {config.lr}"

        def loss(self, model, network, images, labels, index, generator):
            return 0.5 * dice_ce_per_sample(model(images).float(), labels).mean(), {"half": 0.5}

    try:
        assert "half-std" in method_names()
        run = tmp_path / "run"
        summary = train(tiny_cache, run, tiny_train_config(method="half-std", epochs=1), progress=False)
        assert summary["epochs_run"] == 1 and summary["last"]["half"] == 0.5
        saved = yaml.safe_load((run / "config.yaml").read_text())
        assert saved["method"] == {"name": "half-std", "label": "HALF", "settings": f"lr {saved['train']['lr']}"}
        data = collect_run(run)
        assert (data.method, data.method_settings) == ("HALF", f"lr {saved['train']['lr']}")
    finally:
        METHODS.pop("half-std", None)
