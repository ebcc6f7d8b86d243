"""A seeded fingerprint of the demo chain, to show a refactor changed no number.

    python benchmarks/fingerprint.py OUT            # run `pipelines/demo.py --quick --out OUT` first
    python benchmarks/fingerprint.py OUT --against other.json

Prints (and with ``--save FILE`` writes) one SHA-256 per artefact: every run's network weights (the
tensors of ``last.pt`` / ``best.pt``), margins, log without the timing column, and every evaluation's
``results.csv`` and ``summary.json`` without wall-clock fields. Two runs of the same seeded chain give the
same fingerprint; a refactor that keeps behaviour keeps it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import torch

from imaseg.run import RunDir

TIMING_KEYS = {"seconds", "seconds_per_case", "cpu_seconds", "wall_seconds"}
PATH_KEYS = {"run", "checkpoint"}  # where the demo ran, not what it computed
FORMAT_KEYS = {"version"}  # the schema version summary.json now states (absent before issue 22)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _without_timing(value):
    if isinstance(value, dict):
        return {k: _without_timing(v) for k, v in value.items() if k not in TIMING_KEYS | PATH_KEYS | FORMAT_KEYS}
    if isinstance(value, list):
        return [_without_timing(v) for v in value]
    return value


def _weights(path: Path) -> str:
    state = torch.load(path, map_location="cpu", weights_only=True)["network"]
    hasher = hashlib.sha256()
    for key in sorted(state):
        hasher.update(key.encode())
        hasher.update(state[key].contiguous().numpy().tobytes())
    return hasher.hexdigest()[:16]


def fingerprint(out: Path) -> dict[str, str]:
    """``{artefact: digest}`` for every run under ``out/runs``."""
    prints: dict[str, str] = {}
    for folder in sorted((out / "runs").iterdir()):
        run = RunDir(folder)
        if not run.is_run():
            continue
        for which in ("last", "best"):
            path = run.checkpoints_dir / f"{which}.pt"
            if path.is_file():
                prints[f"{run.name}/{which}.pt"] = _weights(path)
        margins = run.read_margins()
        if margins is not None:
            prints[f"{run.name}/margins"] = _digest(json.dumps(margins, sort_keys=True).encode())
        log = [{k: v for k, v in row.items() if k != "seconds"} for row in run.read_log()]
        prints[f"{run.name}/log"] = _digest(json.dumps(log, sort_keys=True).encode())
        for tag in run.evaluation_tags():
            evaluation = run.evaluation(tag)
            prints[f"{run.name}/{tag}/results.csv"] = _digest(evaluation.results_path.read_bytes())
            summary = _without_timing(evaluation.read_summary_json())
            prints[f"{run.name}/{tag}/summary"] = _digest(json.dumps(summary, sort_keys=True).encode())
    return prints


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="the demo's output folder")
    parser.add_argument("--save", type=Path, help="write the fingerprint to this JSON file")
    parser.add_argument("--against", type=Path, help="compare with a saved fingerprint; exit 1 on any difference")
    args = parser.parse_args(argv)
    prints = fingerprint(args.out)
    for key, value in prints.items():
        print(f"{value}  {key}")
    if args.save:
        args.save.write_text(json.dumps(prints, indent=2) + "\n")
    if args.against:
        before = json.loads(args.against.read_text())
        changed = sorted(k for k in set(before) | set(prints) if before.get(k) != prints.get(k))
        for key in changed:
            print(f"differs: {key}: {before.get(key)} -> {prints.get(key)}")
        print("fingerprint unchanged" if not changed else f"{len(changed)} artefact(s) differ")
        return 1 if changed else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
