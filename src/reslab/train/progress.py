"""What a training run prints: one reporter for a terminal (a tqdm bar with the latest loss, error,
learning rate and throughput), for a log file (a plain line about 20 times a run, and one per evaluation)
and for ``progress=False`` (nothing). Only rank 0 reports; warnings and the stop message go to stderr.
"""

from __future__ import annotations

import sys
from typing import Any


def hms(seconds: float) -> str:
    """``M:SS``, or ``H:MM:SS`` from an hour on."""
    s = int(max(0, seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def metric_text(name: str, value: float) -> str:
    """A metric as a progress line shows it: an error in percent (``error`` and ``*_error``, as the tasks
    report them: ``err 7.10%``, ``garment_error 12.50%``), any other number as it is (``map_50 0.8123``)."""
    if name == "error":
        return f"err {value:.2f}%"
    return f"{name} {value:.2f}%" if name.endswith("_error") else f"{name} {value:.4f}"


class Progress:
    """The reporter of one run: :meth:`start`, then :meth:`log_row` / :meth:`eval_row` as the loop writes
    rows, :meth:`close` at the end. ``enabled=False`` makes every method a no-op (except :meth:`stopped`,
    which says how to continue: a user who pressed Ctrl-C must learn it)."""

    def __init__(self, enabled: bool, *, main: bool = True) -> None:
        self.enabled = enabled and main
        self.main = main
        self.bar: Any = None
        self.total = 0
        self.plain_every = 0
        self.eval_every = 0

    def warn(self, message: str | None) -> None:
        if message and self.enabled:
            print(message, file=sys.stderr, flush=True)

    def say(self, line: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(line)
        else:
            print(line, flush=True)

    def start(self, *, total: int, step: int, eval_every: int, log_every: int, header: str) -> None:
        """Open the bar (on a terminal) and say what is trained (``header``), or where a resumed run
        continues."""
        self.total, self.eval_every = total, eval_every
        self.plain_every = max(log_every, (total // 20) // log_every * log_every)
        if self.enabled and sys.stdout.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=step, unit="it", dynamic_ncols=True, leave=True)
        self.say(header)

    def log_row(self, step: int, epoch: float, row: dict[str, Any], ips: float, batch_size: int) -> None:
        """A ``train_log.csv`` row was written: update the bar, or print a plain line now and then (not
        at an evaluation, which prints its own)."""
        if not self.enabled:
            return
        err = row.get("error")
        if self.bar is not None:
            e = f" err {err:.1f}%" if err is not None else ""
            self.bar.set_postfix_str(f"loss {row['loss']:.3f}{e} lr {row['lr']:.3g} {ips:.0f} img/s")
            self.bar.update(step - self.bar.n)
        elif step % self.plain_every == 0 and step % self.eval_every != 0 and step != self.total:
            eta = (self.total - step) * batch_size / max(ips, 1e-9)
            e = f" err {err:.2f}%" if err is not None else ""
            self.say(
                f"step {step}/{self.total} epoch {epoch:.2f} loss {row['loss']:.4f}{e} "
                f"lr {row['lr']:.4g} {ips:.0f} img/s eta {hms(eta)}"
            )

    def eval_row(
        self, step: int, epoch: float, row: dict[str, Any], metrics: dict[str, dict[str, float]]
    ) -> None:
        """A ``metrics.csv`` row was written: one line with every metric of every split
        (:func:`metric_text`)."""
        parts = [f"step {step}/{self.total}", f"epoch {epoch:.2f}"]
        if row.get("train_error") is not None:
            parts.append(f"train err {row['train_error']:.2f}%")
        else:
            parts.append(f"train loss {row['train_loss']:.4f}")
        for split, values in metrics.items():
            parts += [f"{split} {metric_text(m, v)}" for m, v in values.items()]
        if row["images_per_s"]:
            parts.append(f"{row['images_per_s']:.0f} img/s")
        parts.append(f"elapsed {hms(row['elapsed'])}")
        self.say("  ".join(parts))

    def stopped(self, message: str) -> None:
        """The run stopped on a signal: close the bar, say how to continue (rank 0, stderr)."""
        self.close()
        if self.main:
            print(message, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
