"""Start-up time of the command line: ``reslab --help``, ``reslab models``, ``reslab models --info NAME``
(best of ``--repeat`` runs, each a fresh interpreter), and whether each imported torch.

    python bench/startup.py [--repeat 5]

The listing commands read reslab/models/catalog.json and import no torch (issue 29); a command that
trains, evaluates or predicts imports it when it runs. Times depend on the machine and its load: compare
commands within one run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

COMMANDS = (["--help"], ["models"], ["models", "--info", "resnet56"], ["models", "--json"])
PROBE = (
    "import sys\nfrom reslab.cli import main\ntry:\n    main({argv!r})\nfinally:\n"
    "    print('TORCH' if 'torch' in sys.modules else 'NOTORCH', file=sys.stderr)"
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    print(f"| command | best of {args.repeat} (s) | imports torch |")
    print("|---|---|---|")
    for argv in COMMANDS:
        best, torch_seen = float("inf"), False
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            r = subprocess.run(
                [sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True, text=True
            )
            best = min(best, time.perf_counter() - t0)
            words = r.stderr.split()
            assert "TORCH" in words or "NOTORCH" in words, r.stderr  # the probe ran
            torch_seen |= "TORCH" in words
        print(f"| `reslab {' '.join(argv)}` | {best:.2f} | {'yes' if torch_seen else 'no'} |")


if __name__ == "__main__":
    main()
