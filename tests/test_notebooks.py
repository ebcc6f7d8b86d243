"""The exploration notebooks run headless with small settings and show what they promise.

Each notebook's cell tagged ``parameters`` is replaced by tiny settings pointing into ``tmp_path``
(papermill-style), then the notebook runs top to bottom in a fresh kernel of this interpreter.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat
import pytest
from helpers import REPO, TINY_CHANNELS

pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import KernelManager  # noqa: E402
from nbclient import NotebookClient  # noqa: E402

NOTEBOOKS = REPO / "notebooks"
NAMES = ["01_explore_data.ipynb", "02_attack_a_model.ipynb", "03_robust_training.ipynb"]
CELL_TIMEOUT_S = 120

# Tiny versions of the notebooks' settings: 3 patients (fold 0: 1 train, 1 validation, 1 test patient) of
# 32 x 32 x 4, a 3-level UNet trained without augmentation (enough to segment a little, so attacks matter).
TINY_DATA = "DEMO_PATIENTS = 3\nDEMO_SHAPE = (32, 32, 4)\n"
TINY_PREPROCESS = (
    'PREPROCESS = {"intensity": "none", "spatial_size": [32, 32], "folds": 3, "val_groups": 1, '
    '"group_regex": r"^(patient\\d+)"}\n'
)
TINY_TRAIN = (
    f'TRAIN = {{"channels": {TINY_CHANNELS}, "res_units": 0, "epochs": 30, "batch_size": 8, "lr": 0.01, '
    '"augment": False, "clip_range": [0.0, 1.0], "val_steps": 2, "tensorboard": False, "deterministic": True}\n'
)


@pytest.fixture(scope="module")
def kernel_specs(tmp_path_factory) -> KernelSpecManager:
    """A ``python3`` kernelspec that starts *this* interpreter (the venv's), whatever else is installed."""
    root = tmp_path_factory.mktemp("kernels")
    spec = root / "python3"
    spec.mkdir()
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "Python 3", "language": "python"}))
    return KernelSpecManager(kernel_dirs=[str(root)], ensure_native_kernel=False)


def parameters_cell(nb) -> nbformat.NotebookNode:
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "exactly one cell tagged 'parameters'"
    return cells[0]


def execute(name: str, parameters: str, workdir: Path, kernel_specs: KernelSpecManager) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    parameters_cell(nb).source = "# parameters injected by tests/test_notebooks.py\n" + parameters
    workdir.mkdir(parents=True, exist_ok=True)
    manager = KernelManager(kernel_name="python3", kernel_spec_manager=kernel_specs)
    client = NotebookClient(
        nb,
        km=manager,
        timeout=CELL_TIMEOUT_S,
        startup_timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute()
    return nb


def outputs(nb, kind: str = "stream") -> list[dict]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o["output_type"] == kind]


def text_of(nb) -> str:
    """Everything the notebook printed (streams, and the text of displayed results)."""
    parts = [o["text"] for o in outputs(nb, "stream")]
    for kind in ("execute_result", "display_data"):
        parts += [o["data"].get("text/plain", "") for o in outputs(nb, kind)]
    return "\n".join(parts)


def images_of(nb) -> int:
    return sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_stored_clean_with_a_parameters_cell(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "store notebooks without outputs"
    first_code = code[0]
    assert parameters_cell(nb) is first_code, "the settings come first, in the cell tagged 'parameters'"
    assert 'WORK_DIR = "notebook_work"' in first_code.source


@pytest.mark.slow
def test_01_explore_data(tmp_path, kernel_specs):
    work = tmp_path / "work"
    params = f"DATA_DIR = None\nWORK_DIR = {str(work)!r}\n{TINY_DATA}CASES_SHOWN = 2\n"
    nb = execute("01_explore_data.ipynb", params, tmp_path, kernel_specs)
    text = text_of(nb)
    assert (work / "demo_data" / "dataset.json").is_file()
    assert "6 cases" in text and "0 problem(s): the data set is ready" in text
    assert "1.6 x 1.6 x 8" in text  # the true spacing of the demo volumes
    assert "left ventricle voxels" in text  # the per-case label table
    assert images_of(nb) >= 3  # slices with overlays, histograms, class balance


@pytest.mark.slow
def test_02_attack_a_model(tmp_path, kernel_specs):
    work = tmp_path / "work"
    params = (
        f"DATA_DIR = None\nWORK_DIR = {str(work)!r}\nRUN_DIR = None\n{TINY_DATA}{TINY_PREPROCESS}{TINY_TRAIN}"
        "CASE = None\nEPS = 2.0\nSTEPS = 5\nEPS_GRID = [0.0, 1.0, 2.0]\nDEVICE = 'cpu'\n"
    )
    nb = execute("02_attack_a_model.ipynb", params, tmp_path, kernel_specs)
    assert (work / "runs" / "std" / "checkpoints" / "last.pt").is_file()  # trained, as no run was given
    text = text_of(nb)
    match = re.search(r"Dice ([0-9.]+) clean -> ([0-9.]+) under attack", text)
    assert match, text
    clean, attacked = map(float, match.groups())
    assert clean > 0.05 and attacked < clean
    assert images_of(nb) >= 3  # the attack panels, flip radii, Dice against eps


@pytest.mark.slow
def test_03_robust_training(tmp_path, kernel_specs):
    work = tmp_path / "work"
    params = (
        f"DATA_DIR = None\nWORK_DIR = {str(work)!r}\nSTD_RUN = None\nIMA_RUN = None\nPGD_AT_RUN = None\n"
        f"{TINY_DATA}{TINY_PREPROCESS}{TINY_TRAIN}"
        'IMA = {"epochs": 2, "lr": 0.003, "warmup_epochs": 0, "ima_margin": "voxel", "ima_delta": 0.5, '
        '"ima_eps_max": 2.0, "ima_steps": 2}\n'
        # the same epochs, learning rate and inner steps as IMA: the notebook compares the two
        'PGD_AT = {"epochs": 2, "lr": 0.003, "warmup_epochs": 0, "eps": 1.0, "attack_steps": 2}\n'
        'EVAL = {"attacks": ["pgd-l2"], "eps": [0.0, 1.0, 2.0], "steps": 2, "steps_check": False, '
        '"overlays": 1, "tag": "notebook"}\n'
        "DEVICE = 'cpu'\n"
    )
    nb = execute("03_robust_training.ipynb", params, tmp_path, kernel_specs)
    runs = work / "runs"
    margins = json.loads((runs / "ima" / "margins.json").read_text())
    assert [e["epoch"] for e in margins["epochs"]] == [1, 2]
    assert (runs / "pgd-at" / "checkpoints" / "last.pt").is_file()  # fine-tuned beside IMA
    for method in ("std", "pgd-at", "ima"):
        summary = json.loads((runs / method / "eval" / "notebook" / "summary.json").read_text())
        assert summary["attacks"]["pgd-l2"]["eps"] == [0.0, 1.0, 2.0]
        assert summary["method"] == method
    assert (work / "report.html").is_file()
    assert images_of(nb) >= 3  # margins, Dice against eps, the report's curve
    text = text_of(nb)
    assert "epoch 2: mean margin" in text
    for name in ("STD", "PGD-AT", "IMA"):
        assert re.search(rf"{name}:\n\s+clean Dice [0-9.]+", text), text
    # the paired comparison: one test patient, so a difference per budget but no interval and no verdict
    assert "IMA minus PGD-AT, global Dice (mean over classes), paired over 1 test patient(s):" in text, text
    for budget in ("clean", "pgd-l2 eps 1", "pgd-l2 eps 2"):
        assert re.search(rf"{budget}: [+-][0-9]\.[0-9]{{3}} \(one test patient gives no interval\)", text), text
