"""The checks ``nnunet_heart.py`` runs on its config before anything runs, so that a typo in the last method or
the scoring settings does not surface after hours of training."""

from __future__ import annotations

from typing import Any

__all__ = ["budget_error", "config_error"]


def budget_error(evaluation: dict[str, Any]) -> str | None:
    """Why ``evaluate.tta_eps`` is unusable (not a non-empty list of budgets of ``evaluate.eps``), or ``None``."""
    budgets = evaluation.get("tta_eps")
    if budgets is None:
        return None
    if not isinstance(budgets, list) or not budgets or not all(isinstance(e, int | float) for e in budgets):
        return f"`evaluate.tta_eps` must be a non-empty list of budgets, e.g. [0, 5], got {budgets!r}"
    extra = sorted({f"{e:g}" for e in budgets} - {f"{e:g}" for e in evaluation["eps"]}, key=float)
    if extra:
        grid = ", ".join(f"{e:g}" for e in evaluation["eps"])
        return f"`evaluate.tta_eps` must be budgets of `evaluate.eps` [{grid}], got {', '.join(extra)} outside it"
    return None


REQUIRED = {"dataset_id": int, "configuration": str, "split": dict, "epochs": int, "iterations": int,
            "val_iterations": int, "methods": dict, "evaluate": dict}  # fmt: skip
EVALUATE = {"eps": list, "steps": int, "tta": list}
KINDS = {int: "a whole number", str: "a name", dict: "a mapping", list: "a list"}


def _shape_error(config: dict[str, Any]) -> str | None:
    """A missing or mistyped setting of the pipeline or its scoring, or ``None``."""
    for part, required in (("", REQUIRED), ("evaluate.", EVALUATE)):
        section = config if not part else config.get("evaluate", {})
        for key, kind in required.items():
            if key not in section:
                return f"`{part}{key}` is missing ({KINDS[kind]})"
            if not isinstance(section[key], kind) or isinstance(section[key], bool):
                return f"`{part}{key}` must be {KINDS[kind]}, got {section[key]!r}"
    evaluation = config["evaluate"]
    if not all(isinstance(t, bool) for t in evaluation["tta"]):
        return f"`evaluate.tta` must list true / false, got {evaluation['tta']!r}"
    if not evaluation["eps"] or not all(
        isinstance(e, int | float) and not isinstance(e, bool) for e in evaluation["eps"]
    ):
        return f"`evaluate.eps` must be a non-empty list of budgets, e.g. [0, 2.5, 5], got {evaluation['eps']!r}"
    if evaluation["steps"] < 1:
        return f"`evaluate.steps` must be >= 1, got {evaluation['steps']}"
    attacks = evaluation.get("attacks") or []
    if not isinstance(attacks, list):
        return f"`evaluate.attacks` must be a list of attack names ([] for the default ensemble), got {attacks!r}"
    from imaseg.attacks import parse_attack_name

    for attack in attacks:
        try:
            parse_attack_name(attack)
        except ValueError as error:
            return f"evaluate.attacks: {error}"
    return None


def config_error(config: dict[str, Any]) -> str | None:
    """What is wrong with a pipeline config, or ``None``: checked before anything runs, so that a typo in the
    last method or the scoring settings does not surface after hours of training."""
    if (problem := _shape_error(config)) is not None:
        return problem
    from imaseg.nnunet.robust_steps import RobustSettings

    for name, values in config["methods"].items():
        if not isinstance(values, dict) or "method" not in values:
            return f"`methods.{name}` must be a mapping with a `method`, e.g. {{method: pgd-at}}, got {values!r}"
        try:
            RobustSettings.from_mapping(values)
        except (TypeError, ValueError) as error:
            return f"methods.{name}: {error}"
    return budget_error(config["evaluate"])
