"""One run of an experiment in its own process: ``python -m reslab.experiments.worker REQUEST.json``.

The request (written by :mod:`reslab.experiments.runner`) holds the recipe, the config fields and the run
directory. Exit code 0 when the run finished, :data:`reslab.errors.USER_ERROR_EXIT` on a user error,
:data:`reslab.errors.INTERRUPTED_EXIT` when SIGINT/SIGTERM stopped it at a checkpoint (the engine has said
where; a rerun continues it), 1 on a bug.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from reslab.errors import INTERRUPTED_EXIT, USER_ERROR_EXIT, ReslabError


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m reslab.experiments.worker REQUEST.json", file=sys.stderr)
        return USER_ERROR_EXIT
    try:
        req = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
        from reslab.experiments.plan import continued_config
        from reslab.train import load_recipe, train

        cfg = load_recipe(req["recipe"], **continued_config(req["config"], Path(req["out_dir"])))
        if cfg.threads:
            import torch

            torch.set_num_threads(int(cfg.threads))
        # resume=True: a missing run starts fresh, an unfinished one continues from its last checkpoint.
        # progress=True: plain progress lines (stdout is the run's log file, not a terminal).
        train(cfg, Path(req["out_dir"]), resume=True, progress=True)
    except ReslabError as e:
        print(f"reslab: error: {e}", file=sys.stderr)
        return USER_ERROR_EXIT
    except KeyboardInterrupt:  # the engine stopped at a checkpoint and printed one line saying so
        return INTERRUPTED_EXIT
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
