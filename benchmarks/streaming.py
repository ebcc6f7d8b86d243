"""The streaming loader against the in-memory one: memory that stays flat as the data grow, and 2D speed.

    python benchmarks/streaming.py [--cases 12] [--epochs 3]

Every training runs in a fresh process (STD, one epoch order, no augmentation) and reports its peak RSS
and its throughput (training samples per second over the epochs after the first, from ``log.csv``).

- memory: synthetic volumes of 256 x 256 x 16 (5 MiB a case), ``--cases`` and 4 x ``--cases`` patients, a
  tiny UNet so the data dominate; the stream loader holds ``cache_mib`` 64. Target: its peak on 4x the
  cases / its peak on 1x <= 1.10 (flat); the in-memory loader's ratio beside it, for scale.
- speed: the 2D ACDC-like setting (96 x 96 slices, 24 patients, UNet 16..128, batch 16). Target: stream
  throughput / in-memory throughput >= 0.95, at the default ``cache_mib`` (the data fit: each case is
  read once) and, for the worst case, with ``cache_mib`` 1 (every sample re-reads its case).

Writes ``benchmarks/results/streaming.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
WORK = ROOT / "benchmarks" / "work" / "streaming"


def _cache(patients: int, size: int, depth: int) -> Path:
    from imaseg.cache.writer import preprocess_dataset
    from imaseg.data.demo import write_demo_data
    from imaseg.transforms.chain import PreprocessConfig

    name = f"{patients}p-{size}x{depth}"
    data = write_demo_data(WORK / f"data-{name}", patients=patients, shape=(size, size, depth), seed=0)
    config = PreprocessConfig(
        intensity="none", spatial_size=[size, size], folds=5, val_groups=0, group_regex=r"^(patient\d+)"
    )
    preprocess_dataset(data, WORK / f"cache-{name}", config, progress=False)
    return WORK / f"cache-{name}"


def _train_probe(spec: str) -> None:
    """In a fresh process: train, then print peak RSS (MiB) and samples per second after the first epoch."""
    from imaseg.config import config_from_dict
    from imaseg.run import RunDir
    from imaseg.training.config import TrainConfig
    from imaseg.training.trainer import train

    settings = json.loads(spec)
    out = settings.pop("out")
    cache = settings.pop("cache")
    base = {"res_units": 1, "batch_size": 16, "val_steps": 0, "tensorboard": False, "threads": 2, "augment": False}
    config = config_from_dict(TrainConfig, {**base, **settings})
    train(cache, out, config, progress=False, overwrite=True)
    run = RunDir(out)
    samples = run.read_split()["train_samples"]
    seconds = [float(row["seconds"]) for row in run.read_log()]
    steady = seconds[1:] or seconds
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from timing import peak_rss_mib

    peak = peak_rss_mib()
    print(json.dumps({"peak_mib": peak, "samples_per_s": samples * len(steady) / sum(steady)}))


def _run(name: str, cache: Path, **settings) -> dict:
    spec = json.dumps({"cache": str(cache), "out": str(WORK / f"run-{name}"), **settings})
    result = subprocess.run([sys.executable, __file__, "--probe", spec], capture_output=True, text=True, check=True)
    row = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"{name:28s} peak {row['peak_mib']:6.0f} MiB  {row['samples_per_s']:7.1f} samples/s", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=12, help="patients of the small memory-test cache (large: 4x)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        _train_probe(args.probe)
        return
    rows = {}
    tiny = {"channels": [4, 8, 16], "epochs": 1}
    for patients in (args.cases, 4 * args.cases):
        cache = _cache(patients, 256, 16)
        rows[f"memory {patients}p"] = _run(f"memory-{patients}p", cache, loader="memory", **tiny)
        rows[f"stream {patients}p"] = _run(f"stream-{patients}p", cache, loader="stream", cache_mib=64, **tiny)
    acdc = _cache(24, 96, 10)
    unet = {"channels": [16, 32, 64, 128], "epochs": args.epochs}
    rows["speed memory"] = _run("speed-memory", acdc, loader="memory", **unet)
    rows["speed stream"] = _run("speed-stream", acdc, loader="stream", **unet)
    rows["speed stream cache 1 MiB"] = _run("speed-stream-1mib", acdc, loader="stream", cache_mib=1, **unet)
    small, large = args.cases, 4 * args.cases
    speed = rows["speed memory"]["samples_per_s"]
    result = {
        "settings": {"cases": args.cases, "epochs": args.epochs},
        "rows": rows,
        "stream_peak_4x_over_1x": rows[f"stream {large}p"]["peak_mib"] / rows[f"stream {small}p"]["peak_mib"],
        "memory_peak_4x_over_1x": rows[f"memory {large}p"]["peak_mib"] / rows[f"memory {small}p"]["peak_mib"],
        "stream_over_memory_throughput": rows["speed stream"]["samples_per_s"] / speed,
        "stream_1mib_over_memory_throughput": rows["speed stream cache 1 MiB"]["samples_per_s"] / speed,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "streaming.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=1))


if __name__ == "__main__":
    main()
