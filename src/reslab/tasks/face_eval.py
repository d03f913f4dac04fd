"""``reslab eval`` of a face run (:mod:`reslab.tasks.face`): verification on the validation and the
unseen test identities, ``eval.json`` and a ROC figure (``roc.png``) beside it.

The threshold reported for use (``reslab predict``) is the one with the best accuracy on the
*validation* pairs; the test split's accuracy is the LFW protocol's (thresholds chosen on 9 folds of the
test pairs, applied to the tenth), as published face results are.
"""

from __future__ import annotations

import io
from typing import Any

from reslab.figstyle import BLUE, ORANGE
from reslab.tasks.base import EvalRequest, eval_dir

SPLIT_COLOURS = {"val": ORANGE, "test": BLUE}  # the project's Okabe-Ito hues (reslab.figstyle)


def evaluate_face_run(checkpoint: str, request: EvalRequest) -> dict[str, Any]:
    """Metrics per split (``request.splits``), the validation threshold, ``eval.json`` and ``roc.png``."""
    from reslab._device import resolve_device
    from reslab._io import write_bytes, write_json
    from reslab.owned import claim
    from reslab.tasks.face import load_run

    model, meta, data, path = load_run(checkpoint, request.data_dir)
    model.to(resolve_device(request.device))
    batch = request.batch_size or 64
    result: dict[str, Any] = {
        "checkpoint": str(path),
        "step": int(meta.get("step", -1)),
        "source": data.source,
    }
    for split in ("val", "test"):
        if split in request.splits or split == "val":  # the threshold always comes from val
            r = data.metrics(split, model, batch)
            r.pop("scores")
            r["identities"] = len(data.ids[split])
            r["images"] = len(data.identity[split])
            result[split] = r
    result["threshold"] = result["val"]["threshold"]
    if "val" not in request.splits:
        result.pop("val")
    out = eval_dir(path, request.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if path.parent.name == "checkpoints" and out == path.parent.parent:
        claim(out, "run", "roc.png")
    write_bytes(out / "roc.png", roc_png(result))
    result["roc_png"] = str(out / "roc.png")
    write_json(out / "eval.json", {k: _without_roc(v) for k, v in result.items()})
    return result | {"eval_json": str(out / "eval.json")}


def _without_roc(v: Any) -> Any:
    return {k: x for k, x in v.items() if k != "roc"} if isinstance(v, dict) else v


def face_lines(result: dict[str, Any]) -> list[str]:
    """What ``reslab eval`` prints of :func:`evaluate_face_run`'s result."""
    lines = [f"checkpoint: {result['checkpoint']} (step {result['step']})"]
    for split, what in (("val", "validation identities"), ("test", "unseen test identities")):
        if split not in result:
            continue
        s = result[split]
        lines.append(
            f"{split}: verification accuracy {100 * s['accuracy']:.2f} ± {100 * s['accuracy_sd']:.2f}% "
            f"(LFW protocol, 10 folds), ROC AUC {s['auc']:.4f}, TAR {100 * s['tar_far1']:.1f}% at FAR 1%, "
            f"identification top-1 {100 * s['top1']:.1f}% (1-shot)  [{s['identities']} {what}, "
            f"{s['images']} images, {s['pairs']} pairs]"
        )
    lines.append(f"threshold (best on the validation pairs): cosine {result['threshold']:+.4f}")
    return [*lines, f"ROC: {result['roc_png']}", f"results: {result['eval_json']}"]


def roc_png(result: dict[str, Any]) -> bytes:
    """The ROC curve of each split (true-accept rate against false-accept rate, log FAR axis)."""
    import matplotlib.pyplot as plt

    from reslab import figstyle

    with figstyle.style():
        return _roc(plt, result)


def _roc(plt, result: dict[str, Any]) -> bytes:
    fig, ax = plt.subplots(figsize=(5, 4), dpi=120)
    for split in ("val", "test"):
        if split in result:
            s = result[split]
            ax.plot(s["roc"]["fpr"], s["roc"]["tpr"], color=SPLIT_COLOURS[split], drawstyle="steps-post",
                    label=f"{split} ({s['identities']} people): AUC {s['auc']:.3f}")  # fmt: skip
    ax.axvline(0.01, color="0.6", lw=0.8, ls=":")
    ax.set_xscale("symlog", linthresh=1e-2)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false accept rate (symlog; dotted: FAR 1%)")
    ax.set_ylabel("true accept rate")
    ax.set_title("face verification ROC, cosine similarity", fontsize=10)
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
