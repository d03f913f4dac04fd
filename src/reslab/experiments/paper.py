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
SOURCE_T3 = "He et al. 2016, Table 3 (ImageNet ResNet-34 top-1 10-crop val error %); plain-34: Table 2"
PAPER_TABLE3 = {"A": 25.03, "B": 24.52, "C": 24.19, "plain": 28.54}
DENSENET_BC100 = "4.51 (Huang et al. 2017, Table 2, CIFAR-10+)"

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

    def cell(self, group: Group) -> str:
        """The cell of ``group``'s row ("—" where the paper has none)."""
        by_depth = self.cells.get(group.variant, {})
        return by_depth.get(group.depth, by_depth.get(None, "—"))


CIFAR10_TEST = "paper: CIFAR-10 test %"
SCOPE_T6 = "The paper's numbers are for CIFAR-10 at the full 64k-iteration schedule"
