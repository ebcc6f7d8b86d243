"""Apply the IMA study's choice rule (``studies/ima_protocol.md``) to the development records, and say why.

    python benchmarks/ima_choice.py benchmarks/studies/ima_mechanism_acdc.yaml [...cxr.yaml]

Reads only committed files (``results/NAME_records.json`` and ``results/NAME_margins/``): no torch, no data.
Per configuration, pooled over the development folds (validation patients): clean global Dice and the AUC
of Dice under the default attack (means over folds), and for IMA cells the mechanism target: the median
margin at the end differs from its start (``max(delta, eps_min)``) by >= 2 delta, and >= 30 % of samples
changed margin in each epoch of the last third of training (the mean over those epochs, and the fold with the
lower value). The rule: among IMA settings with clean Dice within 0.01 of PGD-AT's (``report.compare``),
those meeting the mechanism target on every fold, the best AUC; if none meets it, the best-AUC IMA setting
within the clean tolerance, with that stated.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from imaseg.study.cells import slug
from imaseg.study.declaration import load_study
from imaseg.study.report_config import Comparison

MOVED_DELTAS = 2.0
CHANGED_SHARE = 0.30


def mechanism(margins: dict) -> dict:
    """The two mechanism numbers of one IMA cell's ``margins.json``."""
    epochs = margins["epochs"]
    start = max(margins["delta"], margins.get("eps_min", 0.0))
    moved = abs(epochs[-1]["margin_median"] - start) / margins["delta"]
    last_third = epochs[len(epochs) - max(1, len(epochs) // 3) :]
    changed = statistics.mean(e["margin_changed"] for e in last_third)
    return {"median_moved_deltas": moved, "changed_last_third": changed}


def table(study_path: Path) -> tuple[list[dict], Comparison]:
    study = load_study(study_path)
    records = json.loads((study.results / f"{study.name}_records.json").read_text())["cells"].values()
    compare = study.report.compare
    if compare is None or compare.against_setting is None:
        raise ValueError(f"{study_path}: report.compare with against_setting is needed for the choice rule")
    rows: dict[str, dict] = {}
    for record in records:
        row = rows.setdefault(
            record["setting"], {"setting": record["setting"], "method": record["method"], "folds": {}}
        )
        fold = {"clean": record["clean"], "auc": record["auc"]}
        path = study.margins_dir / f"{slug(record['setting'])}-fold{record['fold']}-seed{record['seed']}.json"
        if path.is_file():
            fold.update(mechanism(json.loads(path.read_text())))
        row["folds"][record["fold"]] = fold
    for row in rows.values():
        folds = list(row["folds"].values())
        row["clean"] = statistics.mean(f["clean"] for f in folds)
        row["auc"] = statistics.mean(f["auc"] for f in folds)
        if "median_moved_deltas" in folds[0]:
            row["mechanism_met"] = all(
                f["median_moved_deltas"] >= MOVED_DELTAS and f["changed_last_third"] >= CHANGED_SHARE for f in folds
            )
    return list(rows.values()), compare


def choose(rows: list[dict], compare: Comparison) -> dict:
    reference = next(r for r in rows if r["setting"] == compare.against_setting)
    within = [
        r for r in rows if r["method"] == compare.method and r["clean"] >= reference["clean"] - compare.clean_within
    ]
    met = [r for r in within if r.get("mechanism_met")]
    pool = met or within
    best = max(pool, key=lambda r: r["auc"]) if pool else None
    return {"chosen": best and best["setting"], "mechanism_met": bool(met), "reference": reference["setting"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("studies", nargs="+", type=Path)
    args = parser.parse_args()
    for path in args.studies:
        rows, compare = table(path)
        print(f"## {path.name}\n")
        print("| setting | folds | clean | AUC | median moved (deltas), per fold | changed, last third, per fold |")
        print("|---|---|---|---|---|---|")
        for r in sorted(rows, key=lambda r: -r["auc"]):
            moved = ", ".join(
                f"{f['median_moved_deltas']:.1f}" for f in r["folds"].values() if "median_moved_deltas" in f
            )
            changed = ", ".join(
                f"{f['changed_last_third']:.2f}" for f in r["folds"].values() if "changed_last_third" in f
            )
            folds = ",".join(str(f) for f in r["folds"])
            print(f"| {r['setting']} | {folds} | {r['clean']:.3f} | {r['auc']:.3f} | {moved} | {changed} |")
        print("\n" + json.dumps(choose(rows, compare)) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
