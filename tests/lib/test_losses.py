"""Tests for lqknn.losses against hand-computed values and limits."""

from __future__ import annotations

import math

import pytest
import torch

from lqknn.losses import (
    LOSS_NAMES,
    CrossEntropy,
    GeneralizedCrossEntropy,
    SymmetricCrossEntropy,
    make_loss,
)

LOGITS = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.5], [-1.0, 3.0, 0.0]])
TARGET = torch.tensor([0, 2, 2])


def _softmax_by_hand(row):
    exps = [math.exp(v) for v in row]
    total = sum(exps)
    return [e / total for e in exps]


def _p_target():
    return [
        _softmax_by_hand(row)[t]
        for row, t in zip(LOGITS.tolist(), TARGET.tolist(), strict=True)
    ]


def test_cross_entropy_hand_computed():
    expected = sum(-math.log(p) for p in _p_target()) / 3
    got = CrossEntropy()(LOGITS, TARGET).item()
    assert got == pytest.approx(expected, rel=1e-6)


def test_cross_entropy_known_value_uniform():
    # uniform logits over 3 classes: -log(1/3) = log 3
    got = CrossEntropy()(torch.zeros(1, 3), torch.tensor([1])).item()
    assert got == pytest.approx(math.log(3), rel=1e-6)


@pytest.mark.parametrize("q", [0.3, 0.5, 0.7])
def test_gce_hand_computed(q):
    expected = sum((1 - p**q) / q for p in _p_target()) / 3
    got = GeneralizedCrossEntropy(q)(LOGITS, TARGET).item()
    assert got == pytest.approx(expected, rel=1e-6)


def test_gce_uniform_two_classes_known_value():
    # p_y = 1/2, q = 1/2: (1 - sqrt(1/2)) / (1/2) = 2 - sqrt(2)
    got = GeneralizedCrossEntropy(0.5)(torch.zeros(1, 2), torch.tensor([0])).item()
    assert got == pytest.approx(2 - math.sqrt(2), rel=1e-6)


def test_gce_tends_to_ce_as_q_goes_to_zero():
    ce = sum(-math.log(p) for p in _p_target()) / 3
    got = GeneralizedCrossEntropy(1e-4)(LOGITS, TARGET).item()
    assert got == pytest.approx(ce, rel=1e-3)
    # and the gap shrinks monotonically with q
    gaps = [
        abs(GeneralizedCrossEntropy(q)(LOGITS, TARGET).item() - ce)
        for q in (0.5, 0.1, 0.01)
    ]
    assert gaps[0] > gaps[1] > gaps[2]


def test_gce_at_q_one_is_one_minus_p_target():
    expected = sum(1 - p for p in _p_target()) / 3
    got = GeneralizedCrossEntropy(1.0)(LOGITS, TARGET).item()
    assert got == pytest.approx(expected, rel=1e-6)


def test_sce_against_manual_formula():
    alpha, beta, clamp = 0.1, 1.0, 1e-4
    total = 0.0
    for row, t in zip(LOGITS.tolist(), TARGET.tolist(), strict=True):
        p = _softmax_by_hand(row)
        ce = -math.log(p[t])
        one_hot = [1.0 if k == t else clamp for k in range(3)]
        rce = -sum(pk * math.log(yk) for pk, yk in zip(p, one_hot, strict=True))
        total += alpha * ce + beta * rce
    got = SymmetricCrossEntropy(alpha, beta, clamp)(LOGITS, TARGET).item()
    assert got == pytest.approx(total / 3, rel=1e-6)


def test_sce_weights_only_beta_is_scaled_mae():
    expected = sum(-math.log(1e-4) * (1 - p) for p in _p_target()) / 3
    got = SymmetricCrossEntropy(alpha=0.0, beta=1.0)(LOGITS, TARGET).item()
    assert got == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    "loss",
    [
        CrossEntropy(),
        GeneralizedCrossEntropy(0.7),
        GeneralizedCrossEntropy(1e-4),
        GeneralizedCrossEntropy(1.0),
        SymmetricCrossEntropy(),
    ],
)
def test_finite_values_and_gradients_on_confident_wrong_predictions(loss):
    logits = torch.tensor([[50.0, -50.0], [-80.0, 80.0]], requires_grad=True)
    target = torch.tensor([1, 0])
    value = loss(logits, target)
    value.backward()
    assert torch.isfinite(value)
    assert torch.isfinite(logits.grad).all()


def test_confident_wrong_values():
    logits = torch.tensor([[50.0, -50.0]])
    target = torch.tensor([1])
    # CE = 100 (log-sum-exp), GCE(q=1) = 1 - p_y ~ 1, SCE = 0.1*100 - log(1e-4)
    assert CrossEntropy()(logits, target).item() == pytest.approx(100.0, rel=1e-5)
    assert GeneralizedCrossEntropy(1.0)(logits, target).item() == pytest.approx(1.0)
    assert GeneralizedCrossEntropy(0.7)(logits, target).item() == pytest.approx(1 / 0.7)
    sce = SymmetricCrossEntropy()(logits, target).item()
    assert sce == pytest.approx(10.0 - math.log(1e-4), rel=1e-5)


def test_losses_use_mean_reduction():
    one = GeneralizedCrossEntropy(0.7)(LOGITS[:1], TARGET[:1]).item()
    repeated = GeneralizedCrossEntropy(0.7)(
        LOGITS[:1].repeat(5, 1), TARGET[:1].repeat(5)
    ).item()
    assert repeated == pytest.approx(one, rel=1e-6)


def test_make_loss_builds_each_loss():
    assert isinstance(make_loss("ce"), CrossEntropy)
    gce = make_loss("GCE", q=0.5)
    assert isinstance(gce, GeneralizedCrossEntropy) and gce.q == 0.5
    sce = make_loss("sce", alpha=0.5, beta=2.0)
    assert isinstance(sce, SymmetricCrossEntropy)
    assert (sce.alpha, sce.beta, sce.clamp) == (0.5, 2.0, 1e-4)
    assert set(LOSS_NAMES) == {"ce", "gce", "sce"}


def test_make_loss_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"loss must be one of \['ce', 'gce', 'sce'\]"):
        make_loss("mse")
    with pytest.raises(ValueError, match="loss must be one of"):
        make_loss(None)


def test_make_loss_unknown_parameter():
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['q'\]"):
        make_loss("ce", q=0.7)
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['gamma'\]"):
        make_loss("sce", gamma=1.0)


@pytest.mark.parametrize("q", [0.0, -0.1, 1.5])
def test_gce_q_out_of_range(q):
    with pytest.raises(ValueError, match=r"q must be in \(0.0, 1.0\]"):
        GeneralizedCrossEntropy(q)


def test_gce_q_not_a_number():
    with pytest.raises(TypeError, match="q must be a number"):
        make_loss("gce", q="0.7")


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"alpha": -0.1}, r"alpha must be in \[0.0, inf\]"),
        ({"beta": -1.0}, r"beta must be in \[0.0, inf\]"),
        ({"clamp": 0.0}, r"clamp must be in \(0.0, 1.0\)"),
        ({"clamp": 1.0}, r"clamp must be in \(0.0, 1.0\)"),
        ({"alpha": 0.0, "beta": 0.0}, "must not both be 0"),
    ],
)
def test_sce_bad_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        make_loss("sce", **params)
