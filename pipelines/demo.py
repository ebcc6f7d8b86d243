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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    pipeline_arguments(parser, default_config=str(HERE / "configs" / "demo.yaml"), default_out="demo", data=False)
    parser.add_argument("--patients", type=int, help="synthetic patients (two phases each)")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    config = load_pipeline_config(args)
    out = Path(args.out)
    runner = StageRunner(out, force=args.force)
    demo = config.data
    patients = args.patients or int(demo.get("patients", 10))
    shape = tuple(demo.get("shape", (96, 96, 8)))
    runner.run(
        "demo-data",
        {"patients": patients, "shape": shape, "seed": int(demo.get("seed", 0))},
        lambda _r: str(write_demo_data(out / "data", patients=patients, shape=shape, seed=int(demo.get("seed", 0)))),
    )
    result = run_chain(
        out / "data", out, config, runner, title="imaseg demo: synthetic heart MRI, STD vs robust training"
    )
    print_summary(result)
    return 0


if __name__ == "__main__":
    from imaseg.cli import run_guarded

    sys.exit(run_guarded("pipelines/demo.py", main))
