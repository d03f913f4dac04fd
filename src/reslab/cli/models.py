"""``reslab models``: list the model zoo, or one model's details."""

from __future__ import annotations

import argparse


def add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the model zoo, or show one model's details")
    p.add_argument("pattern", nargs="?", default="*", help="glob over model names (default: all)")
    p.add_argument("--info", metavar="NAME", help="print one model's details")
    p.set_defaults(func=_cmd_models)


def _cmd_models(args: argparse.Namespace) -> int:
    from reslab.errors import ConfigError
    from reslab.models.registry import format_count, get_entry, list_models, model_info

    if args.info:
        info = model_info(args.info)
        for key, value in info.items():
            if key in ("params", "macs"):
                value = f"{value:,} ({format_count(value)})"
            elif key == "input_size":
                value = "x".join(map(str, value))
            print(f"{key:<12} {'-' if value is None else value}")
        return 0
    names = list_models(args.pattern)
    if not names and not any(c in args.pattern for c in "*?["):
        get_entry(args.pattern)  # an unknown name: the error names the closest ones
    if not names:
        raise ConfigError(f"no model matches {args.pattern!r}; see `reslab models`")
    rows = [("name", "family", "depth", "params", "MACs", "paper error %")]
    for name in names:
        i = model_info(name)
        counts = (str(i["depth"]), format_count(i["params"]), format_count(i["macs"]))
        rows.append((name, i["family"], *counts, i["paper_error"] or "-"))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for r in rows:
        cells = [r[c].rjust(widths[c]) if c in (2, 3, 4) else r[c].ljust(widths[c]) for c in range(len(r))]
        print("  ".join(cells).rstrip())
    return 0
