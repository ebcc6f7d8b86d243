"""The shipped 3D pipelines, ``--quick``, on the real data: ACDC volumes and the chest CTs, trained on 3D
patches (streamed), evaluated on whole volumes through sliding windows, reported."""

from __future__ import annotations

import json

import pytest
from helpers import real_data
from pipeline_tools import PIPELINES, load_pipeline, restored_logging

pytestmark = [pytest.mark.slow, pytest.mark.realdata]


@pytest.mark.parametrize(
    ("script", "data", "config", "extra", "methods"),
    [
        ("heart", "acdc_heart", "heart3d.yaml", [], ["std", "ima"]),
        ("lung", "lung_ct", "lung_ct3d.yaml", ["--dataset", "ct"], ["std", "ima"]),
    ],
    ids=["heart3d", "lung-ct3d"],
)
def test_quick_3d_pipeline(tmp_path, script, data, config, extra, methods):
    real_data(data)
    pipeline = load_pipeline(script)
    out = tmp_path / "out"
    with restored_logging():
        status = pipeline.main(
            ["--out", str(out), "--config", str(PIPELINES / "configs" / config), "--quick", "--device", "cpu", *extra]
        )
    assert status == 0
    runs = {p.parent.parent.parent.name: p for p in out.rglob("eval/default/summary.json")}
    assert sorted(runs) == sorted(methods)
    for method, path in runs.items():
        summary = json.loads(path.read_text())
        assert summary["spatial_dims"] == 3, method
        assert summary["settings"]["eps_unit"] == "rms"
        assert 0.0 <= summary["clean"]["mean_dice"]["global"] <= 1.0
        train = (path.parents[2] / "config.yaml").read_text()
        assert "patch_size" in train and "loader: stream" in train
    reports = list(out.rglob("report.md"))
    assert reports, "the chain ends in a report"
    text = reports[0].read_text()
    assert "model input each case at its own preprocessed size" in text, "native-size 3D input, not a '?'"
    assert "L2 over the whole 3D volume" in text
