"""Cost of one IMA training step against one PGD-AT step with the same inner steps, same model and batches.

    python benchmarks/ima_overhead.py [--batch 16] [--size 128] [--steps 10] [--repeats 5] [--cache DIR]

Each row is the median wall time of ``--repeats`` full training steps (inner attack, loss forward,
backward, optimiser step) of a 2D MONAI UNet (16..256, 2 res units, instance norm), methods
interleaved so that machine-speed drift hits all of them alike. IMA rows also give the share spent in
the inner margin search and in the voxel statistics. Batches come from a preprocessed cache
(``--cache``, e.g. the ACDC benchmark's) when given, random images otherwise.

Writes ``benchmarks/results/ima_overhead.json``. Target (issue 4): IMA / PGD-AT <= 1.25.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from timing import Timed

from imaseg.config import config_from_dict
from imaseg.networks import build_network
from imaseg.training.config import TrainConfig
from imaseg.training.methods import build_method

RESULTS = Path(__file__).resolve().parent / "results"


def _batches(args) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    if args.cache:
        from imaseg.cache.reader import CaseStore

        samples = CaseStore(args.cache).samples("train")
        images = torch.as_tensor(samples.images[: args.batch * args.repeats]).float()
        labels = torch.as_tensor(samples.labels[: args.batch * args.repeats]).long()
        if labels.dim() == images.dim():
            labels = labels[:, 0]
        return list(zip(images.split(args.batch), labels.split(args.batch)))
    return [
        (
            torch.rand(args.batch, 1, args.size, args.size, generator=generator),
            torch.randint(0, 4, (args.batch, args.size, args.size), generator=generator),
        )
        for _ in range(args.repeats)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="inner steps of every method")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cache", default=None, help="preprocessed 2D cache to take batches from")
    args = parser.parse_args()
    torch.set_num_threads(2)
    batches = _batches(args)
    num_samples = len(batches) * args.batch
    ids = [f"s{i}" for i in range(num_samples)]
    common = {
        "eps": 0.5,
        "adv_weight": 0.5,
        "attack_steps": args.steps,
        "ima_steps": args.steps,
        "clip_range": [0.0, 1.0],
    }
    configs = {
        "pgd-at": config_from_dict(TrainConfig, {"method": "pgd-at", **common}),
        "ima-voxel": config_from_dict(TrainConfig, {"method": "ima", "ima_margin": "voxel", **common}),
        "ima-sample": config_from_dict(TrainConfig, {"method": "ima", "ima_margin": "sample", **common}),
    }
    torch.manual_seed(0)
    network = build_network("unet", 2, 1, 4, channels=(16, 32, 64, 128, 256), num_res_units=2)
    methods, times, parts = {}, {name: [] for name in configs}, {name: {} for name in configs}
    for name, config in configs.items():
        method = build_method(config, network, ids, 4)
        if config.method == "ima":
            # margins spread as after a few epochs: a mix of small, middle and eps_max radii
            method.ima.bank.margins.copy_(torch.linspace(0.1, 1.0, num_samples))
            method.ima.voxel_stats.update = Timed(method.ima.voxel_stats.update)
            original_search = method.ima.search

            def search(*a, _original=original_search, _name=name, **k):
                attack = _original(*a, **k)
                attack.run = parts[_name].setdefault("search", Timed(attack.run))
                return attack

            method.ima.search = search
        methods[name] = method
    optimiser = torch.optim.Adam(network.parameters(), lr=0.0)  # lr 0: every method sees the same weights
    generator = torch.Generator().manual_seed(0)
    for round_ in range(args.repeats + 1):  # round 0 warms up
        for name, method in methods.items():
            image, label = batches[round_ % len(batches)]
            index = torch.arange(args.batch) + (round_ % len(batches)) * args.batch
            start = time.perf_counter()
            network.train()
            loss, _ = method.loss(network, network, image, label, index, generator)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            if round_:
                times[name].append(time.perf_counter() - start)
        if round_ == 0:
            for name in parts:
                for timer in parts[name].values():
                    timer.seconds = 0.0
            for method in methods.values():
                if hasattr(method, "ima"):
                    method.ima.voxel_stats.update.seconds = 0.0
    base = statistics.median(times["pgd-at"])
    rows = {}
    for name, values in times.items():
        median = statistics.median(values)
        row = {"seconds": median, "ratio_to_pgd_at": median / base}
        if name in parts and "search" in parts[name]:
            total = sum(values)
            row["search_share"] = parts[name]["search"].seconds / total
            row["voxel_stats_share"] = methods[name].ima.voxel_stats.update.seconds / total
        rows[name] = row
        extra = "".join(f"  {k}={v:.3f}" for k, v in row.items() if k.endswith("share"))
        print(f"{name:<12}{median:8.3f} s/step  {row['ratio_to_pgd_at']:.2f}x PGD-AT{extra}")
    RESULTS.mkdir(exist_ok=True)
    out = {"settings": vars(args), "rows": rows, "finished": time.strftime("%Y-%m-%d %H:%M")}
    (RESULTS / "ima_overhead.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
