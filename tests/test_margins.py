"""Margin heads (issue 33): ArcFace and CosFace against the reference formulas (arcface_torch's
``losses.py``), hand-checked logits, fp32 under autocast, and gradients reaching embedding and weight."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from reslab.errors import ConfigError
from reslab.models.margins import ArcFace, CosFace, cosine_logits, make_margin


def reference_arcface(logits, labels, s=64.0, margin=0.5, easy_margin=False):
    """arcface_torch's ArcFace.forward, transcribed (in place on a copy)."""
    logits = logits.clone()
    cos_m, sin_m = math.cos(margin), math.sin(margin)
    theta, sinmm = math.cos(math.pi - margin), math.sin(math.pi - margin) * margin
    index = torch.where(labels != -1)[0]
    target = logits[index, labels[index].view(-1)]
    sin_theta = torch.sqrt(1.0 - torch.pow(target, 2))
    cos_theta_m = target * cos_m - sin_theta * sin_m
    if easy_margin:
        final = torch.where(target > 0, cos_theta_m, target)
    else:
        final = torch.where(target > theta, cos_theta_m, target - sinmm)
    logits[index, labels[index].view(-1)] = final
    return logits * s


def test_arcface_hand_checked_logits():
    cos = torch.tensor([[0.5, 0.2, -0.1], [0.3, -0.9, 0.0]])
    out = ArcFace()(cos, torch.tensor([0, 1]))
    # row 0: target cos 0.5 -> theta = pi/3, cos(pi/3 + 0.5) * 64
    assert out[0, 0].item() == pytest.approx(64 * math.cos(math.pi / 3 + 0.5), abs=1e-4)
    assert out[0, 1].item() == pytest.approx(64 * 0.2) and out[0, 2].item() == pytest.approx(-6.4)
    # row 1: target cos -0.9 is beyond cos(pi - 0.5) = -0.8776: the linear fall-back cos - sin(pi - m) m
    assert math.cos(math.pi - 0.5) > -0.9
    assert out[1, 1].item() == pytest.approx(64 * (-0.9 - math.sin(math.pi - 0.5) * 0.5), abs=1e-4)
    assert out[1, 0].item() == pytest.approx(64 * 0.3)
    # easy margin: a negative target cosine keeps its value
    easy = ArcFace(easy_margin=True)(torch.tensor([[-0.2, 0.1]]), torch.tensor([0]))
    assert easy[0, 0].item() == pytest.approx(-0.2 * 64)


@pytest.mark.parametrize("easy", [False, True])
def test_arcface_equals_the_reference_code(easy):
    g = torch.Generator().manual_seed(0)
    cos = torch.rand(64, 10, generator=g) * 1.998 - 0.999
    labels = torch.randint(0, 10, (64,), generator=g)
    labels[::7] = -1  # the reference skips these rows
    ours = ArcFace(easy_margin=easy)(cos, labels)
    torch.testing.assert_close(ours, reference_arcface(cos, labels, easy_margin=easy), rtol=1e-5, atol=1e-4)


def test_cosface_hand_checked_and_reference_defaults():
    cos = torch.tensor([[0.5, 0.2], [0.1, 0.7]])
    out = CosFace()(cos, torch.tensor([0, -1]))
    torch.testing.assert_close(out, 64 * torch.tensor([[0.5 - 0.35, 0.2], [0.1, 0.7]]))
    assert (CosFace().s, CosFace().m) == (64.0, 0.35) and (ArcFace().s, ArcFace().m) == (64.0, 0.5)


@pytest.mark.parametrize("name", ["arcface", "cosface"])
def test_gradients_reach_embedding_and_class_weight_in_fp32_under_autocast(name):
    torch.manual_seed(0)
    emb = torch.randn(8, 16, requires_grad=True)
    weight = torch.randn(5, 16, requires_grad=True)
    labels = torch.arange(8) % 5
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cos = cosine_logits(emb.to(torch.bfloat16), weight)
        logits = make_margin(name)(cos, labels)
    assert cos.dtype == torch.float32 and logits.dtype == torch.float32
    assert cos.abs().max() <= 1.0
    F.cross_entropy(logits, labels).backward()
    for t in (emb, weight):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
    # the margin lowers the target logit below the plain scaled cosine
    assert (logits[torch.arange(8), labels] < 64 * cos[torch.arange(8), labels]).all()


def test_cosine_logits_is_the_normalized_linear():
    e, w = torch.randn(3, 4), torch.randn(2, 4)
    expected = (e / e.norm(dim=1, keepdim=True)) @ (w / w.norm(dim=1, keepdim=True)).T
    torch.testing.assert_close(cosine_logits(e, w), expected)


def test_a_bad_head_is_one_line():
    assert make_margin("softmax") is None
    with pytest.raises(ConfigError, match="unknown head 'sphereface'; choose from arcface, cosface, softmax"):
        make_margin("sphereface")
    with pytest.raises(ConfigError, match="margin m"):
        make_margin("arcface", m=2.0)
