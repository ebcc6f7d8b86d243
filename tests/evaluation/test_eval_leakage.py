"""Leakage guards: scoring the cases a model trained on, or fine-tuning from a model of another split."""

from __future__ import annotations

import pytest
from eval_helpers import small_config
from helpers import tiny_train_config

from imaseg.evaluation import evaluate
from imaseg.training import train


def test_evaluating_the_training_cache_is_refused(copy_run, tiny_cache):
    with pytest.raises(ValueError, match=r"holds \d+ case\(s\) this run trained on .*--allow-training-cases"):
        evaluate(copy_run(), small_config(overlays=0), cache=tiny_cache, progress=False)


def test_evaluating_the_training_cache_on_purpose_works(copy_run, tiny_cache):
    summary = evaluate(
        copy_run(),
        small_config(attacks=["noise-l2"], eps=[0.0], overlays=0, allow_training_cases=True),
        cache=tiny_cache,
        progress=False,
    )
    assert len(summary["cases"]) == 10, "every case of the cache, the training ones included"


def test_init_from_another_fold_is_refused_unless_allowed(tiny_run, tiny_cache, tmp_path):
    init = str(tiny_run / "checkpoints" / "last.pt")
    with pytest.raises(ValueError, match=r"was trained on fold 0 \(this run: 1\).*--allow-foreign-init"):
        train(tiny_cache, tmp_path / "a", tiny_train_config(epochs=1, fold=1, init=init), progress=False)
    summary = train(
        tiny_cache,
        tmp_path / "b",
        tiny_train_config(epochs=1, fold=1, init=init, allow_foreign_init=True),
        progress=False,
    )
    assert summary["epochs_run"] == 1


def test_init_from_the_same_cache_and_fold_is_fine(tiny_run, tiny_cache, tmp_path):
    init = str(tiny_run / "checkpoints" / "last.pt")
    assert train(tiny_cache, tmp_path / "c", tiny_train_config(epochs=1, init=init), progress=False)["epochs_run"] == 1
