"""The project's figure style lives in :mod:`reslab.figstyle` (below every package, so that the analyses'
and the tasks' figures draw with the same colours as the experiments'); this name stays for callers."""

from reslab.figstyle import *  # noqa: F403
from reslab.figstyle import _mix  # noqa: F401
