"""Fig. 7 as He et al. measure it (issue 30): every 3x3 layer's output after BN, its std, and the stated
tests that decide the two readings, checked against SciPy/statsmodels and a direct computation."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from reslab.analysis import response_claims as rc
from reslab.analysis.command import finished_runs
from reslab.analysis.responses import response_layers, response_std, run_responses
from reslab.analysis.targets import EvalData, Target
from reslab.models import create_model


def _data(n: int = 24) -> EvalData:
    g = torch.Generator().manual_seed(0)
    return EvalData("synthetic", torch.randn(n, 1, 28, 28, generator=g), torch.zeros(n, dtype=torch.long), 10)


@pytest.mark.parametrize("name,units", [("resnet20", 9), ("plain20", 9), ("resnet32", 15)])
def test_every_3x3_layer_is_measured_the_stem_and_two_per_unit(name, units):
    model = create_model(name, num_classes=10, in_chans=1)
    layers = response_layers(model)
    assert len(layers) == 2 * units + 1 == int(name[-2:]) - 1  # depth = 3x3 layers + the classifier
    assert layers[0] is model.bn1 and layers[-1] is model.blocks[-1].residual.bn2


def test_a_1x1_convolutions_bn_is_not_a_3x3_layer():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4))
    assert response_layers(net) == [net[1]]


def test_the_std_is_that_of_the_bn_output_before_the_relu():
    model = create_model("resnet20", num_classes=10, in_chans=1).eval()
    for m in model.modules():  # running statistics away from (0, 1): eval mode must use them
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    data = _data()
    seen = []
    h = model.blocks[4].residual.bn1.register_forward_hook(lambda m, a, o: seen.append(o.detach().double()))
    std, cstd = response_std(model, data, batch_size=10)  # three batches: the sums must combine
    h.remove()
    out = torch.cat(seen[:3])
    assert std[1 + 2 * 4] == pytest.approx(out.std(unbiased=False).item(), rel=1e-9)
    per_channel = out.transpose(0, 1).reshape(out.shape[1], -1).std(dim=1, unbiased=False)
    assert cstd[1 + 2 * 4] == pytest.approx(per_channel.mean().item(), rel=1e-9)


def test_the_same_weights_passed_twice_count_once(tmp_path):
    torch.manual_seed(0)
    a = create_model("resnet20", num_classes=10, in_chans=1).eval()
    b = create_model("plain20", num_classes=10, in_chans=1).eval()
    data = _data(8)
    targets = [
        Target(lbl, m, data, "x") for lbl, m in (("resnet20-s0", a), ("resnet20-s0#2", a), ("plain20-s0", b))
    ]
    out = run_responses(targets, tmp_path)
    assert [(n.label, n.seeds) for n in out["networks"]] == [("plain-20", ["s0"]), ("ResNet-20", ["s0"])]
    assert "the same weights as `resnet20-s0`" in (tmp_path / "summary.md").read_text()


def test_profiles_measured_earlier_count_once_and_only_on_the_same_images(tmp_path):
    """A study measured in parts (checkpoints on different machines): the earlier responses.csv counts
    with the new targets, the same weights once, and the merged result equals measuring all at once."""
    from reslab.errors import ConfigError

    torch.manual_seed(0)
    nets = {f"{f}20-s{k}": create_model(f"{f}20", num_classes=10, in_chans=1).eval()
            for f in ("resnet", "plain") for k in (0, 1)}  # fmt: skip
    data = _data(8)
    t = {label: Target(label, m, data, "x") for label, m in nets.items()}
    run_responses([t["resnet20-s0"], t["plain20-s0"]], tmp_path / "a")
    merged = run_responses([t["resnet20-s0"], t["resnet20-s1"], t["plain20-s1"]], tmp_path / "b",
                           measured=[str(tmp_path / "a" / "responses.csv")])  # fmt: skip
    at_once = run_responses(list(t.values()), tmp_path / "c")

    def profiles(out: dict) -> dict:
        return {(n.label, seed): p for n in out["networks"] for seed, p in zip(n.seeds, n.profiles)}

    assert sorted(profiles(merged)) == sorted(profiles(at_once)) and len(profiles(at_once)) == 4
    for k, p in profiles(at_once).items():
        np.testing.assert_allclose(profiles(merged)[k], p, rtol=1e-12)  # repr() in the CSV: exact
    summary = (tmp_path / "b" / "summary.md").read_text()
    assert "Measured earlier on the same images" in summary and "the same weights as `resnet20-s0`" in summary
    from reslab.analysis.responses import _data_key

    # the same images normalized with another run's statistics are the same images; other pixels are not
    assert _data_key(replace(data, x=data.x * 2, images="k")) == _data_key(replace(data, images="k"))
    other = replace(data, x=data.x + 1)
    with pytest.raises(ConfigError, match="other images"):
        run_responses([Target("plain20-s1", nets["plain20-s1"], other, "x")], tmp_path / "d",
                      measured=[str(tmp_path / "a" / "responses.csv")])  # fmt: skip
    (tmp_path / "old.csv").write_text("target,network,seed,layer,std\nx,resnet20,s0,1,0.5\n")
    with pytest.raises(ConfigError, match=r"not a responses\.csv of this version"):
        run_responses([t["plain20-s1"]], tmp_path / "e", measured=[str(tmp_path / "old.csv")])


def _net(family: str, depth: int, medians) -> rc.Network:
    return rc.Network(family, depth, [f"s{i}" for i in range(len(medians))], [np.full(5, m) for m in medians])


def test_residual_against_plain_is_welch_over_seeds_and_needs_three_seeds():
    from scipy import stats

    res, plain = [0.30, 0.31, 0.29], [0.40, 0.42, 0.39]
    (c, *_) = rc.judge_responses([_net("resnet", 20, res), _net("plain", 20, plain)])
    assert c.p == pytest.approx(stats.ttest_ind(res, plain, equal_var=False).pvalue)
    assert c.estimate == pytest.approx(np.mean(res) - np.mean(plain)) and c.verdict == "supported"
    (c, *_) = rc.judge_responses([_net("resnet", 20, plain), _net("plain", 20, res)])
    assert c.verdict == "not supported"
    (c, *_) = rc.judge_responses([_net("resnet", 20, res[:2]), _net("plain", 20, plain[:2])])
    assert c.p < 0.05 and c.verdict == "inconclusive"  # two seeds: no verdict, whatever p says
    (c, *_) = rc.judge_responses([_net("resnet", 20, res[:1]), _net("plain", 20, plain)])
    assert math.isnan(c.p) and "no test" in rc.claims_markdown([c])


def test_depth_slope_and_interaction_are_ols_on_log_depth_with_holm():
    from scipy import stats
    from statsmodels.stats.multitest import multipletests

    r = {20: [0.36, 0.35, 0.37], 56: [0.33, 0.32, 0.335], 110: [0.30, 0.31, 0.305]}
    p = {20: [0.38, 0.39, 0.37], 56: [0.37, 0.38, 0.375], 110: [0.37, 0.36, 0.38]}
    nets = [_net("resnet", d, v) for d, v in r.items()] + [_net("plain", d, v) for d, v in p.items()]
    claims = rc.judge_responses(nets)
    assert [c.claim for c in claims][-2:] == [rc._SLOPE, rc._STEEPER] and len(claims) == 5
    x = [math.log2(d) for d, v in r.items() for _ in v]
    fit = stats.linregress(x, [m for v in r.values() for m in v])
    slope, steeper = claims[-2:]
    assert slope.estimate == pytest.approx(fit.slope) and slope.p == pytest.approx(fit.pvalue)
    plain_fit = stats.linregress(x, [m for v in p.values() for m in v])
    assert steeper.estimate == pytest.approx(fit.slope - plain_fit.slope)  # OLS with full interaction
    assert [c.p_holm for c in claims] == pytest.approx(
        list(multipletests([c.p for c in claims], method="holm")[1])
    )
    assert slope.verdict == "supported" and steeper.verdict == "supported"
    one_depth = rc.judge_responses([_net("resnet", 110, r[110]), _net("plain", 110, p[110])])
    assert [c.verdict for c in one_depth] == ["supported", "inconclusive", "inconclusive"]
    assert "not tested" in one_depth[1].sentence and math.isnan(one_depth[1].p)


def test_min_seeds_is_the_projects_rule():
    from reslab.experiments.evidence import MIN_SEEDS

    assert rc.MIN_SEEDS == MIN_SEEDS


def test_unfinished_runs_are_skipped_with_one_line(tmp_path, capsys):
    done, running = tmp_path / "resnet20-s0", tmp_path / "resnet20-s1"
    for d, finished in ((done, True), (running, False)):
        (d / "checkpoints").mkdir(parents=True)
        (d / "config.yaml").write_text("model: resnet20\n")
        (d / "checkpoints" / "last.safetensors").write_bytes(b"")
        (d / "summary.json").write_text(json.dumps({"finished": finished}))
    assert finished_runs((str(done), str(running))) == [str(done)]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "resnet20-s1" in err and "not finished" in err


def test_network_names_get_the_experiments_colours():
    from reslab import figstyle

    assert figstyle.network_colour("resnet56-s3") == figstyle.colour("resnet", 56)
    assert figstyle.network_colour("plain56 (no BN)") == figstyle.colour("plain", 56)
    assert figstyle.network_of("preact_resnet56") == ("preact", 56)
    assert figstyle.network_of("ResNet-110") == ("resnet", 110)


# ------------------------------------------------------------------ the analysis figures (issue 30)

PUBLISHED = Path(__file__).resolve().parents[1] / "docs" / "results" / "analysis-standard"


@pytest.mark.parametrize("folder,module", [("gradients-trained", "gradients"), ("ode-trained", "ode"),
                                           ("paths", "paths"), ("responses", "responses"), ("lesion", "lesion")])  # fmt: skip
def test_redrawn_figures_use_network_colours_and_legends_outside(tmp_path, monkeypatch, folder, module):
    """Redrawn from the committed numbers: every curve in its network's colour (ResNet-56 the same blue
    as in the experiments' figures), no legend inside a panel, one outside."""
    import importlib
    import shutil

    from reslab import figstyle
    from reslab.analysis import redraw

    if not (PUBLISHED / folder).is_dir():
        pytest.skip(f"{PUBLISHED / folder} is not in this checkout")
    shutil.copytree(PUBLISHED / folder, tmp_path / folder)
    figs = []
    mod = importlib.import_module(f"reslab.analysis.{module}")
    monkeypatch.setattr(mod, "save_figure", lambda fig, path: figs.append(fig))
    redraw.redraw(tmp_path / folder)
    (fig,) = figs
    assert len(fig.legends) == 1 and all(ax.get_legend() is None for ax in fig.axes)
    lines = [h for h in fig.legends[0].legend_handles if hasattr(h, "get_color")]
    colours = {ln.get_label(): ln.get_color() for ln in lines}
    named = {k: v for k, v in colours.items() if figstyle.network_of(k)[0]}
    assert named and all(v.lower() == figstyle.network_colour(k).lower() for k, v in named.items())


def test_landscape_contours_pass_through_every_measured_point_without_overshoot():
    from reslab.analysis.landscape import Landscape, smooth_grid

    axis = np.linspace(-1, 1, 9)
    loss = np.exp(np.random.default_rng(0).normal(size=(9, 9)))
    r = Landscape("x", "plane", axis, axis, loss, loss, 1.0, True)
    a, b, z = smooth_grid(r, points=17)
    assert np.allclose(b, a)  # every second point of the fine grid is a measured one
    assert np.allclose(a[::2], axis) and np.allclose(z[::2, ::2], np.log10(loss), atol=1e-9)
    # monotone between neighbours along an axis: a drawn value stays within its measured neighbours'
    mid = z[1::2, ::2]  # halfway along direction 1, on measured rows of direction 2
    lo = np.minimum(z[:-1:2, ::2], z[2::2, ::2])
    hi = np.maximum(z[:-1:2, ::2], z[2::2, ::2])
    assert (mid >= lo - 1e-12).all() and (mid <= hi + 1e-12).all()


def test_the_legend_dashes_the_plain_nets_and_the_zoom_marks_every_seed_it_leaves_out(monkeypatch):
    """Plain nets are dashed in the panels and in the legend (a handle long enough to show the dashes);
    the last column holds every seed on an axis from zero, and its zoom marks each seed off its axis
    with a triangle at that edge and names it, so an outlier neither flattens the medians nor vanishes."""
    import matplotlib.pyplot as plt
    from matplotlib.collections import PathCollection

    from reslab.analysis import responses

    nets = [_net("plain", 20, [0.39, 0.385, 0.394]), _net("resnet", 20, [0.36, 0.364, 0.358]),
            _net("plain", 110, [3.72, 0.338, 0.0956, 0.567]), _net("resnet", 110, [0.345, 0.34, 0.339])]  # fmt: skip
    figs = []
    monkeypatch.setattr(responses, "save_figure", lambda fig, path: figs.append(fig))
    responses.plot_responses(nets, Path("unused.png"))
    (fig,) = figs
    legend = fig.legends[0]
    texts = [t.get_text().split(" (")[0] for t in legend.get_texts()]
    styles = {t: h.get_linestyle() for t, h in zip(texts, legend.legend_handles)}
    assert styles["plain-20"] == styles["plain-110"] == "--" and styles["ResNet-20"] == "-"
    assert legend.handlelength >= 3.5  # two dashes either side of the marker
    (full,) = [ax for ax in fig.axes if "every seed" in ax.get_title()]
    (zoom,) = [ax for ax in fig.axes if "zoomed" in ax.get_title()]

    def dots(ax):
        return [y for c in ax.collections if isinstance(c, PathCollection) for _, y in c.get_offsets()]

    bottom, top = full.get_ylim()
    assert bottom == 0 and max(dots(full)) == pytest.approx(3.72) and top > 3.72
    lo, hi = zoom.get_ylim()
    assert lo < 0.338 and 0.394 < hi < 0.567  # 3.72, 0.0956 and 0.567 leave it
    ys = dots(zoom)
    assert all(lo <= y <= hi for y in ys) and len(ys) == 13  # every seed: a dot or a triangle
    title = zoom.get_title()
    assert "3.72 ▲" in title and "0.0956 ▼" in title and "0.567 ▲" in title and "mean 1.18" in title
    plt.close(fig)
