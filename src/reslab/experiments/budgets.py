"""How long every run of an experiment trains, and on what: the budgets and the data sets.

A :class:`Budget` says how long every run trains and on how much data; the same budget applies to every
network of an experiment, so the comparison is fair ("same recipe", as in the paper). An experiment's
record (:data:`reslab.experiments.specs.EXPERIMENTS`) may give its own iterations, default depths and
default number of seeds per budget.

Budgets (:data:`BUDGETS`; what each costs on this project's CPU and the measurements that sized them:
BENCHMARKS.md, "What a budget costs" and "What each experiment's networks cost to train"):

``smoke``
    A plumbing check, not a measurement: 256 training images, 4 iterations at batch 16, a 128-image eval
    set. Every command still trains its full set of networks. Used by the tests.
``quick``
    About 20 minutes on 2 CPU cores for the command's default networks, meant to still show the effect
    on Fashion-MNIST: batch 128, the paper's SGD (momentum 0.9, weight decay 1e-4, lr 0.1) with the lr
    divided by 10 at 50% and 75% of the iterations (the paper's 32k/48k of 64k), the full 60k training
    set with the paper's pad-and-crop augmentation, the first 1,000 test images evaluated 6 times per
    run. The iterations per experiment (each record's ``iterations``) come from a cost model of a step
    (time proportional to depth) measured on that CPU. The errors are far from converged values.
``standard``
    5 epochs of the ``fashion_mnist`` recipe (one-cycle SGD to a peak lr of 0.2, batch 128, 2-px crops
    and flips, label smoothing 0.1, 5,000 training images held out), evaluated after every epoch on the
    full 10,000-image test set, several seeds per network (each record's ``seeds``). The runs train in
    fp32 on every machine.

The CPU budgets (smoke, quick, standard) pin ``amp: off``: their committed runs trained with ``amp: auto``
when that meant fp32 on every CPU; since ``auto`` means bf16 on CPUs with native bf16 (issue 32), a run
added on such a machine would otherwise compute in another arithmetic than the seeds beside it. The
committed runs still count as these configs: a run's ``amp: auto`` is read as the precision it recorded
(:func:`reslab.experiments.plan.stored_run_config`). The paper budget (a GPU job) keeps ``auto``: bf16.
``paper``
    The paper's CIFAR schedule (the ``cifar_paper`` recipe: 64k iterations, batch 128, lr 0.1 divided
    by 10 at 32k and 48k, 45k/5k train/val split). A GPU job: hours per network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DATASETS = ("fashion-mnist", "cifar10", "cifar100")
# "synthetic" is accepted too (tests, demos) but not advertised on the command line.
ALL_DATASETS = (*DATASETS, "synthetic")

# The recipe a budget starts from unless it names its own: the paper's (SGD 0.9, wd 1e-4, lr 0.1, batch 128).
RECIPE = "cifar_paper"


@dataclass(frozen=True)
class Budget:
    """How long and on how much data every run of an experiment trains.

    ``iterations`` None keeps the recipe's schedule untouched (the paper budget) unless the experiment
    names its own; otherwise the step schedule is rescaled: lr divided by 10 at ``milestone_fracs`` of
    the iterations (the paper's 32k/48k of 64k is 0.5/0.75), ``evals`` evaluations per run, ResNet-110's
    warm-up shortened to a tenth of the run.
    """

    name: str
    brief: str  # a few words for the command line's help
    description: str  # the report's "Budget" line
    iterations: int | None  # every experiment's, unless its record names its own; None: the recipe's
    overrides: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields over the recipe
    evals: int = 8
    milestone_fracs: tuple[float, ...] = (0.5, 0.75)
    log_points: int = 50  # train_log.csv rows per run (about)
    recipe: str = RECIPE  # the recipe every run starts from


BUDGETS: dict[str, Budget] = {
    "smoke": Budget(
        name="smoke",
        brief="plumbing, <1 min",
        description=(
            "plumbing check, not a measurement: 256 training images, 4 iterations at batch 16, evaluated twice "
            "on 128 test images"
        ),
        iterations=4,
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
            "amp": "off",  # the CPU budgets compute in fp32 on every machine (module docstring)
        },
        evals=2,
    ),
    "quick": Budget(
        name="quick",
        brief="~20 min on 2 CPU cores, shows the effect on Fashion-MNIST",
        description=(
            "~20 min on 2 CPU cores: full training set, batch 128, lr 0.1 divided by 10 at 50% and 75% of "
            "the iterations, the first 1,000 test images evaluated 6 times per run"
        ),
        iterations=300,  # sized per experiment (cost ~ iterations x sum of depths): BENCHMARKS.md
        overrides={"subset": None, "eval_subset": 1000, "val_split": 0, "batch_size": 128, "amp": "off"},
        evals=6,
    ),
    "standard": Budget(
        name="standard",
        brief="5 epochs per network, several seeds: hours on a CPU, decides what the quick budget cannot",
        description=(
            "5 epochs of the fashion_mnist recipe (one-cycle SGD, peak lr 0.2, batch 128, 2-px crops + flips, "
            "5,000 images held out), evaluated once per epoch on the validation images and the full 10k test "
            "set; several seeds per network"
        ),
        iterations=None,  # sized from measurements (issue 13): BENCHMARKS.md
        overrides={"epochs": 5, "tensorboard": False, "amp": "off"},
        evals=5,
        recipe="fashion_mnist",
    ),
    "paper": Budget(
        name="paper",
        brief="the paper's 64k-iteration schedule; a GPU job",
        description=(
            "the paper's schedule (recipe cifar_paper): 64k iterations at batch 128, lr 0.1 divided by 10 at "
            "32k and 48k, 45k/5k train/val split; a GPU job"
        ),
        iterations=None,
        overrides={},
        evals=64,
    ),
}


def schedule_overrides(budget: Budget, iterations: int | None) -> dict[str, Any]:
    """The config fields that rescale the step schedule to ``iterations`` (none when it is None): lr
    divided by 10 at the budget's milestone fractions, its evaluations and log rows spread over the run,
    ResNet-110's start at lr 0.01 (the paper: ~400 of 64k iterations) scaled to a tenth of the run."""
    if iterations is None:
        return {}
    it, fracs = iterations, budget.milestone_fracs
    eval_every = max(1, -(-it // budget.evals))
    return {
        "iterations": it,
        "schedule": "step",
        "milestones": sorted({max(1, round(f * it)) for f in fracs if round(f * it) < it}),
        "eval_every": eval_every,
        "checkpoint_every": eval_every,
        "log_every": max(1, it // budget.log_points),
        "warmup_iters": it // 10 if it >= 20 else 0,
        "warmup_mode": "constant",
        "warmup_factor": 0.1,
        "warmup_min_depth": 110,
    }
