"""Is imaseg's default attack converged? Every attack's per-slice result against a reference worst case.

    pip install cospgd==0.1.3 && pip install --no-deps adv-lib==0.2.8   # optional: the public attacks
    python benchmarks/attack_reference.py --split val     # the choice: fold 1's validation patients
    python benchmarks/attack_reference.py --split test    # the confirmation: fold 1's test patients
    python benchmarks/attack_reference_table.py           # reference, candidates, targets, tables

Models: the study ``benchmarks/studies/models_acdc_fold1.yaml`` (ACDC fold 1 at the IMA development study's
recipe: STD, PGD-AT, TRADES, IMA), trained first where they are missing. Slices: ``--slices`` evenly spaced
slices of the split's patients. Budgets: L2 0.5, 1, 1.5 and Linf 2/255, 4/255 in [0, 1] intensities.

Every attack runs on the same slices with the evaluation's seeds (seed = batch start), and the per-slice
``[tp, fp, fn]`` of its prediction is kept, so any worst case over a subset of attacks (a cheaper default,
the reference) is computed afterwards without attacking again:

- ``default/*``: the members of imaseg's default ensemble at 20 steps (APGD-Dice, APGD-DLR, CosPGD, SegPGD,
  noise); ``previous/pgd``: the default before issue 12 (PGD on CE and on soft Dice, 2 x 20 steps), the cost
  baseline; ``candidate/*``: APGD at 20 steps on the class-balanced CE, the masked CE and Jensen-Shannon, and
  APGD on soft Dice, DLR and balanced CE at 40 steps (``@40``), possible members of a new default (added to cells
  written before they joined the suite); ``chosen/apgd-cascade``: the candidate chosen on the validation slices, as
  imaseg implements it (at most 20 + 40 + 40 steps per slice);
- ``reference/apgd-*``: APGD at 100 steps on six losses (soft Dice, DLR, CE, class-balanced CE, masked CE,
  Jensen-Shannon: the losses of SEA's segmentation ensemble and more), 7.5x the default's gradient steps;
- ``public/*``: SegPGD and CosPGD as the ``cospgd`` package runs them and DLR-loss PGD (``adv-lib``), where
  installed;
- ``gradient-free/square``: random search, 500 queries; ``transfer/*``: APGD-Dice and APGD-DLR computed on
  the STD model and scored on the robust model (a gradient-masking check).

Resumable: each finished (model, budget) cell is written at once to
``benchmarks/results/attack_reference_SPLIT.json``; rerun to continue (``--max-minutes`` bounds a chunk).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from imaseg.attacks import APGD, AttackSettings, create_attack
from imaseg.cache.reader import CaseStore
from imaseg.metrics.dice import confusion_counts
from imaseg.metrics.worst import mean_global_dice
from imaseg.run_model import load_run_model
from imaseg.study.cells import cache_folder, expand_cells
from imaseg.study.declaration import load_study
from imaseg.study.runner import run_study
from imaseg.utils.atomic import atomic_write_json
from imaseg.utils.logs import setup_logging

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "benchmarks" / "studies" / "models_acdc_fold1.yaml"
RESULTS = ROOT / "benchmarks" / "results"
FOLD = 1
MODELS = {"STD": "std", "PGD-AT": "pgd-at eps 1", "TRADES": "trades eps 1", "IMA": "ima voxel eps_max 2"}
BUDGETS = [("l2", 0.5), ("l2", 1.0), ("l2", 1.5), ("linf", 2 / 255), ("linf", 4 / 255)]
CLIP = (0.0, 1.0)
BATCH = 16
STEPS = 20
REFERENCE_STEPS = 100
REFERENCE_LOSSES = ("dice", "dlr", "ce", "balanced-ce", "masked-ce", "js")
BENCHMARKED_DEFAULT = ("apgd-dice", "apgd-dlr", "cospgd", "segpgd", "noise")  # the default this benchmark judged
CANDIDATE_KINDS = ("apgd-balanced-ce", "apgd-masked-ce", "apgd-js")  # possible members of a new default, 20 steps
LONGER_KINDS = ("apgd-dice", "apgd-dlr", "apgd-balanced-ce")  # the same at 40 steps: fewer members, more steps each
LONGER_STEPS = 40
SQUARE_STEPS = 100  # x 5 queries per step: 500 forward passes
TRANSFER = ("apgd-dice", "apgd-dlr")

Craft = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, str, float, int], torch.Tensor]
"""``craft(model, x, y, norm, eps, seed) -> adversarial x``."""


def _registered(kind: str, steps: int = STEPS, losses: tuple[str, ...] = ("ce", "dice")) -> Craft:
    def craft(model, x, y, norm, eps, seed):
        settings = AttackSettings(steps=steps, losses=losses, clip_range=CLIP, seed=seed)
        return create_attack(f"{kind}-{norm}", model, eps=eps, settings=settings)(x, y)

    return craft


def _apgd(loss: str) -> Craft:
    def craft(model, x, y, norm, eps, seed):
        return APGD(model, eps=eps, norm=norm, steps=REFERENCE_STEPS, loss=loss, clip_range=CLIP, seed=seed)(x, y)

    return craft


def _public() -> dict[str, tuple[Craft, int]]:
    """The public packages' attacks (``benchmarks/attack_strength.py`` runs them), where installed."""
    if importlib.util.find_spec("cospgd") is None or importlib.util.find_spec("adv_lib") is None:
        logging.getLogger(__name__).warning("cospgd / adv-lib not installed: the reference has no public attacks")
        return {}
    import attack_strength as public  # benchmarks/ is on sys.path when run as a script

    def wrap(loss) -> Craft:
        return lambda model, x, y, norm, eps, seed: public._public(loss, model, x, y, norm, eps, STEPS, seed)

    return {f"public/{name}": (wrap(loss), STEPS) for name, loss in public.PUBLIC.items()}


def attack_suite() -> dict[str, tuple[Craft, int]]:
    """Every attack of the benchmark: name -> (craft, gradient steps per slice batch)."""
    suite: dict[str, tuple[Craft, int]] = {
        f"default/{kind}": (_registered(kind), 0 if kind == "noise" else STEPS) for kind in BENCHMARKED_DEFAULT
    }
    suite["previous/pgd"] = (_registered("pgd"), 2 * STEPS)
    suite.update({f"candidate/{kind}": (_registered(kind), STEPS) for kind in CANDIDATE_KINDS})
    suite.update(
        {f"candidate/{kind}@{LONGER_STEPS}": (_registered(kind, LONGER_STEPS), LONGER_STEPS) for kind in LONGER_KINDS}
    )
    suite["chosen/apgd-cascade"] = (_registered("apgd-cascade"), 5 * STEPS)  # the choice, as imaseg runs it
    suite.update({f"reference/apgd-{loss}": (_apgd(loss), REFERENCE_STEPS) for loss in REFERENCE_LOSSES})
    suite.update(_public())
    suite["gradient-free/square"] = (_registered("square", steps=SQUARE_STEPS), 0)
    return suite


def _counts(model, adversarial: torch.Tensor, y: torch.Tensor, classes: int) -> np.ndarray:
    """``(S, C-1, 3)`` per slice and foreground class ``[tp, fp, fn]``."""
    with torch.no_grad():
        prediction = model(adversarial).argmax(1)
    tp, fp, fn = confusion_counts(prediction, y, classes)
    return torch.stack([tp[:, 1:], fp[:, 1:], fn[:, 1:]], -1).numpy().astype(np.int64)


def _run(craft: Craft, surrogate, target, x, y, norm: str, eps: float, classes: int) -> tuple[np.ndarray, float]:
    """Craft on ``surrogate`` batch by batch (seed = batch start, as evaluation does), score on ``target``."""
    started, parts = time.perf_counter(), []
    for start in range(0, x.shape[0], BATCH):
        xb, yb = x[start : start + BATCH], y[start : start + BATCH]
        parts.append(_counts(target, craft(surrogate, xb, yb, norm, eps, start), yb, classes))
    return np.concatenate(parts), time.perf_counter() - started


def attack_cell(models: dict, label: str, x, y, norm: str, eps: float, suite: dict, done: dict | None = None) -> dict:
    """Every attack of ``suite`` (and the transfer attacks from STD) on one model at one budget; the attacks
    already in ``done`` (a cell written before an attack joined the suite) are kept, not run again."""
    model, classes = models[label], 4
    attacks = dict(done or {})
    for name, (craft, steps) in suite.items():
        if name not in attacks:
            counts, seconds = _run(craft, model, model, x, y, norm, eps, classes)
            attacks[name] = {"counts": counts.tolist(), "seconds": round(seconds, 3), "steps": steps}
    if label != "STD":
        for kind in TRANSFER:
            if f"transfer/{kind}" not in attacks:
                counts, seconds = _run(_registered(kind), models["STD"], model, x, y, norm, eps, classes)
                attacks[f"transfer/{kind}"] = {"counts": counts.tolist(), "seconds": round(seconds, 3), "steps": 0}
    return {"model": label, "norm": norm, "eps": eps, "attacks": attacks}


def _slices(split: str, count: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    samples = CaseStore(cache_folder(load_study(STUDY).work)).samples(split, FOLD)
    index = np.unique(np.linspace(0, len(samples) - 1, min(count, len(samples))).round().astype(int))
    return samples.images[index].float(), samples.labels[index, 0].long(), [samples.cases[i] for i in index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=("val", "test"), default="val", help="val: the choice; test: confirm")
    parser.add_argument("--slices", type=int, default=32, help="evenly spaced slices of the split (default 32)")
    parser.add_argument("--max-minutes", type=float, default=float("inf"), help="start no cell after this")
    args = parser.parse_args()
    setup_logging(0)
    logging.getLogger("imaseg").setLevel(logging.WARNING)
    torch.set_num_threads(2)
    study = load_study(STUDY)
    run_study(study, only=list(MODELS.values()), rerun_missing=True)
    cells = {c.name: c for c in expand_cells(study)}
    models = {label: load_run_model(cells[name].folder(study.work)).network.eval() for label, name in MODELS.items()}
    x, y, cases = _slices(args.split, args.slices)
    out = RESULTS / f"attack_reference_{args.split}.json"
    results = json.loads(out.read_text()) if out.is_file() else {}
    results.update(split=args.split, fold=FOLD, cases=cases, study=str(STUDY.relative_to(ROOT)))
    cell_results = results.setdefault("cells", {})
    suite, started = attack_suite(), time.monotonic()
    for label in MODELS:
        for norm, eps in BUDGETS:
            key = f"{label} {norm} {eps:.6g}"
            done = cell_results.get(key, {}).get("attacks", {})
            if key in cell_results and set(suite) <= set(done):
                continue
            if (time.monotonic() - started) / 60 > args.max_minutes:
                print("time is up; rerun to continue")
                return
            cell_results[key] = attack_cell(models, label, x, y, norm, eps, suite, done)
            atomic_write_json(out, results, indent=None)
            dice = {
                n: float(mean_global_dice(np.asarray(a["counts"]).sum(0)))
                for n, a in cell_results[key]["attacks"].items()
            }
            print(key, " ".join(f"{n}={d:.3f}" for n, d in dice.items()), flush=True)


if __name__ == "__main__":
    main()
