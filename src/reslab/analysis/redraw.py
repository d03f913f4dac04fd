"""Redraw an analysis folder's figure from the raw numbers it holds (CSV / NPZ), without its checkpoints:
``python -m reslab.analysis.redraw FOLDER...``. The figures are drawn by the analyses' own plotting
functions, so a redraw is the figure the analysis would write today; the numbers are not recomputed
(the summaries stay as they are)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np

from reslab.analysis.common import read_csv


def _by_target(rows: list[dict[str, str]]) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        out.setdefault(r["target"], []).append(r)
    return out


def _col(rows: list[dict[str, str]], name: str) -> np.ndarray:
    return np.array([float(r[name]) for r in rows])


def redraw_gradients(folder: Path) -> Path:
    from reslab.analysis.gradients import GradientProfile, _plot

    ratios = {r["target"]: r for r in read_csv(folder / "ratios.csv")}
    profiles = [
        GradientProfile(t, _col(rows, "input_grad_norm"), _col(rows, "weight_grad_norm"),
                        _col(rows, "shortcut_grad_norm"), _col(rows, "branch_grad_norm"),
                        float(ratios[t]["loss"]), ratios[t]["batchnorm"] == "True", True)
        for t, rows in _by_target(read_csv(folder / "gradients.csv")).items()
    ]  # fmt: skip
    _plot(profiles, folder / "gradients.png")
    return folder / "gradients.png"


def redraw_ode(folder: Path) -> Path:
    from reslab.analysis.ode import ODEProfile, _plot

    profiles = [
        ODEProfile(t, rows[0]["kind"], rows[0]["trained"] == "1", _col(rows, "stage"), _col(rows, "step"),
                   _col(rows, "change"), _col(rows, "cosine"), _col(rows, "smoothness"))
        for t, rows in _by_target(read_csv(folder / "ode.csv")).items()
    ]  # fmt: skip
    _plot(profiles, folder / "ode.png")
    return folder / "ode.png"


def redraw_paths(folder: Path) -> Path:
    from reslab.analysis.paths import PathResult, _plot

    results = []
    for t, rows in _by_target(read_csv(folder / "paths.csv")).items():
        dist = [Fraction(r["probability_exact"]) for r in rows]
        k = np.array([int(r["k"]) for r in rows])
        results.append(PathResult(t, int(rows[0]["n"]), dist, k, _col(rows, "grad_norm_mean"),
                                  _col(rows, "grad_norm_std"), True))  # fmt: skip
    _plot(results, folder / "paths.png")
    return folder / "paths.png"


def redraw_landscape(folder: Path) -> Path:
    from reslab.analysis.landscape import Landscape, _plot

    results = []
    for f in sorted(folder.glob("landscape_*.npz"), key=lambda f: ("resnet" not in f.stem, f.stem)):
        with np.load(f, allow_pickle=False) as z:
            loss = z["loss"]
            i, j = (len(z["alphas"]) - 1) // 2, (len(z["betas"]) - 1) // 2
            label = f.stem.removeprefix("landscape_")
            results.append(
                Landscape(label, "plane", z["alphas"], z["betas"], loss, z["error"], float(loss[i, j]), True)
            )
    _plot(results, folder)
    return folder / "landscape.png"


def redraw_responses(folder: Path) -> Path:
    from reslab.analysis.response_claims import Network
    from reslab.analysis.responses import plot_responses

    nets: dict[tuple[str, int], Network] = {}
    for rows in _by_target(read_csv(folder / "responses.csv")).values():
        family = "plain" if rows[0]["network"].startswith("plain") else "resnet"
        key = (family, len(rows) + 1)
        net = nets.setdefault(key, Network(family, key[1], [], []))
        net.seeds.append(rows[0]["seed"])
        net.profiles.append(_col(rows, "std"))
    plot_responses(sorted(nets.values(), key=lambda n: (n.family, n.depth)), folder / "responses.png")
    return folder / "responses.png"


def redraw_lesion(folder: Path, classes: int = 10) -> Path:
    """``classes``: of the data set the numbers were measured on (chance = 100 (1 - 1/classes)); the
    analysed networks are Fashion-MNIST's / CIFAR-10's, 10 classes. The shape-changing units are the
    CIFAR networks' (the first unit of stages 2 and 3)."""
    from reslab import figstyle
    from reslab.analysis.lesion import LesionResult, _plot

    results = []
    for t, rows in _by_target(read_csv(folder / "lesion.csv")).items():
        kind = {
            name: [r for r in rows if r["lesion"] == name]
            for name in ("none", "delete", "delete_random", "swap")
        }
        n = len(kind["delete"])
        swap = np.full(max(n - 1, 0), np.nan)
        for r in kind["swap"]:
            swap[int(r["index"])] = float(r["error"])
        down = [i in (n // 3, 2 * n // 3) for i in range(n)]
        results.append(LesionResult(
            t, float(kind["none"][0]["error"]), _col(kind["delete"], "error"),
            np.array([int(r["k"]) for r in kind["delete_random"]]), _col(kind["delete_random"], "error"),
            _col(kind["delete_random"], "error_std"), swap, figstyle.network_of(t)[0] == "plain", True, down,
            100.0 * (1 - 1 / classes),
        ))  # fmt: skip
    _plot(results, folder / "lesion.png")
    return folder / "lesion.png"


REDRAW: dict[str, Callable[[Path], Path]] = {
    "lesion.csv": redraw_lesion,
    "ratios.csv": redraw_gradients,
    "ode.csv": redraw_ode,
    "paths.csv": redraw_paths,
    "responses.csv": redraw_responses,
}


def redraw(folder: str | Path) -> Path:
    """Redraw the figure of the analysis folder ``folder`` (which one: the raw file it holds)."""
    from reslab.errors import ConfigError

    d = Path(folder)
    for name, fn in REDRAW.items():
        if (d / name).is_file():
            return fn(d)
    if any(d.glob("landscape_*.npz")):
        return redraw_landscape(d)
    raise ConfigError(
        f"{d}: no analysis numbers to redraw from (ratios/ode/paths/responses/lesion CSV, landscape NPZ)"
    )


def main(argv: list[str] | None = None) -> int:
    from reslab.errors import ReslabError

    try:
        for f in argv if argv is not None else sys.argv[1:]:
            print(redraw(f))
    except ReslabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
