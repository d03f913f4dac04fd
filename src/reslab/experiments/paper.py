"""The papers' numbers our experiments are compared with, and how the report's table shows them.

He et al. 2016 ("Deep Residual Learning for Image Recognition"): Table 6 (CIFAR-10 test error of the
CIFAR ResNets, 20 to 1202 layers) and Table 3 (ImageNet ResNet-34 top-1 error per shortcut option;
plain-34 from Table 2). Huang et al. 2017 ("Densely Connected Convolutional Networks"), Table 2:
DenseNet-BC (L = 100, k = 12) on CIFAR-10 with augmentation. Each experiment's record
(:data:`reslab.experiments.specs.EXPERIMENTS`) names the :class:`PaperColumn` its report shows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reslab.experiments.results import Group

SOURCE_T6 = "He et al. 2016, Table 6 (CIFAR-10 test error %)"
PAPER_TABLE6 = {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43, 1202: 7.93}
PAPER_TABLE6_NOTE = {110: "6.43 (best of 5; mean 6.61 ± 0.16)"}
# Table 6 also quotes Srivastava et al.'s highway networks, at 19 and 32 layers, not at the depths the highway
# experiment trains (20, 56): each highway row shows the nearest shallower one, its depth named in the cell.
PAPER_TABLE6_HIGHWAY = {19: "7.54", 32: "8.80"}
HIGHWAY_CELLS: dict[int | None, str] = {
    20: f"{PAPER_TABLE6_HIGHWAY[19]} (19 layers; best, mean 7.72 ± 0.16)",
    56: f"{PAPER_TABLE6_HIGHWAY[32]} (32 layers; none at 56)",
}
SOURCE_T6_HIGHWAY = (
    f"{SOURCE_T6}; the highway rows: Table 6's quote of Srivastava et al.'s highway networks on CIFAR-10, "
    + " and ".join(f"{v}% at {d} layers" for d, v in PAPER_TABLE6_HIGHWAY.items())
    + ", the paper's nearest depths to ours (it has none at 20 or 56)"
)
SOURCE_T3 = "He et al. 2016, Table 3 (ImageNet ResNet-34 top-1 10-crop val error %); plain-34: Table 2"
PAPER_TABLE3 = {"A": 25.03, "B": 24.52, "C": 24.19, "plain": 28.54}
DENSENET_BC100 = "4.51 (Huang et al. 2017, Table 2, CIFAR-10+)"

# The paper's CIFAR-10 schedule (Sec. 4.2; recipe cifar_paper) and how each recipe departs from it: said
# in every report's header.
PAPER_RECIPE = "cifar_paper"
PAPER_ITERATIONS = 64_000
RECIPE_DEVIATIONS = {
    "cifar_paper": "none (it is the paper's CIFAR-10 recipe)",
    "fashion_mnist": (
        "a one-cycle schedule (200 warm-up steps, then linear decay to 0) instead of lr 0.1 divided by 10 at "
        "32k and 48k iterations; peak lr 0.2 and Nesterov momentum instead of lr 0.1 and plain momentum; weight decay 5e-4 instead of 1e-4; "
        "label smoothing 0.1 (none in the paper); 2-pixel instead of 4-pixel padding for the random crops; "
        "1-channel 28x28 images with 5,000 of 60,000 held out instead of CIFAR-10's 45k/5k split"
    ),
}

# He et al.'s CIFAR-10 schedule (Sec. 4.2): Table 6's, and the one a report compares its budget against
HE_CIFAR = (f"He et al.'s {PAPER_ITERATIONS:,}-iteration CIFAR-10 schedule (Sec. 4.2)", PAPER_ITERATIONS)
# DenseNet-BC on CIFAR: 300 epochs of 50,000 images at batch 64 (Huang et al. 2017, Sec. 4.2)
DENSENET_CIFAR = (
    "DenseNet-BC's 300 epochs at batch 64 (234,375 iterations; Huang et al. 2017, Sec. 4.2)",
    234_375,
)
DATASET_NAMES = {"cifar10": "CIFAR-10", "imagenet": "ImageNet"}


def against_reference(column: PaperColumn, dataset: str, iterations: int | None, recipe: str) -> str:
    """The report header's sentence on what departs from the reference: the data set, the iterations per
    run against the reference's CIFAR schedule(s) (against He et al.'s CIFAR-10 schedule, said so, where
    the reference is an ImageNet experiment), and the recipe's deviations from He et al.'s CIFAR-10 recipe
    (:data:`RECIPE_DEVIATIONS`)."""
    ref = DATASET_NAMES.get(column.dataset, column.dataset)
    data = "the reference's" if dataset == column.dataset else f"not the reference's {ref}"
    if not iterations:
        budget = "iterations per run not recorded; " + "; ".join(w for w, _ in column.schedules or [HE_CIFAR])
    elif column.schedules:
        budget = f"{iterations:,} iterations per run, " + "; ".join(
            f"{100 * iterations / n:.1f}% of {which}" for which, n in column.schedules
        )
    else:
        budget = (
            f"{iterations:,} iterations per run; the reference is an {ref} experiment, so the budget is compared "
            f"against {HE_CIFAR[0]}: {100 * iterations / PAPER_ITERATIONS:.1f}% of it"
        )
    deviations = RECIPE_DEVIATIONS.get(recipe, f"not listed here: compare `{recipe}` with `{PAPER_RECIPE}`")
    return (
        f"Data set: {dataset}, {data}. Budget: {budget}. Recipe `{recipe}`; its departures from He et "
        f"al.'s CIFAR-10 recipe (`{PAPER_RECIPE}`): {deviations}."
    )


# Table 6 as the report's cells: depth -> text.
TABLE6_CELLS: dict[int | None, str] = {
    d: PAPER_TABLE6_NOTE.get(d, f"{v:.2f}") for d, v in PAPER_TABLE6.items()
}


@dataclass(frozen=True)
class PaperColumn:
    """The paper's numbers beside ours in the report's table: the column's header, the source named under
    the table, the cell of each network and what the numbers are (``scope``: said in the table's notes
    with how to compare them)."""

    header: str
    source: str
    cells: Mapping[str, Mapping[int | None, str]]  # variant -> depth (None: any depth) -> cell
    scope: str
    dataset: str = "cifar10"  # the data set the numbers are for
    # the references' CIFAR schedules a run's iterations are compared against (which, iterations); none
    # where the reference is not a CIFAR experiment (:func:`against_reference` then says so)
    schedules: tuple[tuple[str, int], ...] = (HE_CIFAR,)

    def cell(self, group: Group) -> str:
        """The cell of ``group``'s row ("—" where the paper has none)."""
        by_depth = self.cells.get(group.variant, {})
        return by_depth.get(group.depth, by_depth.get(None, "—"))


CIFAR10_TEST = "paper: CIFAR-10 test %"
SCOPE_T6 = "The paper's numbers are for CIFAR-10 at the full 64k-iteration schedule"
