"""MarginBank: IMA's per-sample margins and the official end-of-epoch update rule, on hand-made visits."""

from __future__ import annotations

import pytest
import torch

from imaseg.losses import MarginBank

IDS = ["a:000", "a:001", "b:000", "b:001", "c:000"]
DELTA, EPS_MAX = 0.25, 1.0


def make_bank(ids=IDS, delta=DELTA, eps_max=EPS_MAX) -> MarginBank:
    return MarginBank(ids, delta=delta, eps_max=eps_max)


def visit(bank: MarginBank, index, norm, survived) -> None:
    bank.record(torch.tensor(index), torch.tensor(norm, dtype=torch.float32), torch.tensor(survived))


def test_margins_start_at_delta():
    bank = make_bank()
    assert len(bank) == len(IDS)
    assert torch.equal(bank.margins, torch.full((5,), DELTA))
    assert torch.equal(bank.lookup(torch.tensor([4, 0])), torch.tensor([DELTA, DELTA]))


@pytest.mark.parametrize(
    ("visits", "expected"),
    [
        pytest.param([([0], [0.7], [True])], DELTA + DELTA, id="survived-grows-by-delta"),
        pytest.param([([0], [0.05], [False])], (DELTA + 0.05) / 2, id="failed-takes-estimate"),
        pytest.param(
            [([0], [0.05], [False]), ([0], [0.15], [False])],
            ((DELTA + 0.05) / 2 + 0.15) / 2,
            id="two-failed-visits-compose",
        ),
        pytest.param(
            [([0, 0], [0.05, 0.15], [False, False])], ((DELTA + 0.05) / 2 + 0.15) / 2, id="twice-in-one-batch"
        ),
        pytest.param([([0], [0.05], [False]), ([0], [0.2], [True])], DELTA + DELTA, id="sticky-fail-then-survive"),
        pytest.param([([0], [0.2], [True]), ([0], [0.05], [False])], DELTA + DELTA, id="sticky-survive-then-fail"),
    ],
)
def test_update_rule_of_one_epoch(visits, expected):
    bank = make_bank()
    for index, norm, survived in visits:
        visit(bank, index, norm, survived)
    bank.end_epoch()
    assert bank.margins[0].item() == pytest.approx(expected, abs=1e-7)
    assert torch.equal(bank.margins[1:], torch.full((4,), DELTA)), "unvisited samples keep their margin"


def test_margins_are_clamped_to_eps_max():
    bank = make_bank(delta=0.4, eps_max=1.0)
    expected = [0.8, 1.0, 1.0]  # 0.4 -> 0.8 -> 1.2 clamped -> stays 1.0
    for value in expected:
        visit(bank, [0], [0.3], [True])
        stats = bank.end_epoch()
        assert bank.margins[0].item() == pytest.approx(value)
    assert stats["margin_at_max"] == pytest.approx(1 / 5)


def test_margins_are_clamped_at_zero():
    bank = make_bank()
    visit(bank, [2], [-3.0], [False])  # (0.25 - 3) / 2 < 0; norms are never negative, but the clamp must hold
    bank.end_epoch()
    assert bank.margins[2].item() == 0.0


def test_eps_min_is_the_start_and_the_floor():
    bank = MarginBank(IDS, delta=DELTA, eps_max=2.0, eps_min=1.0)
    assert torch.equal(bank.margins, torch.full((5,), 1.0)), "margins start at the floor when it is above delta"
    visit(bank, [0, 1], [0.1, 1.0], [False, True])
    bank.end_epoch()
    assert bank.margins[0].item() == 1.0, "a failing sample falls back to the floor, not below it"
    assert bank.margins[1].item() == pytest.approx(1.0 + DELTA), "a surviving sample grows above the floor"
    assert bank.get_extra_state()["eps_min"] == 1.0


def test_accumulators_reset_after_end_epoch():
    bank = make_bank()
    visit(bank, [0, 1, 2], [0.1, 0.6, 0.0], [False, True, False])
    bank.end_epoch()
    after_first = bank.margins.clone()
    assert torch.equal(after_first, torch.tensor([(DELTA + 0.1) / 2, 2 * DELTA, DELTA / 2, DELTA, DELTA]))
    assert torch.equal(bank.visits, torch.zeros(5, dtype=torch.int64))
    assert torch.equal(bank.survived, torch.zeros(5, dtype=torch.int64))
    assert torch.equal(bank.estimate, after_first), "the running estimate restarts at the new margin"
    assert int(bank.epochs) == 1

    stats = bank.end_epoch()  # an epoch without visits changes nothing
    assert torch.equal(bank.margins, after_first)
    assert stats["visited_fraction"] == 0.0 and stats["fail_fraction"] == 0.0

    visit(bank, [1], [0.3], [False])  # the next failure averages with the *new* margin 0.5, not with 0.25
    bank.end_epoch()
    assert bank.margins[1].item() == pytest.approx((2 * DELTA + 0.3) / 2)


def test_statistics_of_known_margins():
    bank = make_bank()
    bank.margins.copy_(torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]))
    stats = bank.statistics()
    assert stats == pytest.approx(
        {
            "margin_mean": 0.5,
            "margin_q10": 0.1,
            "margin_q25": 0.25,
            "margin_median": 0.5,
            "margin_q75": 0.75,
            "margin_q90": 0.9,
            "margin_at_max": 0.2,
        }
    )


def test_end_epoch_reports_fail_and_visited_fractions():
    bank = make_bank()
    visit(bank, [0, 1, 2, 1], [0.1, 0.1, 0.9, 0.1], [False, False, True, True])  # 1 failed, 2 survived (1 sticky)
    stats = bank.end_epoch()
    assert stats["fail_fraction"] == pytest.approx(1 / 3)
    assert stats["visited_fraction"] == pytest.approx(3 / 5)
    assert stats["margin_mean"] == pytest.approx(float(bank.margins.mean()))


def test_empty_bank_has_no_statistics():
    assert make_bank(ids=[]).statistics() == {}


def test_state_dict_round_trip_carries_margins_and_sample_ids():
    bank = make_bank()
    visit(bank, [0, 3], [0.1, 0.9], [False, True])
    bank.end_epoch()
    visit(bank, [4], [0.05], [False])  # mid-epoch accumulators travel too
    state = bank.state_dict()
    assert state["_extra_state"]["sample_ids"] == IDS

    restored = make_bank()
    restored.load_state_dict(state)
    for name in ("margins", "estimate", "visits", "survived", "epochs"):
        assert torch.equal(getattr(restored, name), getattr(bank, name)), name
    restored.end_epoch()
    bank.end_epoch()
    assert torch.equal(restored.margins, bank.margins)


@pytest.mark.parametrize(
    "other_ids",
    [pytest.param(["z", *IDS[1:]], id="same-count-other-ids"), pytest.param(IDS[:4], id="fewer-samples")],
)
def test_loading_margins_of_other_samples_is_refused(other_ids):
    state = make_bank().state_dict()
    with pytest.raises(ValueError, match="belong to other training samples.*same cache, fold and split"):
        make_bank(ids=other_ids).load_state_dict(state)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param(
            {"delta": 2.0, "eps_max": 1.0}, r"`delta` \(2.0\) must not exceed `eps_max` \(1.0\)", id="delta>eps_max"
        ),
        pytest.param({"delta": -0.1, "eps_max": 1.0}, r"`delta` must be >= 0, got -0.1", id="negative-delta"),
        pytest.param({"delta": 0.1, "eps_max": -1.0}, r"`eps_max` must be >= 0, got -1.0", id="negative-eps_max"),
        pytest.param({"delta": float("nan"), "eps_max": 1.0}, r"`delta` must be >= 0", id="nan-delta"),
        pytest.param(
            {"delta": 0.1, "eps_max": 1.0, "eps_min": 1.5},
            r"`eps_min` \(1.5\) must not exceed `eps_max` \(1.0\)",
            id="eps_min>eps_max",
        ),
        pytest.param(
            {"delta": 0.1, "eps_max": 1.0, "eps_min": -0.5}, r"`eps_min` must be >= 0, got -0.5", id="neg-eps_min"
        ),
        pytest.param(
            {"delta": 0.1, "eps_max": 1.0, "ids": ["a", "a"]}, "`sample_ids` must be unique", id="duplicate-ids"
        ),
    ],
)
def test_bad_arguments_raise_with_a_message(kwargs, match):
    ids = kwargs.pop("ids", IDS)
    with pytest.raises(ValueError, match=match):
        MarginBank(ids, **kwargs)


@pytest.mark.parametrize(("share", "grows"), [(0.0, True), (0.5, False), (0.4, True)])
def test_with_many_visits_a_margin_grows_only_when_enough_of_them_survived(share, grows):
    bank = MarginBank(["a"], delta=0.5, eps_max=4.0, survival_share=share)
    index = torch.tensor([0])
    bank.record(index, torch.tensor([0.2]), torch.tensor([True]))  # one visit survives ...
    bank.record(index, torch.tensor([0.2]), torch.tensor([False]))  # ... the other fails
    bank.end_epoch()
    assert bank.margins[0].item() == pytest.approx(1.0 if grows else 0.275)  # grown, or the boundary estimate


def test_survival_share_is_a_probability():
    with pytest.raises(ValueError, match="survival_share"):
        MarginBank(["a"], delta=0.5, eps_max=4.0, survival_share=1.5)
