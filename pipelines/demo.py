"""The demo: synthetic heart MRI (NIfTI) -> preprocess -> train STD, PGD-AT and IMA -> attack -> report.

    python pipelines/demo.py [--out demo] [--quick] [--methods std,ima,pgd-at] [--device cpu]

This is what the README's main command (`./run demo`) runs. It needs no data and no network: the
embedded default data set is generated first. A few minutes on a laptop CPU.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from chain import print_summary, run_chain  # noqa: E402

from imaseg.data.demo import write_demo_data  # noqa: E402
from imaseg.pipeline import StageRunner, load_pipeline_config, pipeline_arguments  # noqa: E402
from imaseg.utils.logs import setup_logging  # noqa: E402


def _demo_data_settings(data: dict, path: str, patients: int | None) -> tuple[int, tuple[int, ...], int]:
    """The config's ``data`` section (``patients`` from ``--patients`` where given): patients, volume shape and
    seed, or an error naming the key and where it was set."""
    data = {"patients": 10, "shape": [96, 96, 8], "seed": 0, **data}
    if patients is not None:
        data["patients"], path = patients, f"{path} + --patients"
    values = [data["patients"], data["seed"], *(data["shape"] if isinstance(data["shape"], list) else [None])]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ValueError(
            f"{path}: `data` must hold integers, e.g. patients: 10, shape: [96, 96, 8], seed: 0; got {data}"
        )
    if data["patients"] < 1 or len(data["shape"]) != 3 or min(data["shape"]) < 1:
        raise ValueError(f"{path}: `data` needs patients >= 1 and a shape of 3 positive sizes, got {data}")
    return data["patients"], tuple(data["shape"]), data["seed"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    pipeline_arguments(parser, default_config=str(HERE / "configs" / "demo.yaml"), default_out="demo", data=False)
    parser.add_argument("--patients", type=int, help="synthetic patients (two phases each)")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    config = load_pipeline_config(args)
    out = Path(args.out)
    runner = StageRunner(out, force=args.force)
    patients, shape, seed = _demo_data_settings(config.data, args.config, args.patients)
    runner.run(
        "demo-data",
        {"patients": patients, "shape": shape, "seed": seed},
        lambda _r: str(write_demo_data(out / "data", patients=patients, shape=shape, seed=seed)),
    )
    result = run_chain(
        out / "data", out, config, runner, title="imaseg demo: synthetic heart MRI, STD vs robust training"
    )
    print_summary(result)
    return 0


if __name__ == "__main__":
    from imaseg.cli import run_guarded

    sys.exit(run_guarded("pipelines/demo.py", main))
