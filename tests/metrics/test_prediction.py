"""predict_classes: the label map of the largest channel, first channel on ties, 2D and 3D."""

from __future__ import annotations

import pytest
import torch

from imaseg.metrics import predict_classes


@pytest.mark.parametrize(
    "shape",
    [pytest.param((4, 3, 9, 7), id="2d"), pytest.param((2, 4, 6, 5, 3), id="3d"), pytest.param((1, 2, 5), id="1d")],
)
def test_matches_argmax_including_ties(shape):
    generator = torch.Generator().manual_seed(0)
    continuous = torch.randn(shape, generator=generator)
    tied = torch.randint(0, 2, shape, generator=generator).float()  # many exact ties between channels
    for logits in (continuous, tied, continuous.bfloat16()):
        prediction = predict_classes(logits)
        assert prediction.shape == (shape[0], *shape[2:])
        assert prediction.dtype == torch.int64
        assert torch.equal(prediction, logits.argmax(1))


def test_ties_resolve_to_the_first_channel():
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 1:, 0, 0] = 5.0  # channels 1 and 2 tie at the top
    assert predict_classes(logits)[0, 0, 0] == 1
    assert predict_classes(logits)[0, 1, 1] == 0


def test_rejects_a_tensor_without_a_channel_dimension():
    with pytest.raises(ValueError, match=r"`logits` must be \(B, C, \*spatial\), got shape \(5,\)"):
        predict_classes(torch.zeros(5))
