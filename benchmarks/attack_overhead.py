"""Attack speed and memory against their floors, on the same model and batch in the same run.

    python benchmarks/attack_overhead.py [--batch 16] [--size 128] [--steps 10] [--repeats 3]
    python benchmarks/attack_overhead.py --network nnunet     # through nnU-Net's network and sliding window

``--network nnunet`` (needs nnunetv2): nnU-Net's ``PlainConvUNet`` as the ACDC pipeline's ``2d_cpu``
configuration builds it (5 stages, 16..128 features, instance norm, leaky ReLU), called through imaseg's
differentiable nnU-Net sliding window (one tile at ``--size``, no mirroring); the floor runs through the same
window, and ``floor_bare_network`` through the network alone shows what the window costs.

Rows (median wall time of ``--repeats`` runs of a ``--steps``-step attack):
- floor: a bare loop of k x (forward + input-gradient backward), frozen weights, Linf sign step;
- imaseg PGD, ``select="last"`` (what training uses) and ``select="worst"`` (evaluation default:
  per-iterate Dice, worst iterate kept) -- target ratio to the floor <= 1.05;
- research style: fp32, weights requiring grad, ``loss.backward()`` filling weight ``.grad`` each step
  (as the official IMA code does) -- reported as a speed ratio;
- peak memory (RSS growth, measured in fresh subprocesses) of one attack step and of one training
  step of the same model and batch.

Writes ``benchmarks/results/attack_overhead.json``. CPU by default; ``--device cuda`` where a GPU is.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from imaseg.attacks import PGD
from imaseg.networks import build_network

RESULTS = Path(__file__).resolve().parent / "results"


def nnunet_network(size: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    """``(sliding window, bare network)`` of an nnU-Net 2D network as the ACDC pipeline's ``2d_cpu`` plans build it."""
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    from imaseg.nnunet.window import NnUNetSlidingWindow

    stages = 5
    network = PlainConvUNet(
        1, stages, [min(128, 16 * 2**i) for i in range(stages)], torch.nn.Conv2d, [[3, 3]] * stages,
        [[1, 1]] + [[2, 2]] * (stages - 1), [2] * stages, 4, [2] * (stages - 1), conv_bias=True,
        norm_op=torch.nn.InstanceNorm2d, norm_op_kwargs={"eps": 1e-5, "affine": True},
        nonlin=torch.nn.LeakyReLU, nonlin_kwargs={"inplace": True}, deep_supervision=False,
    )  # fmt: skip
    return NnUNetSlidingWindow(network, (size, size)), network


def setup(args):
    torch.manual_seed(0)
    if args.network == "nnunet":
        model, _ = nnunet_network(args.size)
    else:
        model = build_network("unet", 2, 1, 4, channels=(16, 32, 64, 128, 256), num_res_units=2)
    model = model.to(args.device).eval()
    x = torch.rand(args.batch, 1, args.size, args.size, device=args.device)
    y = torch.randint(0, 4, (args.batch, args.size, args.size), device=args.device)
    return model, x, y


def floor_loop(model, x, y, steps, eps=0.03):
    for p in model.parameters():
        p.requires_grad_(False)
    delta = torch.zeros_like(x)
    for _ in range(steps):
        xk = (x + delta).requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(model(xk), y)
        (grad,) = torch.autograd.grad(loss, xk)
        delta = (delta + eps / 4 * grad.sign()).clamp(-eps, eps)
    for p in model.parameters():
        p.requires_grad_(True)
    return x + delta


def research_loop(model, x, y, steps, eps=0.03):
    delta = torch.zeros_like(x)
    for _ in range(steps):
        xk = (x + delta).clone().requires_grad_(True)
        model.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(xk), y)
        loss.backward()  # weight gradients computed and stored too
        delta = (delta + eps / 4 * xk.grad.sign()).clamp(-eps, eps)
    model.zero_grad()
    return x + delta


def timed(fn, repeats, sync):
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def _rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakRSS:
    """Peak resident memory while the block runs, sampled every millisecond by a thread."""

    def __enter__(self):
        self.base = self.peak = _rss_mib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_mib())
            time.sleep(0.001)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mib())


def memory_probe(args) -> None:
    model, x, y = setup(args)
    with torch.no_grad():
        model(x[:1])  # warm allocator / kernels
    with PeakRSS() as rss:
        _probe_step(args, model, x, y)
    print(json.dumps({"peak_growth_mib": rss.peak - rss.base}))


def _probe_step(args, model, x, y) -> None:
    if args.memory_probe == "attack":
        PGD(model, eps=0.03, norm="linf", steps=1, random_start=False, select="last")(x, y)
    else:
        model.train()
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimiser.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--network", choices=("unet", "nnunet"), default="unet", help="imaseg's UNet or nnU-Net's")
    parser.add_argument("--memory-probe", choices=("attack", "train"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_probe:
        memory_probe(args)
        return
    model, x, y = setup(args)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    floor_loop(model, x, y, 1)  # warm-up
    rows = {}
    rows["floor"] = timed(lambda: floor_loop(model, x, y, args.steps), args.repeats, sync)
    for select in ("last", "worst"):
        attack = PGD(model, eps=0.03, norm="linf", steps=args.steps, random_start=False, select=select)
        rows[f"imaseg_pgd_{select}"] = timed(lambda a=attack: a(x, y), args.repeats, sync)
    rows["research"] = timed(lambda: research_loop(model, x, y, args.steps), args.repeats, sync)
    if args.network == "nnunet":
        bare = model.network
        rows["floor_bare_network"] = timed(lambda: floor_loop(bare, x, y, args.steps), args.repeats, sync)
    floor = rows["floor"][0]
    memory = {}
    if args.device == "cpu":
        for kind in ("attack", "train"):
            cmd = [
                sys.executable,
                __file__,
                "--memory-probe",
                kind,
                "--batch",
                str(args.batch),
                "--size",
                str(args.size),
                "--network",
                args.network,
            ]
            memory[kind] = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)[
                "peak_growth_mib"
            ]
    result = {
        "setup": vars(args) | {"torch": torch.__version__, "threads": torch.get_num_threads()},
        "seconds": {k: v[0] for k, v in rows.items()},
        "ratio_to_floor": {k: v[0] / floor for k, v in rows.items()},
        "research_over_imaseg_last": rows["research"][0] / rows["imaseg_pgd_last"][0],
        "peak_memory_mib": memory,
    }
    RESULTS.mkdir(exist_ok=True)
    name = "attack_overhead.json" if args.network == "unet" else f"attack_overhead_{args.network}.json"
    (RESULTS / name).write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'variant':<22}{'seconds':>10}{'x floor':>10}")
    for key, (seconds, _) in rows.items():
        print(f"{key:<22}{seconds:>10.3f}{seconds / floor:>10.3f}")
    print(f"research / imaseg (last): {result['research_over_imaseg_last']:.2f}x slower")
    if memory:
        print(
            f"peak memory growth: attack step {memory['attack']:.0f} MiB, training step {memory['train']:.0f} MiB "
            f"(ratio {memory['attack'] / memory['train']:.2f})"
        )


if __name__ == "__main__":
    main()
