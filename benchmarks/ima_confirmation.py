"""The IMA confirmation's targets (issue 23, ``studies/ima_protocol.md``), judged from the committed records only.

    python benchmarks/ima_confirmation.py benchmarks/studies/ima_confirm_cxr.yaml [...acdc.yaml]

Written and committed before any confirmation result was read. Reads ``results/NAME_records.json`` and
``results/NAME_margins/`` (no torch, no data) and writes ``results/NAME_confirmation.{json,md}``:

- per configuration, pooled over folds and seeds: clean Dice, the AUC of Dice under the default attack over
  0..max eps (clean at eps 0) and Dice at the secondary budgets, global and mean per case, each with a 95%
  interval of the bootstrap over patients and training seeds (:func:`imaseg.study.units.crossed_draws`);
- the chosen IMA setting against each front of :data:`PROTOCOL` at matched clean Dice
  (:func:`imaseg.study.fronts.compare_to_front`), per endpoint and aggregation, and the verdict of the target:
  ``>= +0.03`` AUC with the interval above 0, global and per case, against every front;
- the mechanism target on each IMA cell's margins (``ima_choice.mechanism``);
- the clean-Dice target: settings within 0.03 of STD's clean Dice with >= 0.45 global Dice at eps 1 (ACDC).

While a cell is missing or stale, only the missing cells are listed: no figure of a partial confirmation.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
from ima_choice import CHANGED_SHARE, MOVED_DELTAS, mechanism

from imaseg.study.cells import cell_fingerprints, expand_cells, slug
from imaseg.study.declaration import Study, load_study
from imaseg.study.fronts import compare_to_front, endpoint_values
from imaseg.study.records import StudyRecords
from imaseg.study.units import AGGREGATIONS, UnitCounts, crossed_draws, unit_counts
from imaseg.utils.atomic import atomic_write_json, atomic_write_text

GAIN, CLEAN_WITHIN, REPLICATES = 0.03, 0.01, 2000
CLEAN_TARGET = {"ima_confirm_acdc": {"within_std": 0.03, "budget": "1", "dice": 0.45}}

# From ima_protocol.md, "Settings to confirm" (committed before any confirmation cell ran).
PROTOCOL = {
    "ima_confirm_acdc": {
        "ima": "ima voxel eps_max 2 relative 0.8 delta 0.5",
        "std": "std",
        "secondary": ["1", "2"],
        "fronts": {
            "PGD-AT": ["pgd-at eps 0.75", "pgd-at eps 1", "pgd-at eps 1.5"],
            "PGD-AT + voxel-weighted loss": ["pgd-at eps 1 voxel-weighted", "pgd-at eps 1.5 voxel-weighted"],
            "budget ramp": ["ramp 0.25 to eps 2 voxel-weighted"],
        },
    },
    "ima_confirm_cxr": {
        "ima": "ima voxel eps_max 8",
        "std": "std",
        "secondary": ["4", "8"],
        "fronts": {
            "PGD-AT": ["pgd-at eps 3", "pgd-at eps 4", "pgd-at eps 6"],
            "PGD-AT + voxel-weighted loss": ["pgd-at eps 4 voxel-weighted", "pgd-at eps 6 voxel-weighted"],
            "budget ramp": ["ramp 1 to eps 8 voxel-weighted"],
        },
    },
}


def _estimates(counts: UnitCounts, weights, endpoints: list[str], aggregation: str) -> dict:
    """Each endpoint's point estimate and 95% interval, from one set of replicate curves."""
    curves = counts.curves(weights, aggregation)
    out = {}
    for endpoint in endpoints:
        values = endpoint_values(curves, counts.keys, endpoint)
        low, high = (float(v) for v in np.nanpercentile(values[1:], [2.5, 97.5]))
        out[endpoint] = {"dice": float(values[0]), "ci": [low, high]}
    return out


def _cells(study: Study, records: StudyRecords) -> tuple[dict[str, list], list[str]]:
    """The declaration's cells recorded with today's settings, by setting, and the keys missing or stale."""
    cells = expand_cells(study)
    fingerprints = cell_fingerprints(study, cells)
    by_setting: dict[str, list] = {}
    missing = []
    for cell in cells:
        if records.is_done(cell.key, fingerprints[cell.key]):
            by_setting.setdefault(cell.name, []).append(records.cells[cell.key])
        else:
            missing.append(cell.key)
    return by_setting, missing


def _mechanism(study: Study, setting: str) -> dict:
    cells, missing = {}, []
    for cell in expand_cells(study, only=[setting]):
        if cell.name != setting:
            continue
        path = study.margins_dir / f"{slug(cell.key)}.json"
        if path.is_file():
            cells[cell.key] = mechanism(json.loads(path.read_text()))
        else:
            missing.append(cell.key)
    met = not missing and all(
        c["median_moved_deltas"] >= MOVED_DELTAS and c["changed_last_third"] >= CHANGED_SHARE for c in cells.values()
    )
    return {
        "cells": cells,
        "missing_margins": missing,
        "verdict": "incomplete" if missing else ("met" if met else "not met"),
    }


def judge(study: Study, records: StudyRecords) -> dict:
    """Every figure of the module docstring for one confirmation study; only the missing cells while any is."""
    protocol = PROTOCOL[study.name]
    named = [protocol["ima"], protocol["std"], *(s for f in protocol["fronts"].values() for s in f)]
    unknown = [s for s in named if s not in study.names()]
    if unknown:
        raise ValueError(f"{study.source}: the protocol's settings {unknown} are not declared")
    by_setting, missing = _cells(study, records)
    result: dict = {"study": study.name, "cells": sum(map(len, by_setting.values())), "missing": missing}
    if missing:  # no figure of a partial confirmation: nothing to read before the last cell
        return {**result, "target_auc": "incomplete"}
    counts = {s: unit_counts(rs, records.patients) for s, rs in by_setting.items()}
    first = counts[protocol["ima"]]
    weights = crossed_draws(len(first.patients), len(first.seeds), REPLICATES)
    endpoints = ["clean", "auc", *protocol["secondary"], "auc_attacked"]
    table = {s: {a: _estimates(c, weights, endpoints, a) for a in AGGREGATIONS} for s, c in counts.items()}
    rows, primary = [], []
    for front, settings in protocol["fronts"].items():
        for aggregation in AGGREGATIONS:
            for endpoint in endpoints[1:]:
                result_row = compare_to_front(
                    counts[protocol["ima"]], {s: counts[s] for s in settings}, name=front, endpoint=endpoint,
                    aggregation=aggregation, weights=weights, clean_within=CLEAN_WITHIN,
                )  # fmt: skip
                rows.append({"aggregation": aggregation, "endpoint": endpoint, **asdict(result_row)})
                if endpoint == "auc":
                    primary.append(result_row)
    return {
        **result,
        "units": {"patients": len(first.patients), "seeds": list(first.seeds)},
        "table": table,
        "fronts": rows,
        "target_auc": "met" if all(c.meets(GAIN) for c in primary) else "not met",
        "mechanism": _mechanism(study, protocol["ima"]),
        "clean_target": _clean_target(study.name, table, protocol["std"]),
    }


def _clean_target(name: str, table: dict, std: str) -> dict:
    rule = CLEAN_TARGET.get(name)
    if rule is None or std not in table:
        return {}
    reference = table[std]["global"]["clean"]["dice"]
    passing = []
    for setting, row in table.items():
        value = row["global"].get(rule["budget"], {}).get("dice")
        if (
            value is not None
            and row["global"]["clean"]["dice"] >= reference - rule["within_std"]
            and value >= rule["dice"]
        ):
            passing.append(setting)
    return {"rule": rule, "std_clean": reference, "settings": passing}


def markdown(result: dict) -> str:
    lines = [f"# {result['study']}: the confirmation's targets", ""]
    if result["missing"]:
        lines.append(f"Incomplete: {len(result['missing'])} cell(s) missing or stale, so no figure is computed yet:")
        return "\n".join([*lines, *(f"- {key}" for key in result["missing"])]) + "\n"
    lines.append(
        f"{result['cells']} cells; {result['units']['patients']} patients x seeds {result['units']['seeds']}. "
        "Intervals: 95%, bootstrap drawing patients and seeds independently. auc: over eps 0..max, clean at 0 (the "
        "primary endpoint); auc_attacked: over the attacked budgets only (the development's definition)."
    )
    for aggregation in AGGREGATIONS:
        lines += ["", f"## {aggregation} Dice", ""]
        endpoints = list(next(iter(result["table"].values()))[aggregation])
        lines += ["| setting | " + " | ".join(endpoints) + " |", "|---|" + "---|" * len(endpoints)]
        for setting, row in result["table"].items():
            cells = [_ci(row[aggregation][e]["dice"], *row[aggregation][e]["ci"]) for e in endpoints]
            lines.append(f"| {setting} | " + " | ".join(cells) + " |")
    lines += ["", "## IMA against each front at matched clean Dice", ""]
    lines.append("| front | aggregation | endpoint | reference | clean gap | IMA minus front (95% CI) | clipped |")
    lines.append("|---|---|---|---|---|---|---|")
    for r in result["fronts"]:
        value = f"{r['difference']:+.3f} ({r['low']:+.3f}..{r['high']:+.3f})" if r["compared"] else "-"
        lines.append(
            f"| {r['front']} | {r['aggregation']} | {r['endpoint']} | {r['reference']} | {r['clean_gap']:+.3f} | "
            f"{value} | {r['clipped']:.0%} |"
        )
    mech = result["mechanism"]
    lines += [
        "",
        f"**AUC target** (>= +{GAIN} against every front, global and per case, interval above 0): "
        f"{result['target_auc']}.",
        f"**Mechanism target** (median moved >= {MOVED_DELTAS} deltas and >= {CHANGED_SHARE:.0%} changed in the last "
        f"third, in every IMA cell): {mech['verdict']}.",
    ]
    lines += [f"- {key}: median moved {m['median_moved_deltas']:.1f} deltas, changed {m['changed_last_third']:.2f}"
              for key, m in mech["cells"].items()]  # fmt: skip
    lines += [f"- {key}: no margins file" for key in mech["missing_margins"]]
    if result["clean_target"]:
        c = result["clean_target"]
        lines.append(
            f"**Clean-Dice target** (within {c['rule']['within_std']} of STD's {c['std_clean']:.3f}, >= "
            f"{c['rule']['dice']} global Dice at eps {c['rule']['budget']}): {', '.join(c['settings']) or 'no setting'}."
        )
    return "\n".join(lines) + "\n"


def _ci(value: float, low: float, high: float) -> str:
    return f"{value:.3f} ({low:.3f}-{high:.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("studies", nargs="+", type=Path, help="confirmation declarations (ima_confirm_*.yaml)")
    parser.add_argument("--records", type=Path, help="another records file of the study (default: its own)")
    parser.add_argument("--out", type=Path, help="folder of the outputs (default: the study's results folder)")
    args = parser.parse_args()
    for path in args.studies:
        study = load_study(path)
        if study.name not in PROTOCOL:
            raise SystemExit(f"{path}: no protocol for {study.name!r}; known: {sorted(PROTOCOL)}")
        records = StudyRecords.load(args.records or study.records_path)
        result = judge(study, records)
        prefix = (args.out or study.results) / f"{study.name}_confirmation"
        atomic_write_json(prefix.with_suffix(".json"), result)
        atomic_write_text(prefix.with_suffix(".md"), markdown(result))
        print(markdown(result))


if __name__ == "__main__":
    main()
