"""Step costs of training and attacks on whatever device is present, 2D and 3D, in every precision.

    python benchmarks/gpu_step.py [--device auto] [--repeats 5] [--quick]

For a 2D UNet (batch of slices) and a 3D UNet (a batch of patches, and a whole volume through a sliding
window, with the default window checkpointing and, as ``3d-volume-graph``, without), in fp32, bf16, fp16 and compiled fp32 (where the device supports them), it measures the median
wall time of:

- ``inference``: one forward without gradients (a sliding-window pass for the whole volume);
- ``floor``: one forward plus the input-gradient backward, frozen weights (the least an attack step costs);
- ``pgd step``: one step of imaseg's PGD (``select="last"``), from a 10-step run divided by 10;
- ``train step``: one PGD-AT training step (10 inner steps, then the weight update);

and the peak memory of inference and of one attack step (CUDA: ``max_memory_allocated``; CPU: RSS growth
in fresh subprocesses). It prints and writes the ratios the issues set targets on:

- 3D PGD step / floor <= 1.05 (the attack adds nothing to the gradient it needs);
- whole-volume attack step / sliding-window inference <= 2, and its peak memory / inference peak <= 1.3.

Writes ``benchmarks/results/gpu_step_<device>.json``. One prepared script: on a lent GPU run it as is.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from imaseg.attacks import PGD, SlidingWindowForward

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import peak_rss_mib  # noqa: E402

from imaseg.networks import build_network

RESULTS = Path(__file__).resolve().parent / "results"
SHAPES = {  # name: (dims, batch, spatial, window)
    "2d": (2, 16, (128, 128), None),
    "3d-patch": (3, 2, (64, 64, 32), None),
    "3d-volume": (3, 1, (192, 192, 48), (96, 96, 32)),
    "3d-volume-graph": (3, 1, (192, 192, 48), (96, 96, 32)),  # without window checkpointing
}
QUICK = {
    "2d": (2, 4, (64, 64), None),
    "3d-patch": (3, 1, (32, 32, 16), None),
    "3d-volume": (3, 1, (64, 64, 24), (32, 32, 16)),
    "3d-volume-graph": (3, 1, (64, 64, 24), (32, 32, 16)),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _median(function, device, repeats: int) -> float:
    function()  # warm-up (and compilation)
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        function()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _setup(name: str, shapes: dict, device: torch.device, compiled: bool):
    dims, batch, spatial, window = shapes[name]
    torch.manual_seed(0)
    channels = (16, 32, 64, 128, 256) if dims == 2 else (16, 32, 64, 128)
    network = build_network("unet", dims, 1, 4, channels=channels, num_res_units=2).to(device).eval()
    if compiled:
        network = torch.compile(network)
    checkpoint = not name.endswith("-graph")
    model = SlidingWindowForward(network, window, sw_batch_size=4, checkpoint=checkpoint) if window else network
    x = torch.rand(batch, 1, *spatial, device=device)
    y = torch.randint(0, 4, (batch, *spatial), device=device)
    return network, model, x, y


def _floor(model, x, y, dtype):
    for p in model.parameters():
        p.requires_grad_(False)
    xk = x.clone().requires_grad_(True)
    with torch.autocast(x.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        loss = torch.nn.functional.cross_entropy(model(xk).float(), y)
    torch.autograd.grad(loss, xk)
    for p in model.parameters():
        p.requires_grad_(True)


def _inference(model, x, dtype):
    with torch.no_grad(), torch.autocast(x.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        model(x)


def _pgd(model, x, y, dtype, steps=10):
    PGD(model, eps=1.0, steps=steps, loss="ce", select="last", autocast_dtype=dtype, seed=0)(x, y)


def _train_step(network, model, x, y, dtype, optimizer):
    adversarial = PGD(model, eps=1.0, steps=10, loss="ce", select="last", autocast_dtype=dtype, seed=0)(x, y)
    network.train()
    with torch.autocast(x.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        loss = torch.nn.functional.cross_entropy(model(adversarial).float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    network.eval()


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16, "compiled": None}


def measure(name: str, precision: str, args, device: torch.device) -> dict:
    shapes = QUICK if args.quick else SHAPES
    dtype = PRECISIONS[precision]
    network, model, x, y = _setup(name, shapes, device, precision == "compiled")
    row = {
        "inference_s": _median(lambda: _inference(model, x, dtype), device, args.repeats),
        "floor_s": _median(lambda: _floor(model, x, y, dtype), device, args.repeats),
        "pgd_step_s": _median(lambda: _pgd(model, x, y, dtype), device, max(1, args.repeats // 2)) / 10,
    }
    if shapes[name][3] is None:  # training steps on slices and patches, not on whole volumes
        optimizer = torch.optim.AdamW(network.parameters(), 1e-4)
        row["train_step_s"] = _median(lambda: _train_step(network, model, x, y, dtype, optimizer), device, 1)
    row["pgd_over_floor"] = row["pgd_step_s"] / row["floor_s"]
    row["pgd_over_inference"] = row["pgd_step_s"] / row["inference_s"]
    row.update(_memory(name, precision, args, device))
    return row


def _memory(name: str, precision: str, args, device: torch.device) -> dict:
    """Peak memory of inference and of one attack step; CPU: RSS growth in fresh subprocesses."""
    peaks = {}
    for what in ("inference", "attack"):
        command = [sys.executable, __file__, "--memory-probe", f"{name}:{precision}:{what}", "--device", str(device)]
        if args.quick:
            command.append("--quick")
        out = subprocess.run(command, capture_output=True, text=True, check=False)
        try:
            peaks[what] = float(out.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            peaks[what] = float("nan")
    return {
        "inference_peak_mib": peaks["inference"],
        "attack_peak_mib": peaks["attack"],
        "attack_memory_over_inference": peaks["attack"] / peaks["inference"] if peaks["inference"] else float("nan"),
    }


def _probe(spec: str, args) -> None:
    """Print the peak memory (MiB) of one inference or one attack step above the model's own footprint (CPU:
    the process's peak RSS after the operation minus before it, in a fresh process)."""
    name, precision, what = spec.split(":")
    device = torch.device(args.device)
    shapes = QUICK if args.quick else SHAPES
    dtype = PRECISIONS[precision]
    network, model, x, y = _setup(name, shapes, device, precision == "compiled")
    if device.type == "cuda":
        _inference(model, x, dtype)  # warm-up: cuDNN workspaces and compilation belong to both
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = peak_rss_mib()
    if what == "inference":
        _inference(model, x, dtype)
    else:
        _pgd(model, x, y, dtype, steps=1)
    if device.type == "cuda":
        torch.cuda.synchronize()
        print((torch.cuda.max_memory_allocated() - base) / 2**20)
    else:
        print(peak_rss_mib() - base)


def _supported(precision: str, device: torch.device) -> str | None:
    """Why a precision is skipped on this device, or ``None``."""
    if precision == "fp16" and device.type == "cpu":
        return "fp16 autocast on CPU is emulated (slow): not a deployment setting"
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return "this GPU has no bf16"
    if precision == "compiled" and device.type == "cpu":
        return "torch.compile on CPU needs a C++ toolchain and minutes per shape; off by default (--compile)"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="tiny shapes: checks the script, not the figures")
    parser.add_argument("--memory-probe", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.memory_probe:
        _probe(args.memory_probe, args)
        return
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = device.type == "cuda"
    results: dict = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "rows": {}}
    results["threads"] = torch.get_num_threads()
    for name in SHAPES:
        for precision in PRECISIONS:
            why = _supported(precision, device)
            key = f"{name} {precision}"
            if why:
                results["rows"][key] = {"skipped": why}
                continue
            results["rows"][key] = row = measure(name, precision, args, device)
            print(f"{key:22s} " + "  ".join(f"{k} {v:.3g}" for k, v in row.items()), flush=True)
    RESULTS.mkdir(exist_ok=True)
    suffix = "_quick" if args.quick else ""
    path = RESULTS / f"gpu_step_{device.type}{suffix}.json"
    path.write_text(json.dumps(results, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
