"""The notebooks are committed with their outputs, and still run headless with small settings and show what
they promise.

The stored notebooks were executed at their own default settings (``python notebooks/execute.py NB``): every
cell that prints or plots shows its output, without errors or absolute paths. The tests re-execute an
in-memory copy (stored outputs dropped) whose cell tagged ``parameters`` is replaced by tiny settings
pointing into ``tmp_path`` (papermill-style), top to bottom in a fresh kernel of this interpreter.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import nbformat
import pytest
import torch
from helpers import REPO, TINY_CHANNELS

pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = REPO / "notebooks"
NAMES = ["01_explore_data.ipynb", "02_attack_a_model.ipynb", "03_robust_training.ipynb", "04_monai_engines.ipynb"]
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


def _load_execute_script():
    """``notebooks/execute.py``, the maintainers' refresh command, whose kernel and runner the tests share."""
    spec = importlib.util.spec_from_file_location("notebooks_execute", NOTEBOOKS / "execute.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


refresh = _load_execute_script()


@pytest.fixture(scope="module")
def kernel_specs(tmp_path_factory):
    """A ``python3`` kernelspec that starts *this* interpreter (the venv's), whatever else is installed."""
    return refresh.kernel_spec_manager(tmp_path_factory.mktemp("kernels"))


def parameters_cell(nb) -> nbformat.NotebookNode:
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "exactly one cell tagged 'parameters'"
    return cells[0]


def execute(name: str, parameters: str, workdir: Path, kernel_specs) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    parameters_cell(nb).source = "# parameters injected by tests/test_notebooks.py\n" + parameters
    workdir.mkdir(parents=True, exist_ok=True)
    return refresh.execute(nb, workdir, kernel_specs, timeout=CELL_TIMEOUT_S)  # stored outputs dropped first


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
def test_notebook_has_a_title_and_its_settings_first_in_a_parameters_cell(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    first_code = next(c for c in nb.cells if c.cell_type == "code")
    assert parameters_cell(nb) is first_code, "the settings come first, in the cell tagged 'parameters'"
    assert 'WORK_DIR = "notebook_work"' in first_code.source


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_stored_with_the_outputs_of_one_clean_run(name):
    """Executed top to bottom in one kernel (python notebooks/execute.py), so the outputs show where it is browsed."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), "run once, in order: execute.py"
    for cell in code:
        shows = any(call in cell.source for call in ("print(", "display(", "plt.show()"))
        assert cell.outputs or not shows, f"no stored output for the cell starting {cell.source[:60]!r}"
        if "plt.show()" in cell.source:
            assert any("image/png" in o.get("data", {}) for o in cell.outputs), "a plotting cell stores its figure"
        assert not [o for o in cell.outputs if o["output_type"] == "error"], "stored outputs without errors"
        stderr = [o["text"] for o in cell.outputs if o["output_type"] == "stream" and o["name"] == "stderr"]
        assert not [t for t in stderr if "Traceback" in t or "Error" in t], stderr
    assert images_of(nb) >= 1
    leaks = refresh.absolute_paths(nb)
    assert not leaks, f"outputs name absolute paths (print paths relative to the notebook): {leaks[:3]}"
    assert str(REPO) not in json.dumps([c.outputs for c in code])


def test_absolute_paths_are_found_in_outputs_and_relative_ones_are_not():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")])
    nb.cells[0].outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="run: notebook_work/runs/std\ncache /tmp/x/cache\n"),
        nbformat.v4.new_output("display_data", data={"text/plain": "PosixPath('/home/me/data')"}),
    ]
    assert refresh.absolute_paths(nb) == ["cache /tmp/x/cache", "PosixPath('/home/me/data')"]


def test_the_refresh_command_refuses_what_is_not_a_notebook(tmp_path, capsys):
    with pytest.raises(SystemExit):
        refresh.main([str(tmp_path / "missing.ipynb")])
    assert re.search(r"not a notebook file: .*missing\.ipynb", capsys.readouterr().err)


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


@pytest.mark.slow
def test_04_monai_engines(tmp_path, kernel_specs):
    pytest.importorskip("ignite", reason="MONAI's engines need pytorch-ignite (in the test extra)")
    work = tmp_path / "work"
    params = (
        f"WORK_DIR = {str(work)!r}\n{TINY_DATA}VAL_PATIENTS = 1\nTEST_PATIENTS = 1\nTRAIN_PATIENTS = None\n"
        f"SPATIAL_SIZE = (32, 32)\nCHANNELS = {tuple(TINY_CHANNELS)}\n"
        'METHOD = "pgd-at"\nMETHOD_SETTINGS = {"eps": 1.0, "attack_steps": 1}\nEPOCHS = 2\nBATCH_SIZE = 8\n'
        'LR = 0.01\nVAL_ATTACK = "pgd-l2"\nVAL_EPS = 1.0\nVAL_STEPS = 2\nTEST_EPS = [0.0, 1.0]\nTEST_STEPS = 2\n'
        "DEVICE = 'cpu'\n"
    )
    nb = execute("04_monai_engines.ipynb", params, tmp_path, kernel_specs)
    text = text_of(nb)
    assert "train: 1 patients, 8 slices of (32, 32)" in text, text
    assert "validation: patient002 (2 volumes); test: patient003 (2 volumes)" in text, text
    # clean and robust validation Dice logged by MONAI's evaluators, every epoch
    epochs = re.findall(
        r"epoch +(\d+): loss [0-9.]+, validation Dice ([0-9.]+) clean, ([0-9.]+) under pgd-l2 eps 1", text
    )
    assert [int(e) for e, _, _ in epochs] == [1, 2], text
    robust = [float(r) for _, _, r in epochs]
    match = re.search(r"best robust validation Dice ([0-9.]+) at epoch (\d+): ", text)
    assert match and float(match[1]) == pytest.approx(max(robust), abs=1e-3), text
    # CheckpointSaver kept the best robust checkpoint only: the network and the method's state
    (best,) = (work / "monai_engines" / "checkpoints").glob("*key_metric=*.pt")
    assert float(best.name.split("key_metric=")[1][: -len(".pt")]) == pytest.approx(float(match[1]), abs=1e-3)
    assert set(torch.load(best, weights_only=True)) == {"network", "method"}
    best_epoch = int(match[2])
    assert re.search(r"last epoch \(2\): eps 0 [0-9.]+, eps 1 [0-9.]+", text), text
    assert re.search(rf"best robust \(epoch {best_epoch}\): eps 0 [0-9.]+, eps 1 [0-9.]+", text), text
    assert images_of(nb) >= 2  # clean and robust Dice per epoch, the test-side curves
