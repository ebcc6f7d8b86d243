"""Evaluation cost on the real heart test split, and the share of it spent outside forward/backward.

    python benchmarks/evaluation_time.py --run benchmarks/work/acdc/fold0/seed0/std [--steps 20]

Evaluates the run on its test split (ACDC fold 0: 6 patients, 12 volumes) at 5 budgets with a
20-step L2 PGD (one loss, CE), counting every network call (batch size, with or without gradient).
The share outside forward/backward is ``1 - (time inside network forwards + time inside
torch.autograd.grad) / total``, both timed in place during the evaluation. A second estimate replays
exactly those calls bare on random inputs of the same shapes (``1 - floor / total``); it is noisier
(it can come out negative when the replay runs slower than the calls did in place). Target: under 10%. Writes
``benchmarks/results/evaluation_time.json``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import statistics
import time
from collections import Counter
from pathlib import Path

import torch
from timing import Timed

from imaseg.evaluation.config import EvalConfig
from imaseg.run import RunDir
from imaseg.summary import Summary
from imaseg.utils.logs import setup_logging

ROOT = Path(__file__).resolve().parents[1]
# the module, not the function of the same name that imaseg.evaluation exports
evaluate_module = importlib.import_module("imaseg.evaluation.evaluate")


class CountingNetwork(torch.nn.Module):
    """Counts calls per (input shape, grad mode) and times them in place."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network
        self.calls: Counter = Counter()
        self.timed = Timed(network)

    def forward(self, x):
        self.calls[(tuple(x.shape), torch.is_grad_enabled())] += 1
        return self.timed(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default=str(ROOT / "benchmarks" / "work" / "acdc" / "fold0" / "seed0" / "std"))
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    setup_logging(-1)
    torch.set_num_threads(2)
    run = Path(args.run)
    if not RunDir(run).last_checkpoint.is_file():
        raise SystemExit(f"{run} has no checkpoint: run benchmarks/robust_training_acdc.py first (or pass --run)")
    original = evaluate_module.load_run
    holder = {}

    def counting_load_run(*a, **k):
        loaded = original(*a, **k)
        loaded.network = CountingNetwork(loaded.network).eval()
        holder["net"] = loaded.network
        return loaded

    evaluate_module.load_run = counting_load_run
    config = EvalConfig(
        attacks=["pgd-l2"],
        eps=[0.125, 0.25, 0.5, 1.0, 2.0],
        steps=args.steps,
        losses=["ce"],
        overlays=0,
        hd95=False,
        steps_check=False,
        tag="timing",
        batch_size=32,
    )
    shutil.rmtree(RunDir(run).evaluation(config.tag).path, ignore_errors=True)
    timed_grad = Timed(torch.autograd.grad)  # stands in for it during the evaluation
    torch.autograd.grad = timed_grad
    try:
        start = time.perf_counter()
        summary = evaluate_module.evaluate(run, config, progress=False)
        total = time.perf_counter() - start
    finally:
        torch.autograd.grad = timed_grad.function
    in_network = holder["net"].timed.seconds + timed_grad.seconds
    network = holder["net"].network
    calls = holder["net"].calls
    floor = 0.0
    for (shape, grad), count in calls.items():
        x = torch.rand(shape)
        floor += count * _replay(network, x, grad)
    result = {
        "run": str(run),
        "cases": len(Summary.from_json(summary).facts.cases),
        "budgets": config.eps,
        "steps": args.steps,
        "seconds_total": total,
        "seconds_forward_backward_floor": floor,
        "seconds_in_forward_and_input_backward": in_network,
        "share_outside_forward_backward": 1 - in_network / total,
        "share_outside_replayed_floor": 1 - floor / total,
        "network_calls": sum(calls.values()),
    }
    (ROOT / "benchmarks" / "results").mkdir(exist_ok=True)
    (ROOT / "benchmarks" / "results" / "evaluation_time.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def _replay(network: torch.nn.Module, x: torch.Tensor, grad: bool, repeats: int = 3) -> float:
    """Median seconds of one bare call on ``x``: forward + input-gradient backward, or forward only."""
    for p in network.parameters():
        p.requires_grad_(False)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        if grad:
            xg = x.clone().requires_grad_(True)
            torch.autograd.grad(network(xg).logsumexp(1).sum(), xg)
        else:
            with torch.no_grad():
                network(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


if __name__ == "__main__":
    main()
