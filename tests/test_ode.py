"""reslab analyze ode: the Euler-step reading of residual units (Chen et al. 2018), measured.

Properties the definitions imply (exactly or in expectation), the summary's verdicts flipping at its
stated margins, and the command end to end on tiny synthetic data.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from reslab.analysis import load_eval_data
from reslab.analysis.common import read_csv
from reslab.analysis.ode import (
    COSINE_MARGIN,
    LARGE_STEP,
    ROUGH,
    SMALL_STEP,
    SMOOTH,
    ODEProfile,
    explain,
    ode_profile,
    step_profile,
    weight_smoothness,
)
from reslab.cli import main
from reslab.models import create_model


@pytest.fixture(scope="module")
def data():
    return load_eval_data("synthetic:1x8x8", samples=16, seed=0)


def _model(name: str, seed: int = 0, **kw):
    torch.manual_seed(seed)
    return create_model(name, num_classes=10, in_chans=1, **kw).eval()


def test_zero_branches_take_zero_steps(data):
    model = _model("resnet20", zero_init_residual=True)
    step, change, cosine = step_profile(model, data.x, data.y)
    assert np.all(step == 0)  # F(h) = 0 exactly: the last BN's scale is zero
    assert np.isnan(cosine).all()  # the cosine of a zero vector is undefined, not 0
    # y = relu(h): where h >= 0 (every unit after the first, whose input is already a ReLU output) no change
    assert np.all(change[1:][np.isfinite(change[1:])] < 1e-6)


def test_independent_neighbours_differ_by_sqrt2_and_copies_by_zero():
    # Two independent draws w, w' of the same zero-mean distribution: E||w - w'||^2 = 2 E||w||^2.
    model = _model("resnet56")
    smooth, stage = weight_smoothness(model)
    assert list(stage) == [0] * 9 + [1] * 9 + [2] * 9
    last = [8, 17, 26]  # a stage's last unit has no successor
    assert np.isnan(smooth[last]).all()
    assert np.isnan(smooth[9]) and np.isnan(
        smooth[18]
    )  # 16->32 / 32->64 conv1 differs in shape from the next
    finite = smooth[np.isfinite(smooth)]
    assert len(finite) == 27 - 5 and np.allclose(finite, math.sqrt(2), atol=0.06)
    with torch.no_grad():  # copy unit 0's weights into units 1-3: smooth there, exactly
        for b in model.layer1[1:4]:
            b.load_state_dict(model.layer1[0].state_dict())
    assert np.all(weight_smoothness(model)[0][:3] == 0)


def test_cosine_sign_is_the_first_order_change_of_the_loss(data):
    """With one image and BN on running statistics, cos(F, -dL/dz) > 0 exactly when scaling the branch up
    (gain 1 + eps) lowers the loss: dL/dgain = <F, dL/dz> (Jastrzebski et al. 2018, Eq. 3)."""
    model = _model("resnet20", seed=1)
    x, y = data.x[:1], data.y[:1]
    _, _, cosine = step_profile(model, x, y, mode="eval")
    checked = 0
    for i, b in enumerate(model.blocks):
        losses = []
        for g in (1 - 1e-3, 1 + 1e-3):
            b.gain = g
            with torch.no_grad():
                losses.append(torch.nn.functional.cross_entropy(model(x).double(), y).item())
        b.gain = 1.0
        slope = (losses[1] - losses[0]) / 2e-3
        if abs(cosine[i]) > 0.01 and abs(slope) > 1e-4:
            assert np.sign(cosine[i]) == -np.sign(slope), (i, cosine[i], slope)
            checked += 1
    assert checked >= 3


def test_profile_of_the_three_kinds(data):
    kinds = {n: ode_profile(_model(n, **kw), data.x, data.y).kind for n, kw in [
        ("plain20", {}), ("resnet20", {}), ("preact_resnet", {"depth": 20, "bottleneck": False})]}  # fmt: skip
    assert kinds == {"plain20": "plain", "resnet20": "residual", "preact_resnet": "pre-activation"}
    dense = ode_profile(_model("densenet_bc", depth=16, growth=6), data.x, data.y)
    assert np.isfinite(dense.step).all() and np.isnan(dense.change).all()  # [x, F] has another shape than x


def _prof(step: float, cosine: float, smooth: float, kind: str = "residual") -> ODEProfile:
    n = 6
    return ODEProfile(
        "net",
        kind,
        True,
        np.zeros(n, int),
        np.full(n, step),
        np.full(n, step),
        np.full(n, cosine),
        np.full(n, smooth),
    )


def test_summary_sentences_flip_at_the_margins():
    eps = 1e-3
    assert "take small steps" in explain([_prof(SMALL_STEP - eps, 0.0, 1.4)])
    assert "neither small" in explain([_prof(SMALL_STEP + eps, 0.0, 1.4)])
    assert "not small Euler steps" in explain([_prof(LARGE_STEP + eps, 0.0, 1.4)])
    assert "point along the negative gradient" in explain([_prof(0.3, COSINE_MARGIN + eps, 1.4)])
    assert "not aligned" in explain([_prof(0.3, COSINE_MARGIN - eps, 1.4)])
    assert "not aligned" in explain([_prof(0.3, -COSINE_MARGIN + eps, 1.4)])
    assert "point against" in explain([_prof(0.3, -COSINE_MARGIN - eps, 1.4)])
    smooth = explain([_prof(0.3, 0.2, SMOOTH - eps)])
    assert "weights vary smoothly with depth, as an ODE limit requires" in smooth and "not met" not in smooth
    assert "only partly smoothly" in explain([_prof(0.3, 0.2, SMOOTH + eps)])
    assert "condition for an ODE limit is not met" in explain([_prof(0.3, 0.2, ROUGH + eps)])
    # the overall verdict: all three, or small steps without smooth weights (iterative refinement)
    assert "the Euler-step reading fits" in explain([_prof(0.3, 0.2, 0.2)])
    assert "their steps do descend the loss" in explain([_prof(0.3, 0.2, 1.4)])
    assert "not even the iterative-refinement reading" in explain([_prof(0.3, 0.0, 1.4)])
    assert "does not fit these networks" in explain([_prof(1.5, -0.2, 1.4)])
    assert "no small-step (Euler) reading" in explain([_prof(1.2, 0.0, 1.4, kind="plain")])


def test_cli_ode_end_to_end(tmp_path):
    out = tmp_path / "ode"
    argv = ["analyze", "ode", "--model", "resnet20,plain20", "--model", "densenet_bc", "--init"]
    argv += [
        "--dataset",
        "synthetic:1x8x8",
        "--samples",
        "16",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    for f in ("ode.csv", "ode.png", "summary.md"):
        assert (out / f).stat().st_size > 0
    rows = read_csv(out / "ode.csv")
    assert {r["target"] for r in rows} == {"resnet20", "plain20", "densenet_bc"}
    assert sum(r["target"] == "resnet20" for r in rows) == 9
    assert all(math.isfinite(float(r["step"])) and math.isfinite(float(r["cosine"])) for r in rows)
    text = (out / "summary.md").read_text()
    assert "What the numbers show" in text and "| resnet20 | residual | init | 9 |" in text
