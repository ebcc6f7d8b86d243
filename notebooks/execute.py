"""Re-execute notebooks in place, so that their committed outputs are what the code shows today.

    python notebooks/execute.py notebooks/01_explore_data.ipynb [notebooks/02_attack_a_model.ipynb ...]
    python notebooks/execute.py --fresh notebooks/0*.ipynb    # from scratch, in order

Each notebook runs top to bottom at its own default settings, in a fresh kernel of *this* interpreter
(whatever Jupyter kernels are installed), with the notebook's folder as the working directory, as Jupyter
runs it; its outputs (figures included) are written back into the file. The notebooks share
``notebooks/notebook_work/`` (ignored by git): 02 trains the standard model that 03 fine-tunes, so run them
in order; ``--fresh`` deletes that folder first, so that every output comes from the code as it is. A
notebook whose outputs name an absolute path of this machine is not written back.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

__all__ = ["CELL_TIMEOUT_S", "WORK_DIR", "absolute_paths", "execute", "kernel_spec_manager", "main"]

logger = logging.getLogger("notebooks.execute")

CELL_TIMEOUT_S = 900
WORK_DIR = "notebook_work"  # the notebooks' default WORK_DIR, relative to their folder
# an absolute path of a machine: POSIX roots where checkouts, temporary files and homes live, or a drive
_ABSOLUTE = re.compile(r"(?<![\w.~])(/(?:work|tmp|home|root|Users|private|var/folders|opt|mnt)/|[A-Za-z]:\\+Users)")


def kernel_spec_manager(root: Path) -> KernelSpecManager:
    """A ``python3`` kernelspec under ``root`` that starts this interpreter (the venv's), nothing else."""
    spec = root / "python3"
    spec.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "Python 3", "language": "python"}))
    return KernelSpecManager(kernel_dirs=[str(root)], ensure_native_kernel=False)


def execute(
    nb: nbformat.NotebookNode, workdir: Path, specs: KernelSpecManager, *, timeout: int = CELL_TIMEOUT_S
) -> nbformat.NotebookNode:
    """Run every cell of ``nb`` (in memory, outputs replaced) with ``workdir`` as the kernel's directory."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    client = NotebookClient(
        nb,
        km=KernelManager(kernel_name="python3", kernel_spec_manager=specs),
        timeout=timeout,
        startup_timeout=120,
        kernel_name="python3",
        record_timing=False,  # no per-cell timestamps: a refresh changes only what the notebook shows
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute()
    return nb


def absolute_paths(nb: nbformat.NotebookNode) -> list[str]:
    """The lines of ``nb``'s outputs that name an absolute path of a machine (empty when none does)."""
    found = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            texts = [output.get("text", "")] + [v for k, v in output.get("data", {}).items() if k.startswith("text/")]
            texts += output.get("traceback", [])
            for text in texts:
                found += [line for line in "".join(text).splitlines() if _ABSOLUTE.search(line)]
    return found


def _refresh(path: Path, specs: KernelSpecManager, timeout: int) -> bool:
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    execute(nb, path.parent, specs, timeout=timeout)
    seconds = time.perf_counter() - start
    leaks = absolute_paths(nb)
    if leaks:
        logger.error("%s: not written, its outputs name absolute paths: %s", path, "; ".join(leaks[:3]))
        return False
    nbformat.validate(nb)
    nbformat.write(nb, path)
    logger.info("%s: executed in %.0f s, outputs written", path, seconds)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", type=Path, help="notebooks to execute in place, in this order")
    parser.add_argument("--fresh", action="store_true", help=f"delete each notebook folder's {WORK_DIR}/ first")
    parser.add_argument("--timeout", type=int, default=CELL_TIMEOUT_S, help="seconds allowed per cell")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    missing = [str(p) for p in args.notebooks if p.suffix != ".ipynb" or not p.is_file()]
    if missing:
        parser.error(f"not a notebook file: {', '.join(missing)}")
    if args.fresh:
        for folder in {p.resolve().parent / WORK_DIR for p in args.notebooks}:
            if folder.is_dir():
                logger.info("deleting %s", folder)
                shutil.rmtree(folder)
    with tempfile.TemporaryDirectory(prefix="imaseg-kernels-") as root:
        specs = kernel_spec_manager(Path(root))
        written = [_refresh(path, specs, args.timeout) for path in args.notebooks]
    return 0 if all(written) else 1


if __name__ == "__main__":
    sys.exit(main())
