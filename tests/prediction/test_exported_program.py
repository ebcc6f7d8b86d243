"""``models/model.pt2``: the network as a torch.export program that runs any batch size without its class."""

from __future__ import annotations

from imaseg.prediction.bundle import export_bundle


def test_the_bundle_holds_a_torch_export_program_with_a_dynamic_batch(tiny_run, tmp_path):
    import torch

    from imaseg.run_model import load_run_model

    bundle = export_bundle(tiny_run, tmp_path / "bundle")
    program = torch.export.load(str(bundle / "models" / "model.pt2")).module()
    network = load_run_model(tiny_run).network.eval()
    for batch in (1, 3):
        x = torch.rand(batch, 1, 32, 32)
        with torch.no_grad():
            torch.testing.assert_close(program(x), network(x))
