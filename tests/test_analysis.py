"""reslab.analysis: properties the theory predicts, on small models and data (seconds on a CPU).

The gradient-ratio test uses a batch of real Fashion-MNIST test images when the data set is installed
(``make data``) and seeded synthetic 1x28x28 images otherwise; the contrast it asserts (exponential
growth with depth in plain nets, mild growth in ResNets) holds for both.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from reslab.analysis import (
    deleted_blocks,
    evaluate,
    filter_normalize,
    gradient_profile,
    load_eval_data,
    path_length_distribution,
    random_direction,
    swapped_blocks,
    without_batchnorm,
)
from reslab.analysis._capture import bn_mode, trace_forward, vjp
from reslab.analysis.common import read_csv
from reslab.analysis.landscape import compute_landscape
from reslab.analysis.paths import _path_grad
from reslab.cli import main
from reslab.models import create_model


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny tensors: threads only add overhead (and contention on shared CI machines); restored after.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _fmnist_or_synthetic(n: int):
    from reslab.data.datasets import find_dataset

    name = "fashion-mnist" if find_dataset("fashion-mnist") is not None else "synthetic:1x28x28"
    return load_eval_data(name, samples=n, seed=0)


def _model(name: str, seed: int = 0, **kw):
    torch.manual_seed(seed)
    return create_model(name, num_classes=10, in_chans=1, **kw).eval()


@pytest.fixture(scope="module")
def tiny_data():
    return load_eval_data("synthetic:1x8x8", samples=48, seed=0)


# -------------------------------------------------------------------------------------- gradients


def test_gradient_ratio_explodes_with_depth_in_plain_nets_only():
    data = _fmnist_or_synthetic(24)
    ratio = {}
    for name in ("plain20", "plain56", "resnet20", "resnet56"):
        p = gradient_profile(_model(name), data.x, data.y, mode="train", split=False)
        assert np.all(np.isfinite(p.input_norm)) and np.all(p.input_norm > 0)
        ratio[name] = p.ratio
    plain_growth = ratio["plain56"] / ratio["plain20"]
    res_growth = ratio["resnet56"] / ratio["resnet20"]
    # Measured (BN, He init, 1x28x28): plain 18 -> 4.6e3, resnet 8 -> 31: the gradient explodes toward
    # the input of plain nets exponentially in depth, and grows only mildly in ResNets.
    assert ratio["plain56"] > 100, ratio
    assert plain_growth > 10 * res_growth, ratio
    assert res_growth < 20, ratio


def test_without_batchnorm_is_a_copy_without_bn(tiny_data):
    m = _model("resnet20")
    nobn = without_batchnorm(m)
    assert not any(isinstance(x, torch.nn.modules.batchnorm._BatchNorm) for x in nobn.modules())
    assert any(isinstance(x, torch.nn.modules.batchnorm._BatchNorm) for x in m.modules())
    assert len(nobn.blocks) == len(m.blocks)
    assert torch.equal(nobn.conv1.weight, m.conv1.weight) and nobn.conv1.weight is not m.conv1.weight


def test_gradient_split_through_shortcut_and_branch_is_exact(tiny_data):
    m = _model("resnet", depth=14)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    with bn_mode(m, "train"):
        tr = trace_forward(m, tiny_data.x[:16], tiny_data.y[:16])
        for u in tr.units:
            gx, gs, gf = torch.autograd.grad(tr.loss, [u.x, u.s, u.f], retain_graph=True)
            torch.testing.assert_close(vjp(u.s, u.x, gs) + vjp(u.f, u.x, gf), gx)
    p = gradient_profile(m, tiny_data.x[:16], tiny_data.y[:16])
    assert np.all((p.shortcut_share > 0) & (p.shortcut_share < 1))
    q = gradient_profile(_model("plain", depth=14), tiny_data.x[:16], tiny_data.y[:16])
    assert np.all(q.shortcut_share == 0) and np.all(q.branch_norm > 0)
    # The measurement leaves the model as it was (BN buffers restored, eval mode kept).
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not m.training


# ------------------------------------------------------------------------------------------ paths


@pytest.mark.parametrize("n", [0, 1, 3, 9, 27, 54])
def test_path_length_distribution_is_exactly_binomial(n):
    dist = path_length_distribution(n)
    assert len(dist) == n + 1
    assert sum(dist) == 1 and isinstance(sum(dist), Fraction)
    assert all(p == Fraction(math.comb(n, k), 2**n) for k, p in enumerate(dist))
    assert sum(k * p for k, p in enumerate(dist)) == Fraction(n, 2)
    assert sum((k - Fraction(n, 2)) ** 2 * p for k, p in enumerate(dist)) == Fraction(n, 4)


def test_path_gradients_sum_to_the_full_gradient(tiny_data):
    m = _model("resnet", depth=8)  # 3 units, 8 paths
    with bn_mode(m, "train"):
        tr = trace_forward(m, tiny_data.x[:16], tiny_data.y[:16])
        (g_out,) = torch.autograd.grad(tr.loss, tr.units[-1].y, retain_graph=True)
        (full,) = torch.autograd.grad(tr.loss, tr.units[0].x, retain_graph=True)
        paths = [
            _path_grad(tr, np.array(bits, dtype=bool), g_out) for bits in itertools.product([0, 1], repeat=3)
        ]
    torch.testing.assert_close(sum(paths), full, rtol=1e-4, atol=1e-7)


# ----------------------------------------------------------------------------------------- lesion


def _unit_io(model, x):
    rec = {}
    hs = [
        b.register_forward_hook(lambda mod, a, o, i=i: rec.__setitem__(i, (a[0].detach(), o.detach())))
        for i, b in enumerate(model.blocks)
    ]
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        for h in hs:
            h.remove()
    return rec, out


def test_deleting_a_block_changes_the_output_only_through_it(tiny_data):
    m = _model("resnet20")
    x = tiny_data.x[:8]
    full, out_full = _unit_io(m, x)
    k = 4
    with deleted_blocks(m, [k]):
        les, out_les = _unit_io(m, x)
        assert m.blocks[k].deleted
    assert not m.blocks[k].deleted  # restored
    for i in range(k):
        assert torch.equal(les[i][1], full[i][1])  # earlier units untouched
    torch.testing.assert_close(les[k][1], m.blocks[k].shortcut(les[k][0]))  # deleted unit = shortcut(x)
    assert not torch.allclose(out_les, out_full)


def test_deleting_every_block_leaves_stem_shortcuts_head(tiny_data):
    m = _model("resnet20")
    x = tiny_data.x[:8]
    with deleted_blocks(m, range(len(m.blocks))), torch.no_grad():
        got = m(x)
        h = torch.relu(m.bn1(m.conv1(x)))  # the CIFAR stem
        for b in m.blocks:
            h = b.shortcut(h)  # identity or option A (subsample + zero channels)
        want = m.forward_head(h)
    torch.testing.assert_close(got, want)


def test_swapping_adjacent_blocks_and_restoring(tiny_data):
    m = _model("resnet20")
    x = tiny_data.x[:8]
    order = list(m.blocks)
    with torch.no_grad():
        ref = m(x)
        with swapped_blocks(m, 0, 1):
            assert m.blocks[0] is order[1] and m.blocks[1] is order[0]
            swapped = m(x)
        assert list(m.blocks) == order
        torch.testing.assert_close(m(x), ref)
    assert not torch.allclose(swapped, ref)


# -------------------------------------------------------------------------------------- landscape


def test_filter_normalization_matches_filter_norms():
    m = _model("resnet20")
    d = random_direction(m, torch.Generator().manual_seed(0))
    for name, p in m.named_parameters():
        if p.ndim <= 1:
            assert torch.count_nonzero(d[name]) == 0, name  # BN / bias not perturbed
        else:
            torch.testing.assert_close(d[name].flatten(1).norm(dim=1), p.detach().flatten(1).norm(dim=1))
    w = torch.randn(4, 3, 3, 3)
    torch.testing.assert_close(
        filter_normalize(torch.randn(4, 3, 3, 3), w).flatten(1).norm(dim=1), w.flatten(1).norm(dim=1)
    )


def test_landscape_origin_is_the_models_own_loss(tiny_data):
    m = _model("resnet20")
    before = {k: v.clone() for k, v in m.state_dict().items()}
    ls = compute_landscape(m, tiny_data, mode="plane", resolution=3, span=0.5, seed=1)
    assert ls.alphas[1] == 0.0 and ls.betas[1] == 0.0
    own, _ = evaluate(m, tiny_data)
    assert ls.loss[1, 1] == pytest.approx(own, rel=1e-5)
    assert ls.origin_loss == pytest.approx(own, rel=1e-5)
    assert np.isfinite(ls.loss).all() and ls.loss.max() > own  # it moved away from the origin
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k]), k  # parameters restored


def test_landscape_line_between_two_models_hits_both_ends(tiny_data):
    a, b = _model("resnet20", seed=0), _model("resnet20", seed=1)
    with torch.no_grad():  # give b different BN statistics too
        for mod in b.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_var.fill_(2.0)
    ls = compute_landscape(a, tiny_data, mode="line", other=b, resolution=6, line_margin=0.0)
    assert ls.loss[0] == pytest.approx(evaluate(a, tiny_data)[0], rel=1e-5)
    assert ls.loss[-1] == pytest.approx(evaluate(b, tiny_data)[0], rel=1e-5)


# ------------------------------------------------------------------------------------ end to end

_COMMON = [
    "--dataset",
    "synthetic:1x8x8",
    "--samples",
    "16",
    "--batch-size",
    "16",
    "--device",
    "cpu",
    "--quiet",
]


def _finite_csv(path):
    rows = read_csv(path)
    assert rows
    for r in rows:
        for k, v in r.items():
            if k in (
                "target",
                "lesion",
                "probability_exact",
                "index",
                "batchnorm",
                "network",
                "seed",
                "trained",
                "fingerprint",
                "data",
            ):  # text columns
                continue
            assert math.isfinite(float(v)), (path.name, k, v)
    return rows


@pytest.mark.parametrize(
    "name,files,extra",
    [
        ("gradients", ["gradients.csv", "ratios.csv", "gradients.png"], []),
        ("responses", ["responses.csv", "responses.png"], []),
        ("lesion", ["lesion.csv", "lesion.png"], ["--lesion-samples", "2", "--max-k", "3"]),
        ("paths", ["paths.csv", "paths.png"], ["--path-samples", "2"]),
    ],
)
def test_cli_end_to_end(tmp_path, name, files, extra):
    out = tmp_path / name
    rc = main(["analyze", name, "--model", "resnet20,plain20", "--init", *_COMMON, *extra, "--out", str(out)])
    assert rc == 0
    for f in [*files, "summary.md"]:
        assert (out / f).stat().st_size > 0, f
        if f.endswith(".png"):
            assert (out / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f
    rows = _finite_csv(out / files[0])
    assert {r["target"] for r in rows} >= {"resnet20", "plain20"}
    summary = (out / "summary.md").read_text()
    assert "What the numbers show" in summary
    assert all(f"`{t}`" in summary for t in ("resnet20", "plain20")) and all(
        f"`{f}`" in summary for f in files
    )
    units = {t: len(_model(t).blocks) for t in ("resnet20", "plain20")}
    assert units == {"resnet20": 9, "plain20": 9}  # 3 stages of (20 - 2) / 6 units
    _CONTENTS[name](out, units)


def _rows_of(rows, target, **match):
    return [r for r in rows if r["target"] == target and all(r[k] == v for k, v in match.items())]


def _check_gradients(out, units):
    grads, ratios = _finite_csv(out / "gradients.csv"), _finite_csv(out / "ratios.csv")
    assert sorted(r["target"] for r in ratios) == sorted(f"{t}{bn}" for t in units for bn in ("", " (no BN)"))
    for r in ratios:
        n = units[r["target"].removesuffix(" (no BN)")]
        mine = _rows_of(grads, r["target"])
        assert [int(g["block"]) for g in mine] == list(range(n)) and int(r["blocks"]) == n
        assert r["batchnorm"] == str(not r["target"].endswith("(no BN)"))
        norms = [float(g["input_grad_norm"]) for g in mine]
        shares = [float(g["shortcut_share"]) for g in mine]
        assert min(norms) > 0 and all(0 <= s <= 1 for s in shares)
        # the summary row is computed from the per-unit rows: first/last, its geometric mean per unit
        ratio = float(r["first_over_last"])
        assert ratio == pytest.approx(norms[0] / norms[-1], rel=1e-6)
        assert float(r["per_block_factor"]) == pytest.approx(ratio ** (1 / (n - 1)), rel=1e-6)
        assert float(r["mean_shortcut_share"]) == pytest.approx(sum(shares) / n, rel=1e-6)
        if r["target"].startswith("plain"):  # no shortcut in the forward pass: no gradient through one
            assert max(shares) == 0


def _check_responses(out, units):
    rows = _finite_csv(out / "responses.csv")
    for t, n in units.items():
        mine = _rows_of(rows, t)
        # every 3x3 layer: the stem's and two per unit (He et al. Sec. 4.2: "each 3x3 layer")
        assert [int(r["layer"]) for r in mine] == list(range(1, 2 * n + 2))
        assert {r["network"] for r in mine} == {t} and {r["seed"] for r in mine} == {t}
        assert all(float(r["std"]) > 0 and float(r["channel_std"]) >= 0 for r in mine)
        by_std = sorted(mine, key=lambda r: -float(r["std"]))
        assert [int(r["rank"]) for r in by_std] == list(range(2 * n + 1))  # rank 0: the strongest response


def _check_lesion(out, units, max_k=3):
    rows = _finite_csv(out / "lesion.csv")
    assert all(0 <= float(r["error"]) <= 100 and float(r["error_std"]) >= 0 for r in rows)
    for t, n in units.items():
        assert [r["k"] for r in _rows_of(rows, t, lesion="none")] == ["0"]
        assert [(int(r["index"]), r["k"]) for r in _rows_of(rows, t, lesion="delete")] == [
            (i, "1") for i in range(n)
        ]
        assert [int(r["k"]) for r in _rows_of(rows, t, lesion="delete_random")] == list(range(1, max_k + 1))
        # adjacent pairs (i, i + 1) that keep the shape: neither is a stage's first, down-sampling unit
        down = {n // 3, 2 * n // 3}
        swaps = [i for i in range(n - 1) if not {i, i + 1} & down]
        assert [(int(r["index"]), r["k"]) for r in _rows_of(rows, t, lesion="swap")] == [
            (i, "2") for i in swaps
        ]
        assert len(_rows_of(rows, t)) == 1 + n + max_k + len(swaps)


def _check_paths(out, units):
    rows = _finite_csv(out / "paths.csv")
    for t, n in units.items():
        mine = _rows_of(rows, t)
        assert [int(r["k"]) for r in mine] == list(range(n + 1)) and {r["n"] for r in mine} == {str(n)}
        for r in mine:
            k, mean = int(r["k"]), float(r["grad_norm_mean"])
            exact = Fraction(math.comb(n, k), 2**n)
            assert int(r["paths"]) == math.comb(n, k) and Fraction(r["probability_exact"]) == exact
            assert float(r["probability"]) == pytest.approx(float(exact))
            assert mean >= 0 and float(r["grad_norm_std"]) >= 0
            assert float(r["total_grad"]) == pytest.approx(float(exact) * mean)
            if t.startswith("plain") and k < n:  # a path that skips a plain unit does not exist
                assert mean == 0
        assert sum(float(r["probability"]) for r in mine) == pytest.approx(1.0)


_CONTENTS = {
    "gradients": _check_gradients,
    "responses": _check_responses,
    "lesion": _check_lesion,
    "paths": _check_paths,
}


def test_cli_landscape_end_to_end_and_resume(tmp_path):
    out = tmp_path / "land"
    args = [
        "analyze",
        "landscape",
        "--model",
        "resnet20",
        "--init",
        *_COMMON,
        "--resolution",
        "3",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    for f in (
        "landscape_resnet20.npz",
        "directions_resnet20.pt",
        "landscape.png",
        "landscape_3d.png",
        "summary.md",
    ):
        assert (out / f).stat().st_size > 0, f
    npz = out / "landscape_resnet20.npz"
    with np.load(npz) as z:
        full = {k: z[k].copy() for k in z.files}
    assert np.isfinite(full["loss"]).all()
    # Simulate an interrupted run: the last row not computed yet, and mark one computed point.
    part = dict(full)
    part["loss"] = full["loss"].copy()
    part["loss"][-1, :] = np.nan
    part["loss"][0, 0] = 123.0
    np.savez(npz, **part)
    assert main(args) == 0
    with np.load(npz) as z:
        assert z["loss"][0, 0] == 123.0  # kept, not recomputed
        np.testing.assert_allclose(z["loss"][-1], full["loss"][-1], rtol=1e-5)  # filled in
    # Other settings in the same --out are refused instead of mixing grids.
    assert main([*args[:-2], "--span", "2", "--out", str(out)]) == 2


def test_cli_user_errors(tmp_path):
    assert (
        main(["analyze", "gradients", "--model", "resnet20", *_COMMON, "--out", str(tmp_path)]) == 2
    )  # no --init
    assert main(["analyze", "gradients", *_COMMON, "--out", str(tmp_path)]) == 2  # no target
    assert (
        main(["analyze", "gradients", "--model", "nosuchnet", "--init", *_COMMON, "--out", str(tmp_path)])
        == 2
    )


def _fake_run(tmp_path, name, seed):
    """A run directory as reslab.train writes it (weights + metadata), without training."""
    from reslab.models.weights import save_weights

    m = _model("resnet20", seed=seed)
    meta = {"dataset": "synthetic", "input_size": [1, 8, 8], "mean": [0.5], "std": [0.25]}
    save_weights(
        m, tmp_path / name / "checkpoints" / "best.safetensors", {**meta, "config": {"dataset": "synthetic"}}
    )
    return tmp_path / name, m


def test_cli_on_run_directories_and_line_between_checkpoints(tmp_path):
    run_a, model_a = _fake_run(tmp_path, "run_a", 0)
    run_b, _ = _fake_run(tmp_path, "run_b", 1)
    flags = ["--samples", "16", "--device", "cpu", "--quiet"]
    out = tmp_path / "les"
    assert (
        main(
            ["analyze", "lesion", str(run_a), str(run_b), *flags, "--lesion-samples", "1", "--out", str(out)]
        )
        == 0
    )
    rows = _finite_csv(out / "lesion.csv")
    assert {r["target"] for r in rows} == {"run_a", "run_b"}
    summary = (out / "summary.md").read_text()
    assert "`run_a`: trained" in summary and "synthetic:1x8x8" in summary  # the run's own data set and shape
    out = tmp_path / "line"
    args = ["analyze", "landscape", str(run_a), str(run_b), "--mode", "line", "--resolution", "5", *flags]
    assert main([*args, "--out", str(out)]) == 0
    with np.load(out / "landscape_run_a_-_run_b.npz") as z:
        loss, alphas = z["loss"], z["alphas"]
    assert alphas[1] == 0.0 and alphas[-2] == 1.0 and len(alphas) == 7 and np.isfinite(loss).all()
    # The run's own normalization (mean 0.5, std 0.25) is what the loss at alpha = 0 was measured with.
    data = load_eval_data("synthetic:1x8x8", samples=16, mean=[0.5], std=[0.25])
    assert loss[1] == pytest.approx(evaluate(model_a, data)[0], rel=1e-5)


def test_targets_are_named_after_their_runs_and_kept_apart(tmp_path):
    import shutil

    from reslab.analysis import resolve_targets

    run, _ = _fake_run(tmp_path, "run_a", 0)
    best = run / "checkpoints" / "best.safetensors"
    loose = tmp_path / "loose.safetensors"
    shutil.copy(best, loose)
    paths = [str(run), str(best), str(loose), str(run)]
    targets = resolve_targets(
        paths, ["resnet20"], init=True, dataset="synthetic:1x8x8", samples=4, device="cpu"
    )
    assert [t.label for t in targets] == ["run_a", "run_a/best", "loose", "run_a#2", "resnet20"]
    assert [t.trained for t in targets] == [True, True, True, True, False]
    # one data set and normalization is loaded once: the checkpoints' own (mean 0.5, std 0.25), and the
    # data set's statistics for the fresh network
    assert all(t.data is targets[0].data for t in targets[:4]) and targets[4].data is not targets[0].data
    own = load_eval_data("synthetic:1x8x8", samples=4, mean=[0.5], std=[0.25])
    assert torch.equal(targets[0].data.x, own.x)
    assert torch.equal(targets[4].data.x, load_eval_data("synthetic:1x8x8", samples=4).x)


def test_gradient_summary_claims_only_what_the_numbers_show():
    """The paragraph is derived from the ratios: exponential growth is claimed for plain nets only when
    every deeper net has a larger ratio at a per-unit factor above 1.1, and 'mild' growth for ResNets only
    when the ratio rises while the per-unit factor falls."""
    import numpy as np

    from reslab.analysis.gradients import GradientProfile, explain

    def prof(label: str, units: int, ratio: float, shortcut: bool) -> GradientProfile:
        norms = ratio ** (1 - np.arange(units) / (units - 1))  # geometric from ratio down to 1
        sc = np.ones(units) if shortcut else np.zeros(units)
        return GradientProfile(label, norms, norms, sc, np.ones(units), 2.3, True, False)

    init = [prof("plain20", 9, 25.0, False), prof("plain56", 27, 7e3, False)]
    init += [prof("resnet20", 9, 10.0, True), prof("resnet56", 27, 40.0, True)]
    text = explain(init)
    assert "exponentially in depth" in text and "grows only mildly" in text and "sub-exponential" in text

    trained = [prof("plain20", 9, 5.5, False), prof("plain56", 27, 1.3, False)]
    trained += [prof("resnet20", 9, 5.1, True), prof("resnet56", 27, 3.5, True)]
    text = explain(trained)
    assert "exponentially" not in text and "mildly" not in text
    assert "no exponential growth with depth is visible" in text and "does not grow with depth" in text


def test_lesion_summary_calls_a_noisy_curve_noisy():
    import numpy as np

    from reslab.analysis.lesion import LesionResult, explain

    k = np.arange(1, 5)
    kw = {
        "swap": np.full(3, np.nan),
        "plain": False,
        "trained": True,
        "downsample": [False, True, False, False],
    }
    single = np.array([40.0, 30.0, 21.0, 22.0])  # unit 0 (same shape) is the worst deletion
    rising = LesionResult("r", 20.0, single, k, np.array([25.0, 40.0, 60.0, 85.0]), np.zeros(4), **kw)
    text = explain([rising])
    assert "it rises at every k" in text and "passes 50% at k = 3" in text
    assert "unit 0, which keeps the shape" in text
    noisy = LesionResult("n", 20.0, single, k, np.array([25.0, 60.0, 45.0, 85.0]), np.full(4, 12.0), **kw)
    assert "not monotone in k (1 of 4 steps go down" in explain([noisy])
    flat = LesionResult("p", 30.0, single, k, np.array([88.0, 90.0, 87.0, 91.0]), np.full(4, 3.0), **kw)
    assert "at its plateau from k = 1 on (within 4.0 points)" in explain([flat])


# ---------------------------------------------------- each summary sentence flips at its stated margin


def test_lesion_downsampling_sentence_flips_with_its_test():
    from reslab.analysis.lesion import LesionResult, downsampling_sentence

    k = np.arange(1, 3)
    down = [False] * 9
    down[3] = down[6] = True

    def res(single: list[float]) -> LesionResult:
        return LesionResult(
            "r", 10.0, np.array(single), k, k * 1.0, k * 0.0, np.full(8, np.nan), False, True, down
        )

    clear = res([11.0, 11.2, 10.9, 19.0, 11.1, 10.8, 20.0, 11.0, 11.3])  # +9 and +10 against ~+1
    assert "as Veit et al. report" in downsampling_sentence(clear)
    noisy = res([11.0, 18.0, 10.9, 14.0, 11.1, 17.5, 12.0, 11.0, 16.0])  # the others spread as widely
    text = downsampling_sentence(noisy)
    assert "within the spread over units" in text and "unit 1, which keeps the shape" in text


def test_landscape_nonconvexity_ignores_noise_on_a_bowl_and_flags_ripples():
    """Li et al.'s |lambda_min/lambda_max| idea on the grid: a steep convex bowl with small evaluation noise
    (and its exponential, whose log would look concave) counts as convex; an egg-crate surface does not."""
    from reslab.analysis.landscape import RUGGED_ABOVE, SMOOTH_BELOW, nonconvexity, surface_words

    a = np.linspace(-1, 1, 21)
    x, y = np.meshgrid(a, a, indexing="ij")
    bowl = 0.2 + 5.0 * (x**2 + 0.3 * y**2)
    noise = np.random.default_rng(0).normal(0, 1e-3, bowl.shape)
    assert nonconvexity(bowl + noise) < SMOOTH_BELOW
    assert nonconvexity(np.exp(8 * (x**2 + y**2))) == 0.0  # huge at the border, still convex
    crate = bowl + 0.5 * np.sin(12 * x) * np.sin(12 * y)
    assert nonconvexity(crate) > RUGGED_ABOVE
    assert surface_words(0.05) == "a smooth, nearly convex bowl"
    assert surface_words(0.5) == "a rugged, non-convex surface"
    assert "mostly convex" in surface_words(0.2)
    assert nonconvexity(a**2) == 0.0 and nonconvexity(-(a**2)) == 1.0  # 1-D


def test_landscape_panels_share_contour_levels():
    from reslab.analysis.landscape import Landscape, contour_levels

    a = np.linspace(-1, 1, 5)
    lo = Landscape("r", "plane", a, a, np.full((5, 5), 0.3), np.zeros((5, 5)), 0.3, True)
    hi = Landscape("p", "plane", a, a, np.full((5, 5), 3e4), np.zeros((5, 5)), 3e4, True)
    levels = contour_levels([lo, hi])
    assert levels[0] <= np.log10(0.3) and levels[-1] >= np.log10(3e4)
    assert np.allclose(np.diff(levels), 0.25)


def test_path_summary_flips_at_one_binomial_standard_deviation():
    from reslab.analysis.paths import PathResult, explain

    n = 27
    ks = np.arange(n + 1)

    def res(decay: float) -> PathResult:
        from reslab.analysis.paths import path_length_distribution

        g = decay**ks
        return PathResult("r", n, path_length_distribution(n), ks, g, g * 0.1, True)

    assert "shorter than the typical path" in explain([res(0.45)])  # Veit et al.: short effective paths
    assert "within one standard deviation of the typical path length" in explain([res(1.0)])


def test_cli_offers_exactly_the_analyses_run_analysis_runs():
    from reslab.analysis.command import ANALYSES, AnalysisRequest, run_analysis
    from reslab.cli import build_parser
    from reslab.errors import ConfigError

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    choices = next(a for a in sub.choices["analyze"]._actions if a.dest == "analysis").choices
    assert tuple(choices) == ANALYSES
    with pytest.raises(ConfigError, match="unknown analysis 'spectra'"):
        run_analysis(AnalysisRequest("spectra"))


@pytest.mark.parametrize("name", ["gradients", "paths", "ode"])
def test_one_batch_analyses_report_the_batch_they_measure(tmp_path, name):
    # --samples 16 draws the subset, --batch-size 8 is what these analyses measure: the summary names 8
    flags = ["--dataset", "synthetic:1x8x8", "--samples", "16", "--batch-size", "8", "--device", "cpu"]
    extra = ["--path-samples", "1"] if name == "paths" else []
    out = tmp_path / name
    assert (
        main(["analyze", name, "--model", "resnet20", "--init", *flags, *extra, "--quiet", "--out", str(out)])
        == 0
    )
    summary = (out / "summary.md").read_text()
    assert "; 8 test images of synthetic:1x8x8" in summary and "16 test images" not in summary
