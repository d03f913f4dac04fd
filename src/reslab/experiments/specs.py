"""The paper's experiments as records: one :class:`Experiment` each, in one registry, :data:`EXPERIMENTS`.

A record says everything that differs between experiments: the networks it trains at each depth (a
:class:`Network` each, planned into one :class:`RunSpec` per depth and seed), its default depths, its
iterations, depths and seeds where a budget (:mod:`reslab.experiments.budgets`) leaves them to the
experiment, the claims judged from its runs (:mod:`reslab.experiments.claims`), its figure
(:mod:`reslab.experiments.plotting`) and the paper's numbers its table shows (:mod:`.paper`). The
planner, runner, report and command line read the record; adding an experiment is adding one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reslab.errors import ConfigError
from reslab.experiments import claims, paper, plotting, seedplan
from reslab.experiments.budgets import BUDGETS, Budget, schedule_overrides
from reslab.experiments.evidence import Claim
from reslab.experiments.results import Group

VALID_DEPTHS = (20, 32, 44, 56, 110, 1202)


@dataclass(frozen=True)
class RunSpec:
    """One training run of an experiment."""

    name: str  # run directory name, e.g. "plain20-s0"
    family: str  # "plain", "resnet", "highway"
    variant: str  # what the figure/table groups by besides depth: "plain", "A", "B", "C", "resnet", ...
    label: str  # human name, e.g. "plain-20", "ResNet-20 (B)"
    model: str  # registry name
    depth: int
    seed: int
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)  # per-run config fields (e.g. 110 warm-up)

    @property
    def key(self) -> tuple[str, int]:
        """Runs that differ only in seed share a key (they are averaged)."""
        return (self.variant, self.depth)


@dataclass(frozen=True)
class Network:
    """One network of an experiment, at the depth it is planned for: ``{d}`` in ``label``, ``model`` and
    ``stem`` (the run names' stem; default: the model's name) stands for that depth. ``depth`` fixes it
    (a network trained once, whatever the experiment's depths)."""

    family: str
    label: str
    model: str
    variant: str = ""  # default: the family
    stem: str = ""
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    depth: int | None = None

    def run(self, depth: int, seed: int) -> RunSpec:
        return RunSpec(
            name=f"{(self.stem or self.model).format(d=depth)}-s{seed}",
            family=self.family,
            variant=self.variant or self.family,
            label=self.label.format(d=depth),
            model=self.model.format(d=depth),
            depth=depth,
            seed=seed,
            model_kwargs=dict(self.model_kwargs),
        )


PLAIN = Network("plain", "plain-{d}", "plain{d}")
RESNET = Network("resnet", "ResNet-{d}", "resnet{d}")


@dataclass(frozen=True)
class Experiment:
    """One of the paper's experiments: what it trains, how its report judges and draws it."""

    name: str
    title: str
    paper_ref: str
    description: str  # its networks, in a line: the report's "Networks" item
    networks: tuple[Network, ...]  # trained at every depth, in this order
    default_depths: tuple[int, ...]
    claims: Callable[[list[Group]], list[Claim]]  # the paper's claims, judged from the groups
    plot: Callable[[list[Group], Path, str, str], Path]  # (groups, path, title, dataset) -> the figure
    paper: paper.PaperColumn  # the paper's numbers beside ours
    table_order: tuple[str, ...]  # the table's rows: variants in this order ...
    depth_first: bool = False  # ... within each depth (else: depths within each variant)
    optional_depths: tuple[int, ...] = ()  # further depths the paper reports
    once: tuple[Network, ...] = ()  # trained once whatever the depths (each with its ``depth``)
    # budget -> iterations, where not the budget's
    iterations: Mapping[str, int] = field(default_factory=dict)
    depths: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # budget -> default depths
    seeds: Mapping[str, int] = field(default_factory=dict)  # budget -> default number of seeds (else 1)
    # depths -> each claim's planned test (reslab.experiments.seedplan: effect, seeds, cost)
    tests: Callable[[Sequence[int]], list[seedplan.PlannedTest]] = lambda depths: []

    def runs(self, depths: tuple[int, ...], seeds: tuple[int, ...]) -> list[RunSpec]:
        """Networks x depths x seeds: for each depth each network's seeds, then the ``once`` networks'."""
        nets = [(n, d) for d in depths for n in self.networks] + [(n, n.depth or 0) for n in self.once]
        return [n.run(d, s) for n, d in nets for s in seeds]

    def row_key(self, g: Group) -> tuple[int, int]:
        """Where ``g`` stands in the report's table (:attr:`table_order`, :attr:`depth_first`)."""
        rank = self.table_order.index(g.variant) if g.variant in self.table_order else 9
        return (g.depth, rank) if self.depth_first else (rank, g.depth)


_T6 = paper.PaperColumn(paper.CIFAR10_TEST, paper.SOURCE_T6, {"resnet": paper.TABLE6_CELLS}, paper.SCOPE_T6)

EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in (
        Experiment(
            "degradation",
            "The degradation problem: plain vs residual networks",
            "He et al. 2016, Fig. 6 (CIFAR-10)",
            "plain and residual networks at the same depths and recipe; training (dashed) and test (bold) "
            "error against iterations",
            networks=(PLAIN, RESNET),
            default_depths=(20, 32, 44, 56),
            optional_depths=(110,),
            claims=claims.degradation_claims,
            tests=seedplan.degradation_tests,
            plot=plotting.plot_family_panels,
            paper=paper.PaperColumn(
                paper.CIFAR10_TEST,
                paper.SOURCE_T6,
                {"resnet": paper.TABLE6_CELLS, "plain": {None: "higher than ResNet (Fig. 6)"}},
                paper.SCOPE_T6,
            ),
            table_order=plotting.FAMILY_ORDER,
            iterations={"quick": 600},
            depths={"quick": (20, 56), "standard": (20, 56)},
            seeds={"standard": 3},  # at least 3 for the degradation pair (issue 13)
        ),
        Experiment(
            "depth",
            "Residual networks of increasing depth",
            "He et al. 2016, Table 6 (CIFAR-10)",
            "ResNet-20/32/44/56/110, test error mean ± std over seeds",
            networks=(RESNET,),
            default_depths=(20, 32, 44, 56, 110),
            optional_depths=(1202,),
            claims=claims.depth_claims,
            tests=seedplan.depth_tests,
            plot=plotting.plot_depth,
            paper=_T6,
            table_order=plotting.FAMILY_ORDER,
            iterations={"quick": 280},
            depths={"standard": (20, 32, 44, 56)},
            seeds={"standard": 3},  # the evidence rule's minimum for a SUPPORTED verdict (evidence.MIN_SEEDS)
        ),
        Experiment(
            "shortcuts",
            "Identity vs projection shortcuts",
            "He et al. 2016, Table 3 (ImageNet, ResNet-34)",
            "option A (identity, zero-padding), B (projection where the shape changes), C (all projections) "
            "and the plain net, at one depth",
            # Option A is the CIFAR ResNets' own shortcut: leaving it to the builder keeps the run's config
            # that of ``depth``'s ResNet of this depth, so a finished one is reused.
            networks=(
                *(
                    Network("resnet", f"ResNet-{{d}} ({o})", "resnet{d}", o, f"resnet{{d}}{o}", kw)
                    for o, kw in (("A", {}), ("B", {"shortcut": "B"}), ("C", {"shortcut": "C"}))
                ),
                PLAIN,
            ),
            default_depths=(32,),
            claims=claims.shortcut_claims,
            tests=seedplan.shortcut_tests,
            plot=plotting.plot_shortcuts,
            paper=paper.PaperColumn(
                "paper: ImageNet ResNet-34 top-1 %",
                paper.SOURCE_T3,
                {v: {None: f"{e:.2f}"} for v, e in paper.PAPER_TABLE3.items()},
                "The paper compares shortcut options on ImageNet with ResNet-34",
                dataset="imagenet",
                schedules=(),  # an ImageNet schedule: the header compares against He et al.'s CIFAR one
            ),
            table_order=("A", "B", "C", "plain"),
            depth_first=True,
            iterations={"quick": 600},
            seeds={"standard": 3},  # the evidence rule's minimum for a SUPPORTED verdict (evidence.MIN_SEEDS)
        ),
        Experiment(
            "highway",
            "Residual vs highway vs plain networks",
            "He et al. 2016, Sec. 4.2 / Table 6 (highway networks, Srivastava et al. 2015)",
            "the same body with identity shortcuts (ResNet), gated shortcuts (highway) and no shortcuts (plain)",
            networks=(RESNET, Network("highway", "highway-{d}", "highway{d}"), PLAIN),
            default_depths=(20, 56),
            claims=claims.highway_claims,
            tests=seedplan.highway_tests,
            plot=plotting.plot_highway,
            paper=paper.PaperColumn(
                paper.CIFAR10_TEST,
                paper.SOURCE_T6_HIGHWAY,
                {"resnet": paper.TABLE6_CELLS, "highway": paper.HIGHWAY_CELLS},
                paper.SCOPE_T6,
            ),
            table_order=plotting.FAMILY_ORDER,
            depth_first=True,
            seeds={"standard": 3},  # the evidence rule's minimum for a SUPPORTED verdict (evidence.MIN_SEEDS)
        ),
        Experiment(
            "relatives",
            "ResNet and its relatives at similar size",
            "Hu et al. 2018 (SE), He et al. 2016b (pre-activation), Huang et al. 2017, Table 2 (DenseNet-BC)",
            "ResNet, SE-ResNet (squeeze-and-excitation on the branch) and pre-activation ResNet at one depth, "
            "and DenseNet-BC-100 (k = 12, 0.8M parameters, about ResNet-56's 0.85M)",
            networks=(
                RESNET,
                Network("seresnet", "SE-ResNet-{d}", "seresnet{d}"),
                Network("preact", "pre-act ResNet-{d}", "preact_resnet{d}", stem="preact{d}"),
            ),
            default_depths=(56,),
            optional_depths=(20, 110),
            # one DenseNet of about ResNet-56's size, whatever the depths
            once=(Network("densenet", "DenseNet-BC-100 (k=12)", "densenet_bc100", depth=100),),
            claims=claims.relatives_claims,
            tests=seedplan.relatives_tests,
            plot=plotting.plot_relatives,
            paper=paper.PaperColumn(
                paper.CIFAR10_TEST,
                f"{paper.SOURCE_T6} for the ResNet, the source named in the cell for DenseNet-BC-100; the SE "
                "and pre-activation papers report CIFAR-10 at depths 110 and 164, not 56",
                {"resnet": paper.TABLE6_CELLS, "densenet": {100: paper.DENSENET_BC100}},
                "The papers' numbers are for CIFAR-10 at their full schedules (64k iterations; DenseNet-BC 300 "
                "epochs)",
                schedules=(paper.HE_CIFAR, paper.DENSENET_CIFAR),
            ),
            table_order=("resnet", "seresnet", "preact", "densenet"),
            seeds={"standard": 3},  # the evidence rule's minimum for a SUPPORTED verdict (evidence.MIN_SEEDS)
        ),
    )
}

# Iterations of every run at the quick budget, per experiment.
QUICK_ITERATIONS: dict[str, int] = {
    name: e.iterations.get("quick", BUDGETS["quick"].iterations or 0) for name, e in EXPERIMENTS.items()
}


def get_experiment(name: str) -> Experiment:
    """The record of experiment ``name`` (one line naming the choices otherwise)."""
    if name not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment {name!r}; choose from {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]


def get_budget(name: str) -> Budget:
    """The :class:`~reslab.experiments.budgets.Budget` called ``name`` (one line naming the choices otherwise)."""
    if name not in BUDGETS:
        raise ConfigError(f"unknown budget {name!r}; choose from {', '.join(BUDGETS)}")
    return BUDGETS[name]


def plan_runs(name: str, *, depths: tuple[int, ...], seeds: tuple[int, ...], budget: str) -> list[RunSpec]:
    """The runs of experiment ``name``: networks x depths x seeds (:meth:`Experiment.runs`). The runs do
    not depend on ``budget`` (it decides their configs: :func:`budget_overrides`); it is taken for the
    callers that pass it (bench/step_cost.py)."""
    exp = get_experiment(name)
    for d in depths:
        if d not in VALID_DEPTHS:
            raise ConfigError(f"depth {d} is not a CIFAR ResNet depth; choose from {VALID_DEPTHS}")
    return exp.runs(depths, seeds)


def budget_overrides(
    experiment: str, budget: str, dataset: str, known: set[str] | None = None
) -> dict[str, Any]:
    """TrainConfig fields every run of an experiment gets at a budget (on top of the budget's recipe): the
    budget's overrides and, where the budget or the experiment sets iterations, the rescaled schedule.

    ``known`` (the engine's field names) drops keys this engine version does not have.
    """
    b = get_budget(budget)
    iterations = get_experiment(experiment).iterations.get(budget, b.iterations)
    ov: dict[str, Any] = {"dataset": dataset, **b.overrides, **schedule_overrides(b, iterations)}
    return ov if known is None else {k: v for k, v in ov.items() if k in known}


def parse_seeds(text: str | int | None, experiment: str = "", budget: str | None = None) -> tuple[int, ...]:
    """``"3"`` -> (0, 1, 2); ``"0,4,7"`` -> (0, 4, 7); None -> the experiment's default count at ``budget``,
    else (0,)."""
    if text is None:
        defaults = EXPERIMENTS[experiment].seeds if experiment in EXPERIMENTS else {}
        return tuple(range(defaults.get(budget or "", 1)))
    if isinstance(text, int):
        n = text
    else:
        text = str(text).strip()
        if "," in text:
            try:
                seeds = tuple(int(t) for t in text.split(",") if t.strip())
            except ValueError:
                raise ConfigError(
                    f"--seeds: expected a count or a comma list of integers, got {text!r}"
                ) from None
            if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
                raise ConfigError(f"--seeds: need distinct non-negative seeds, got {text!r}")
            return seeds
        try:
            n = int(text)
        except ValueError:
            raise ConfigError(
                f"--seeds: expected a count or a comma list of integers, got {text!r}"
            ) from None
    if n < 1:
        raise ConfigError(f"--seeds: need at least one seed, got {n}")
    return tuple(range(n))


def parse_depths(text: str | None, experiment: str, budget: str | None = None) -> tuple[int, ...]:
    """``"20,56"`` -> (20, 56); None -> the experiment's default depths at ``budget``."""
    if text is None:
        exp = EXPERIMENTS[experiment]
        return exp.depths.get(budget or "", exp.default_depths)
    try:
        depths = tuple(int(t) for t in str(text).replace(" ", "").split(",") if t)
    except ValueError:
        raise ConfigError(f"--depths: expected a comma list of integers, got {text!r}") from None
    if not depths:
        raise ConfigError("--depths: need at least one depth")
    bad = [d for d in depths if d not in VALID_DEPTHS]
    if bad:
        raise ConfigError(
            f"--depths: {bad[0]} is not a CIFAR ResNet depth (6n+2); choose from {VALID_DEPTHS}"
        )
    return tuple(sorted(set(depths)))
