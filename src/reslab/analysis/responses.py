"""Layer responses as He et al. 2016 measure them (Sec. 4.2, Fig. 7): "the outputs of each 3x3 layer,
after BN and before other nonlinearity (ReLU/addition)", their standard deviation over test data, per
layer index, for plain and residual networks of several depths.

Read with a forward hook on every BatchNorm that follows a 3x3 convolution (the stem's and both of each
unit's; a 1x1 projection shortcut's BN is not a 3x3 layer), BN in eval mode (running statistics), over
every element (N, C, H, W) of its output; the mean over channels of the per-channel std is kept beside it.

Several seeds of one network (a label ``NAME-sK``; the same weights passed twice count once) give a
profile per seed: the figure draws, per layer index, the median over seeds and the band between the
seeds' smallest and largest std. The two readings of Fig. 7 are decided by the tests of
:mod:`reslab.analysis.response_claims`, stated there before any network was measured.
The figure has the paper's two rows (layer order; each seed's stds ranked in descending order).
Profiles measured earlier by this command (``measured``: their ``responses.csv``, which records each
network's weight fingerprint and the data subset's) count with the new ones, once each: a study whose
checkpoints are not all on one machine is measured in parts, on the same images (refused otherwise).
Deviations from the paper: Fashion-MNIST networks at the project's budget, not CIFAR-10 at 64k
iterations; several seeds per network where the paper shows one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from reslab.analysis._capture import bn_mode
from reslab.analysis.common import blocks_of, fmt_num, new_figure, save_figure, write_csv, write_summary
from reslab.analysis.response_claims import Network, claims_markdown, judge_responses, seed_count
from reslab.analysis.targets import EvalData, Target
from reslab.errors import ConfigError


@dataclass
class ResponseProfile:
    label: str
    std: np.ndarray  # std over every element (N, C, H, W) of each 3x3 layer's BN output, in layer order
    channel_std: np.ndarray  # mean over channels of the per-channel std over (N, H, W)
    plain: bool
    trained: bool
    fingerprint: str = ""  # the weights' hash (:func:`_fingerprint`): the same network counts once
    data: str = ""  # the images' hash (:func:`_data_key`): profiles merge only on the same images
    source: str = ""  # the responses.csv it was read from; "" when measured here


def response_layers(model: nn.Module) -> list[nn.Module]:
    """Every BatchNorm that directly follows a 3x3 convolution, in the order the modules are defined (the
    order of the forward pass in the zoo's CIFAR networks): He et al.'s "3x3 layers"."""
    out, last_conv = [], None
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            last_conv = m
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and last_conv is not None:
            if tuple(last_conv.kernel_size) == (3, 3):
                out.append(m)
            last_conv = None
    return out


@torch.no_grad()
def response_std(model: nn.Module, data: EvalData, *, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(overall std, mean per-channel std) of each 3x3 layer's BN output over ``data`` (float64 sums)."""
    layers = response_layers(model)
    dev = next(model.parameters()).device
    sums: list[list[Any]] = [[0, 0.0, 0.0, None, None] for _ in layers]  # n, sum, sum sq, per channel

    def hook(i: int):
        def f(mod: nn.Module, args: tuple, out: torch.Tensor) -> None:
            o = out.detach().double()
            dims = [d for d in range(o.ndim) if d != 1]
            s = sums[i]
            s[0] += o.numel()
            s[1] += o.sum().item()
            s[2] += o.pow(2).sum().item()
            c1, c2 = o.sum(dims), o.pow(2).sum(dims)
            s[3] = c1 if s[3] is None else s[3] + c1
            s[4] = c2 if s[4] is None else s[4] + c2

        return f

    handles = [m.register_forward_hook(hook(i)) for i, m in enumerate(layers)]
    try:
        with bn_mode(model, "eval"):
            for x, _ in data.batches(batch_size, dev):
                model(x)
    finally:
        for h in handles:
            h.remove()
    std, cstd = np.full(len(layers), np.nan), np.full(len(layers), np.nan)
    for i, (n, s1, s2, c1, c2) in enumerate(sums):
        if n:
            std[i] = float(np.sqrt(max(s2 / n - (s1 / n) ** 2, 0.0)))
            per = n // c1.numel()
            cstd[i] = float(torch.sqrt((c2 / per - (c1 / per) ** 2).clamp_min(0)).mean().item())
    return std, cstd


def _fingerprint(model: nn.Module) -> str:
    """A hash of the units' kind and the weights and buffers: the same trained network passed twice (one
    run counted by two experiments) counts once; a plain net and a ResNet with equal weights (the same
    initialization) do not."""
    h = hashlib.sha1(repr([getattr(b, "has_shortcut", True) for b in blocks_of(model)]).encode())
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _network_key(p: ResponseProfile) -> tuple[str, int]:
    """(family, depth) of a profile: depth = 3x3 layers + the classifier (ResNet-20: 19 + 1)."""
    return ("plain" if p.plain else "resnet", len(p.std) + 1)


def seed_of(label: str) -> str:
    """The seed named in a run's label (``resnet56-s3`` -> "s3"); the label itself otherwise."""
    m = re.search(r"-(s\d+)(?:#\d+)?$", label)
    return m.group(1) if m else label


def networks_of(profiles: Sequence[ResponseProfile]) -> list[Network]:
    """The profiles grouped by network (family, depth), each with its seeds' profiles."""
    groups: dict[tuple[str, int], list[ResponseProfile]] = {}
    for p in profiles:
        groups.setdefault(_network_key(p), []).append(p)
    return [
        Network(family, depth, [seed_of(p.label) for p in ps], [np.asarray(p.std) for p in ps])
        for (family, depth), ps in sorted(groups.items())
    ]


def _data_key(data: EvalData) -> str:
    """Which images were measured (their raw pixels' hash: each run normalizes them with its own statistics);
    profiles merge only when measured on the same ones."""
    return data.images or hashlib.sha1(data.x.contiguous().numpy().tobytes()).hexdigest()[:16]


def read_measured(paths: Sequence[str | Path]) -> list[ResponseProfile]:
    """The profiles of earlier ``responses.csv`` files, in their order (one line for a file that is not one)."""
    from reslab.analysis.common import read_csv

    profiles: list[ResponseProfile] = []
    for path in map(Path, paths):
        try:
            rows = read_csv(path)
        except OSError as e:
            raise ConfigError(f"--measured {path}: cannot read it ({e.strerror or e})") from None
        need = {"target", "network", "layer", "std", "channel_std", "fingerprint", "data", "trained"}
        if not rows or not need <= set(rows[0]):
            raise ConfigError(f"--measured {path}: not a responses.csv of this version (it needs the columns "
                              f"{', '.join(sorted(need))}); measure those networks again")  # fmt: skip
        by_target: dict[str, list[dict[str, str]]] = {}
        for r in rows:
            by_target.setdefault(r["target"], []).append(r)
        for label, rs in by_target.items():
            rs.sort(key=lambda r: int(r["layer"]))
            profiles.append(ResponseProfile(
                label, np.array([float(r["std"]) for r in rs]), np.array([float(r["channel_std"]) for r in rs]),
                rs[0]["network"].startswith("plain"), rs[0]["trained"] == "True",
                rs[0]["fingerprint"], rs[0]["data"], str(path),
            ))  # fmt: skip
    return profiles


def run_responses(
    targets: Sequence[Target], out: Path, *, batch_size: int = 256, measured: Sequence[str] = ()
) -> dict[str, Any]:
    earlier = read_measured(measured)
    data_keys = {p.data for p in earlier} | {_data_key(t.data) for t in targets}
    if len(data_keys) > 1:
        raise ConfigError("--measured profiles were measured on other images than these targets (another "
                          "--samples / --seed / split / data set): measure on the same subset")  # fmt: skip
    profiles, seen, twins = [], {}, []
    for p in earlier:
        if p.fingerprint in seen:
            twins.append(f"`{p.label}` of {p.source} (the same weights as `{seen[p.fingerprint]}`)")
            continue
        seen[p.fingerprint] = p.label
        profiles.append(p)
    for t in targets:
        key = _fingerprint(t.model)
        if key in seen:
            twins.append(f"`{t.label}` (the same weights as `{seen[key]}`)")
            continue
        seen[key] = t.label
        std, cstd = response_std(t.model, t.data, batch_size=batch_size)
        plain = not any(getattr(b, "has_shortcut", True) for b in blocks_of(t.model))
        profiles.append(ResponseProfile(t.label, std, cstd, plain, t.trained, key, _data_key(t.data)))
    nets = networks_of(profiles)
    write_csv(out / "responses.csv", [row for p in profiles for row in _layer_rows(p)])
    plot_responses(nets, out / "responses.png")
    sections = [_table(nets, twins), claims_markdown(judge_responses(nets))]
    if earlier:
        files = sorted({p.source for p in earlier})
        sections.insert(0, "Measured earlier on the same images and counted here (" + ", ".join(
            f"`{f}`" for f in files) + "): " + ", ".join(f"`{p.label}`" for p in earlier) + ".")  # fmt: skip
    if any(not p.trained for p in profiles):
        sections.append(
            "Freshly initialized networks in eval mode: their BN layers hold their initial running statistics "
            "(mean 0, variance 1), so the responses show the initialization's scale, nothing learned."
        )
    write_summary(
        out, "Layer responses: std of every 3x3 layer's output (He et al. 2016, Fig. 7)", targets,
        sections, ["responses.csv", "responses.png"],
    )  # fmt: skip
    return {"profiles": profiles, "networks": nets}


def _layer_rows(p: ResponseProfile) -> list[dict[str, Any]]:
    """responses.csv: one row per 3x3 layer (1 = the stem's); ``rank`` 0 is the strongest response."""
    order = np.argsort(-p.std)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    family, depth = _network_key(p)
    return [
        {"target": p.label, "network": f"{family}{depth}", "seed": seed_of(p.label), "layer": i + 1,
         "std": float(p.std[i]), "channel_std": float(p.channel_std[i]), "rank": int(rank[i]),
         "trained": p.trained, "fingerprint": p.fingerprint, "data": p.data}
        for i in range(len(p.std))
    ]  # fmt: skip


def _table(nets: Sequence[Network], twins: Sequence[str]) -> str:
    lines = [
        "Std of each 3x3 layer's output after its BN, before the ReLU or the addition (He et al. 2016, Sec. "
        "4.2), over every element, BN in eval mode. Per network: the seeds measured, and over seeds the "
        "median of each seed's median layer std (the statistic the tests below use) with its range.",
        "",
        "| network | 3x3 layers | seeds | median layer std (median over seeds) | range over seeds |",
        "|---|---|---|---|---|",
    ]
    for n in nets:
        m = n.medians()
        lines.append(
            f"| {n.label} | {n.depth - 1} | {len(n.seeds)} ({', '.join(n.seeds)}) | {fmt_num(float(np.median(m)))} "
            f"| {fmt_num(float(min(m)))}-{fmt_num(float(max(m)))} |"
        )
    if twins:
        lines += ["", "Counted once (identical weights): " + "; ".join(twins) + "."]
    return "\n".join(lines)


def plot_responses(nets: Sequence[Network], path: Path) -> None:
    """Fig. 7 as the paper draws it, one column per depth (plain and ResNet of that depth on one linear
    axis): top, the layers in their original order; bottom, each seed's stds sorted in descending order.
    Lines: the median over seeds; bands: the seeds' smallest to largest. A last column: each seed's
    median layer std (a dot per seed, a bar at their mean), the tests' unit, on an axis from zero that
    holds every seed and zoomed on the seeds the claims compare (:func:`_medians_panels`)."""
    from reslab import figstyle

    depths = sorted({n.depth for n in nets})
    with figstyle.style():
        fig, axes = new_figure(2, len(depths) + 1, figsize=(3.3 * (len(depths) + 1) + 1.8, 6.2),
                               layout="constrained", squeeze=False)  # fmt: skip
        for col, d in enumerate(depths):
            here = [n for n in nets if n.depth == d]
            top = axis_top([v for n in here for p in n.profiles for v in p])
            for row, ranked in enumerate((False, True)):
                ax = axes[row, col]
                notes = [t for n in here if (t := _profile(ax, n, top, ranked))]
                ax.set_ylim(0, top)
                order = "ranked by std, descending" if ranked else "original order"
                ax.set_title("\n".join([f"depth {d}: {order}", *notes]), fontsize=8 if notes else None)
                ax.set_xlabel("rank" if ranked else "layer index (3x3 layers)")
            axes[0, col].set_ylabel("std of the layer's output")
            axes[1, col].set_ylabel("std of the layer's output")
        _medians_panels(axes[0, -1], axes[1, -1], nets, depths)
        figstyle.legend_outside(fig, _handles(nets), handlelength=4.0)  # long enough to show the dashes
        save_figure(fig, path)


OUTLIER = 3.0  # a layer std over this many times the panel's median is drawn off the (linear) axis


def axis_top(values: Sequence[float]) -> float:
    """The top of a panel's linear axis (the paper's): every value up to :data:`OUTLIER` times the
    panel's median fits, with 10% to spare; the larger ones (a badly trained net's first layers) leave
    the axis and the panel says which (a linear axis that holds them would flatten every other curve)."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if not len(v):
        return 1.0
    return 1.1 * float(v[v <= OUTLIER * np.median(v)].max())


def _profile(ax: Any, n: Network, top: float, ranked: bool = False) -> str:
    """Draw ``n``'s median profile and band (``ranked``: each seed's stds sorted, descending); returns
    what of it is off the axis ("" when nothing)."""
    from reslab import figstyle

    c = figstyle.colour(n.family, n.depth)
    stack = np.vstack(n.profiles)
    if ranked:
        stack = -np.sort(-stack, axis=1)
    x = np.arange(1, stack.shape[1] + 1)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # layer indices and ranks are whole numbers
    ax.plot(x, np.median(stack, axis=0), color=c, lw=1.4, ls="-" if n.family == "resnet" else (0, (4, 2)))
    if len(n.profiles) > 1:
        ax.fill_between(x, stack.min(axis=0), stack.max(axis=0), color=c, alpha=0.22, lw=0)
    off = np.flatnonzero(stack.max(axis=0) > top)
    if not len(off):
        return ""
    return (
        f"{n.label}: {len(off)} of {len(x)} layers above the axis\n(band up to {fmt_num(float(stack.max()))})"
    )


ZOOM = 1.5  # the zoomed medians panel holds every seed within this factor of the median over all seeds


def zoom_range(values: Sequence[float]) -> tuple[float, float]:
    """The zoomed medians panel's linear axis: every value within :data:`ZOOM` times the median of all
    ``values`` inside (all of them where none is), with 8% of their span to spare; the others are marked
    at its edge, not hidden."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    mid = float(np.median(v))
    kept = v[(v >= mid / ZOOM) & (v <= mid * ZOOM)]
    kept = kept if len(kept) else v  # values spread too far for a zoom: it holds them all
    pad = max(0.08 * float(kept.max() - kept.min()), 0.01 * mid)
    return float(kept.min()) - pad, float(kept.max()) + pad


def _medians_panel(ax: Any, nets: Sequence[Network], depths: Sequence[int], limits: Any = None) -> list[str]:
    """Each seed's median layer std (a dot per seed, a bar at their mean) per depth. ``limits``: a zoomed
    linear axis (lo, hi); a seed off it is drawn as a hollow triangle at the edge it left (up or down),
    and what is off is returned, one line per network ("" for none)."""
    from reslab import figstyle

    notes = []
    for n in nets:
        c, i = figstyle.colour(n.family, n.depth), depths.index(n.depth)
        x0 = i + (-0.15 if n.family == "plain" else 0.15)
        m, mean = np.asarray(n.medians()), float(np.mean(n.medians()))
        xs = x0 + (np.arange(len(m)) - (len(m) - 1) / 2) * 0.05
        lo, hi = limits if limits is not None else (-np.inf, np.inf)
        inside = (m >= lo) & (m <= hi)
        ax.scatter(xs[inside], m[inside], s=22, marker=figstyle.marker(n.family), color=c, zorder=3)
        ax.hlines(mean, x0 - 0.1, x0 + 0.1, colors=c, lw=2.2, zorder=2)
        off = []
        for x, y, up in [(x, y, y > hi) for x, y, ok in zip(xs, m, inside) if not ok]:
            edge = hi - 0.03 * (hi - lo) if up else lo + 0.03 * (hi - lo)
            ax.scatter(
                [x], [edge], s=30, marker="^" if up else "v", facecolors="white", edgecolors=c, zorder=3
            )
            off.append(f"{fmt_num(float(y))} {'▲' if up else '▼'}")
        if not lo <= mean <= hi:
            off.append(f"mean {fmt_num(mean)}")
        if off:
            notes.append(f"{n.label} off the axis:\n{', '.join(off)}")
    ax.set_xticks(range(len(depths)), [str(d) for d in depths])
    ax.set_xlim(-0.6, len(depths) - 0.4)
    ax.set_xlabel("depth")
    ax.set_ylabel("median layer std of a seed")
    ax.grid(False, axis="x")
    if limits is not None:
        ax.set_ylim(*limits)
    else:
        ax.set_ylim(0, None)
    return notes


def _medians_panels(full: Any, zoom: Any, nets: Sequence[Network], depths: Sequence[int]) -> None:
    """The tests' unit twice: every seed on a linear axis from zero, then zoomed (:func:`zoom_range`)
    on the seeds the claims compare, the seeds off it marked at its edge and named in its title."""
    _medians_panel(full, nets, depths)
    full.set_title("each seed's median layer std:\nevery seed, axis from zero", fontsize=8)
    limits = zoom_range([v for n in nets for v in n.medians()])
    notes = _medians_panel(zoom, nets, depths, limits)
    zoom.set_title("\n".join([f"the same, zoomed: seeds within {ZOOM:g}x the median", *notes]), fontsize=8)


def _handles(nets: Sequence[Network]) -> list[Any]:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from reslab import figstyle

    out: list[Any] = [
        Line2D([], [], color=figstyle.colour(n.family, n.depth), lw=1.4, marker=figstyle.marker(n.family),
               ls="-" if n.family == "resnet" else (0, (4, 2)), label=f"{n.label} ({seed_count(len(n.seeds))})")
        for n in nets
    ]  # fmt: skip
    out += [
        Line2D([], [], color="0.3", lw=1.4, label="median over seeds"),
        Patch(color="0.3", alpha=0.22, lw=0, label="seeds' min–max"),
        Line2D([], [], ls="", marker="o", color="0.3", label="one seed (last column)"),
        Line2D([], [], color="0.3", lw=2.2, label="mean over seeds"),
        Line2D([], [], ls="", marker="^", mfc="white", mec="0.3", label="a seed above the zoomed axis"),
        Line2D([], [], ls="", marker="v", mfc="white", mec="0.3", label="a seed below it"),
    ]
    return out
