"""The paper's experiments as data: which networks each one trains, under which budget.

An experiment is a list of :class:`RunSpec` (one training run each: a network, a seed, and the config
fields that differ from the budget's recipe). A :class:`Budget` says how long every run trains and on how
much data; the same budget applies to every network of an experiment, so the comparison is fair ("same
recipe", as in the paper).

Budgets (:data:`BUDGETS`; what each costs on this project's CPU, measured: BENCHMARKS.md, "What a
budget costs" and "What each experiment's networks cost to train"):

``smoke``
    A plumbing check, not a measurement: 256 training images, 4 iterations at batch 16, a 128-image eval
    set. Every command still trains its full set of networks. Used by the tests.
``quick``
    About 20 minutes on 2 CPU cores for the command's default networks, meant to still show the effect
    on Fashion-MNIST: batch 128, the paper's SGD (momentum 0.9, weight decay 1e-4, lr 0.1) with the lr
    divided by 10 at 50% and 75% of the iterations (the paper's 32k/48k of 64k), the full 60k training
    set with the paper's pad-and-crop augmentation, the first 1,000 test images evaluated 6 times per
    run. Iterations per experiment (:data:`QUICK_ITERATIONS`) come from a cost model of a step (time
    proportional to depth) measured on that CPU. Plain nets fall behind with depth within the first few
    hundred iterations (the paper's Fig. 6 shows the gap from the start), which is what makes a short
    schedule enough to see the degradation problem; the errors are far from converged values, and
    ResNet-56 is still behind ResNet-20 after 600 iterations, so the quick budget cannot test "deeper is
    no worse".
``standard``
    5 epochs of the ``fashion_mnist`` recipe (one-cycle SGD to a peak lr of 0.2, batch 128, 2-px crops
    and flips, label smoothing 0.1, 5,000 training images held out), evaluated after every epoch on the
    full 10,000-image test set, several seeds per network (:attr:`Budget.seeds`): the ResNet-56 vs
    ResNet-20 difference is below the seed-to-seed spread, so one seed cannot decide it. The runs train
    in fp32 (``amp: auto`` keeps fp32 on the CPU).
``paper``
    The paper's CIFAR schedule (the ``cifar_paper`` recipe: 64k iterations, batch 128, lr 0.1 divided
    by 10 at 32k and 48k, 45k/5k train/val split). A GPU job: hours per network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reslab.errors import ConfigError

DATASETS = ("fashion-mnist", "cifar10", "cifar100")
# "synthetic" is accepted too (tests, demos) but not advertised on the command line.
ALL_DATASETS = (*DATASETS, "synthetic")


# The recipe a budget starts from unless it names its own: the paper's (SGD 0.9, wd 1e-4, lr 0.1, batch 128).
RECIPE = "cifar_paper"


@dataclass(frozen=True)
class Budget:
    """How long and on how much data every run of an experiment trains.

    ``iterations`` None keeps the recipe's schedule untouched (the paper budget); otherwise the step
    schedule is rescaled: lr divided by 10 at ``milestone_fracs`` of the iterations (the paper's 32k/48k
    of 64k is 0.5/0.75), ``evals`` evaluations per run, ResNet-110's warm-up shortened to a tenth of the
    run.
    """

    name: str
    description: str
    iterations: dict[str, int] | None  # per experiment; None: the recipe's
    overrides: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields over the recipe
    evals: int = 8
    milestone_fracs: tuple[float, ...] = (0.5, 0.75)
    log_points: int = 50  # train_log.csv rows per run (about)
    depths: dict[str, tuple[int, ...]] = field(
        default_factory=dict
    )  # default depths, where not the experiment's
    recipe: str = RECIPE  # the recipe every run starts from
    seeds: dict[str, int] = field(default_factory=dict)  # default number of seeds, per experiment (else 1)


BUDGETS: dict[str, Budget] = {
    "smoke": Budget(
        name="smoke",
        description=(
            "plumbing check, not a measurement: 256 training images, 4 iterations at batch 16, evaluated twice "
            "on 128 test images"
        ),
        iterations={"degradation": 4, "depth": 4, "shortcuts": 4, "highway": 4, "relatives": 4},
        overrides={
            "subset": 256,
            "eval_subset": 128,
            "val_split": 0,
            "batch_size": 16,
            "eval_batch_size": 128,
            "tensorboard": False,
            # One thread: tiny tensors gain nothing from more, and on a busy machine (tests running beside
            # other jobs) multi-threaded kernels wait on descheduled threads and run tens of times slower.
            "threads": 1,
        },
        evals=2,
    ),
    "quick": Budget(
        name="quick",
        description=(
            "~20 min on 2 CPU cores: full training set, batch 128, lr 0.1 divided by 10 at 50% and 75% of "
            "the iterations, the first 1,000 test images evaluated 6 times per run"
        ),
        # ~15-20 min on 2 CPU cores for the default networks (cost ~ iterations x sum of depths; see above).
        iterations={"degradation": 600, "depth": 280, "shortcuts": 600, "highway": 300, "relatives": 300},
        overrides={"subset": None, "eval_subset": 1000, "val_split": 0, "batch_size": 128},
        evals=6,
        # Deeper ResNets start slower (the sum of 27 unit-variance branches gives large initial logits): at
        # 240 iterations ResNet-56 was still 19 points behind ResNet-20 (measured). Two depths at 600
        # iterations (measured: 20m52s for the four runs) give the deep nets time to get past that start.
        depths={"degradation": (20, 56)},
    ),
    "standard": Budget(
        name="standard",
        description=(
            "5 epochs of the fashion_mnist recipe (one-cycle SGD, peak lr 0.2, batch 128, 2-px crops + flips, "
            "5,000 images held out), evaluated once per epoch on the validation images and the full 10k test "
            "set; several seeds per network"
        ),
        # Sized from measurements (issue 13): at 5 epochs of this recipe plain-56 trails plain-20 by ~6
        # points of test error while the seed-to-seed spread of ResNet-20 is ~0.6 points.
        iterations=None,
        overrides={"epochs": 5, "tensorboard": False},
        evals=5,
        depths={"degradation": (20, 56), "depth": (20, 32, 44, 56), "highway": (20, 56)},
        recipe="fashion_mnist",
        # At least 3 for the degradation pair (issue 13); 2 where the differences are large or the runs long.
        seeds={"degradation": 3, "depth": 2, "shortcuts": 2, "highway": 2, "relatives": 2},
    ),
    "paper": Budget(
        name="paper",
        description=(
            "the paper's schedule (recipe cifar_paper): 64k iterations at batch 128, lr 0.1 divided by 10 at "
            "32k and 48k, 45k/5k train/val split; a GPU job"
        ),
        iterations=None,
        overrides={},
        evals=64,
    ),
}


# Iterations of every run at the quick budget, per experiment.
QUICK_ITERATIONS: dict[str, int] = dict(BUDGETS["quick"].iterations or {})


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
class ExperimentDef:
    name: str
    title: str
    paper_ref: str
    default_depths: tuple[int, ...]
    optional_depths: tuple[int, ...]
    description: str


EXPERIMENTS: dict[str, ExperimentDef] = {
    "degradation": ExperimentDef(
        "degradation",
        "The degradation problem: plain vs residual networks",
        "He et al. 2016, Fig. 6 (CIFAR-10)",
        (20, 32, 44, 56),
        (110,),
        "plain and residual networks at the same depths and recipe; training (dashed) and test (bold) "
        "error against iterations",
    ),
    "depth": ExperimentDef(
        "depth",
        "Residual networks of increasing depth",
        "He et al. 2016, Table 6 (CIFAR-10)",
        (20, 32, 44, 56, 110),
        (1202,),
        "ResNet-20/32/44/56/110, test error mean ± std over seeds",
    ),
    "shortcuts": ExperimentDef(
        "shortcuts",
        "Identity vs projection shortcuts",
        "He et al. 2016, Table 3 (ImageNet, ResNet-34)",
        (32,),
        (),
        "option A (identity, zero-padding), B (projection where the shape changes), C (all projections) "
        "and the plain net, at one depth",
    ),
    "highway": ExperimentDef(
        "highway",
        "Residual vs highway vs plain networks",
        "He et al. 2016, Sec. 4.2 / Table 6 (highway networks, Srivastava et al. 2015)",
        (20, 56),
        (),
        "the same body with identity shortcuts (ResNet), gated shortcuts (highway) and no shortcuts (plain)",
    ),
    "relatives": ExperimentDef(
        "relatives",
        "ResNet and its relatives at similar size",
        "Hu et al. 2018 (SE), He et al. 2016b (pre-activation), Huang et al. 2017, Table 2 (DenseNet-BC)",
        (56,),
        (20, 110),
        "ResNet, SE-ResNet (squeeze-and-excitation on the branch) and pre-activation ResNet at one depth, "
        "and DenseNet-BC-100 (k = 12, 0.8M parameters, about ResNet-56's 0.85M)",
    ),
}

VALID_DEPTHS = (20, 32, 44, 56, 110, 1202)


def plan_runs(name: str, *, depths: tuple[int, ...], seeds: tuple[int, ...], budget: str) -> list[RunSpec]:
    """The runs of experiment ``name``: networks x depths x seeds."""
    if name not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment {name!r}; choose from {', '.join(EXPERIMENTS)}")
    for d in depths:
        if d not in VALID_DEPTHS:
            raise ConfigError(f"depth {d} is not a CIFAR ResNet depth; choose from {VALID_DEPTHS}")
    runs: list[RunSpec] = []

    def add(
        family: str, variant: str, label: str, model: str, depth: int, /, base: str = "", **kw: Any
    ) -> None:
        for s in seeds:
            runs.append(
                RunSpec(
                    name=f"{base or model}-s{s}",
                    family=family,
                    variant=variant,
                    label=label,
                    model=model,
                    depth=depth,
                    seed=s,
                    model_kwargs=kw,
                )
            )

    for d in depths:
        if name == "degradation":
            add("plain", "plain", f"plain-{d}", f"plain{d}", d)
            add("resnet", "resnet", f"ResNet-{d}", f"resnet{d}", d)
        elif name == "depth":
            add("resnet", "resnet", f"ResNet-{d}", f"resnet{d}", d)
        elif name == "shortcuts":
            for opt in ("A", "B", "C"):
                # Option A is the CIFAR ResNets' own shortcut: leaving it to the builder keeps the run's
                # config that of ``depth``'s ResNet of this depth, so a finished one is reused.
                kw = {} if opt == "A" else {"shortcut": opt}
                add("resnet", opt, f"ResNet-{d} ({opt})", f"resnet{d}", d, base=f"resnet{d}{opt}", **kw)
            add("plain", "plain", f"plain-{d}", f"plain{d}", d)
        elif name == "highway":
            add("resnet", "resnet", f"ResNet-{d}", f"resnet{d}", d)
            add("highway", "highway", f"highway-{d}", f"highway{d}", d)
            add("plain", "plain", f"plain-{d}", f"plain{d}", d)
        elif name == "relatives":
            add("resnet", "resnet", f"ResNet-{d}", f"resnet{d}", d)
            add("seresnet", "seresnet", f"SE-ResNet-{d}", f"seresnet{d}", d)
            from reslab.models import list_models

            label = f"pre-act ResNet-{d}"
            if f"preact_resnet{d}" in list_models():  # a named network, e.g. preact_resnet56
                add("preact", "preact", label, f"preact_resnet{d}", d, base=f"preact{d}")
            else:
                add(
                    "preact",
                    "preact",
                    label,
                    "preact_resnet",
                    d,
                    base=f"preact{d}",
                    depth=d,
                    bottleneck=False,
                )
    if name == "relatives":  # one DenseNet of about ResNet-56's size, whatever the depths
        add("densenet", "densenet", "DenseNet-BC-100 (k=12)", "densenet_bc100", 100)
    return runs


def budget_overrides(
    experiment: str, budget: str, dataset: str, known: set[str] | None = None
) -> dict[str, Any]:
    """TrainConfig fields every run of ``experiment`` gets at ``budget`` (on top of :data:`RECIPE`).

    ``known`` (the engine's field names) drops keys this engine version does not have.
    """
    if budget not in BUDGETS:
        raise ConfigError(f"unknown budget {budget!r}; choose from {', '.join(BUDGETS)}")
    b = BUDGETS[budget]
    ov: dict[str, Any] = {"dataset": dataset, **b.overrides}
    evals = b.evals
    if b.iterations is not None:
        it = b.iterations[experiment]
        ov["iterations"] = it
        ov["schedule"] = "step"
        ov["milestones"] = sorted({max(1, round(f * it)) for f in b.milestone_fracs if round(f * it) < it})
        ov["eval_every"] = max(1, -(-it // evals))
        ov["checkpoint_every"] = ov["eval_every"]
        ov["log_every"] = max(1, it // b.log_points)
        # ResNet-110's start at lr 0.01 (the paper: ~400 of 64k iterations), scaled to a tenth of the run.
        ov.update(warmup_iters=it // 10 if it >= 20 else 0, warmup_mode="constant", warmup_factor=0.1)
        ov["warmup_min_depth"] = 110
    if known is not None:
        ov = {k: v for k, v in ov.items() if k in known}
    return ov


def parse_seeds(text: str | int | None, experiment: str = "", budget: str | None = None) -> tuple[int, ...]:
    """``"3"`` -> (0, 1, 2); ``"0,4,7"`` -> (0, 4, 7); None -> the budget's default count, else (0,)."""
    if text is None:
        return tuple(range(BUDGETS[budget].seeds.get(experiment, 1))) if budget in BUDGETS else (0,)
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
    """``"20,56"`` -> (20, 56); None -> the budget's default depths, else the experiment's."""
    if text is None:
        if budget in BUDGETS and experiment in BUDGETS[budget].depths:
            return BUDGETS[budget].depths[experiment]
        return EXPERIMENTS[experiment].default_depths
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
