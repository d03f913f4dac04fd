"""``reslab models``: list the model zoo, or one model's details."""

from __future__ import annotations

import argparse
from typing import Any


def add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the model zoo, or show one model's details")
    p.add_argument("pattern", nargs="?", default="*", help="glob over model names (default: all)")
    p.add_argument("--info", metavar="NAME", help="print one model's details")
    p.add_argument("--json", action="store_true", help="print JSON: a list of the matching models' catalogue "
                   "entries (name, family, task, depth, input_size, num_classes, params, macs, paper, ...); "
                   "with --info, one entry")  # fmt: skip
    p.set_defaults(func=_cmd_models)


def _cmd_models(args: argparse.Namespace) -> int:
    """From the committed catalogue (``reslab/models/catalog.json``: :func:`reslab.models.registry.catalog`,
    kept equal to the registry by a test), so that listing the zoo imports no torch."""
    import difflib
    import json
    from pathlib import Path

    from reslab.errors import ConfigError

    zoo = json.loads((Path(__file__).parents[1] / "models" / "catalog.json").read_text(encoding="utf-8"))
    if args.info or not any(c in args.pattern for c in "*?["):
        name = args.info or args.pattern
        if name not in zoo:
            close = difflib.get_close_matches(name, list(zoo), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else "; see `reslab models`"
            raise ConfigError(f"unknown model {name!r}{hint}")
    if args.json:
        names = [args.info] if args.info else _matching(zoo, args.pattern)
        found = [zoo[name] for name in names]
        print(json.dumps(found[0] if args.info else found, indent=2))
        return 0
    if args.info:
        for key, value in zoo[args.info].items():
            if key in ("params", "macs"):
                value = f"{value:,} ({format_count(value)})"
            elif key == "input_size":
                value = "x".join(map(str, value))
            print(f"{key:<12} {'-' if value is None else value}")
        return 0
    names = _matching(zoo, args.pattern)
    rows = [("name", "family", "depth", "params", "MACs", "paper error %")]
    for name in names:
        i = zoo[name]
        counts = (str(i["depth"]), format_count(i["params"]), format_count(i["macs"]))
        rows.append((name, i["family"], *counts, i["paper_error"] or "-"))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for r in rows:
        cells = [r[c].rjust(widths[c]) if c in (2, 3, 4) else r[c].ljust(widths[c]) for c in range(len(r))]
        print("  ".join(cells).rstrip())
    return 0


def _matching(zoo: dict[str, Any], pattern: str) -> list[str]:
    """The catalogue's names matching the glob ``pattern`` (none: one line)."""
    import fnmatch

    from reslab.errors import ConfigError

    names = [n for n in zoo if fnmatch.fnmatchcase(n, pattern)]
    if not names:
        raise ConfigError(f"no model matches {pattern!r}; see `reslab models`")
    return names


def format_count(n: int) -> str:
    """1234567 -> "1.23M", 4089184256 -> "4.09G" (three significant digits)."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(n)
