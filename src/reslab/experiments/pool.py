"""Runs trained in worker processes, several at a time: ``python -m reslab.experiments.worker`` per run.

:class:`Workers` hands the runs to a :class:`concurrent.futures.ThreadPoolExecutor` with one thread per
worker slot; each thread starts one run's worker process and waits for it. A worker is a fresh process,
not a :class:`~concurrent.futures.ProcessPoolExecutor` task, because what it needs is set when it starts:
its environment (its share of the cores, glibc keeping freed memory: :func:`worker_env`) and its output
(``logs/<run>.log``); and because one run dying (killed for memory, a crash) must fail that run alone,
where it would break every task of a process pool. Interrupted (Ctrl-C, or SIGTERM while the pool is
open: :func:`sigterm_raises_interrupt`), the pool stops every worker at a checkpoint (SIGTERM, which the
engine handles as Ctrl-C) and starts no more.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from reslab import _io
from reslab.errors import INTERRUPTED_EXIT
from reslab.experiments.plan import Plan
from reslab.experiments.specs import RunSpec


def resolve_jobs(jobs: int | None, device: str, n_pending: int) -> tuple[int, list[str | None]]:
    """How many runs train at once, and the device of each worker slot (None: the config's own).

    Default: 1 on CPU; on CUDA 4 per GPU (CIFAR-sized ResNets leave most of an H100 idle), at most one per
    two CPU cores and never more than the runs left.
    """
    import torch

    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    n_gpu = torch.cuda.device_count() if cuda else 0
    if jobs is None or jobs <= 0:
        jobs = max(1, min(4 * max(n_gpu, 1), (os.cpu_count() or 2) // 2)) if cuda else 1
    jobs = max(1, min(jobs, max(n_pending, 1)))
    if cuda and n_gpu > 1 and device in ("auto", "cuda"):
        slots: list[str | None] = [f"cuda:{i % n_gpu}" for i in range(jobs)]
    else:
        slots = [None] * jobs
    return jobs, slots


# glibc hands an allocation above its mmap threshold (at most 32 MB) back to the kernel when it is freed,
# so a network whose activations exceed it (DenseNet-BC-100's concatenations: up to 87 MB at batch 128)
# faults those pages in anew on every step. Keeping freed memory in the heap made DenseNet-BC-100's CPU
# step 1.22x faster and left the ResNets' unchanged, for 3% more peak memory (bench/step_cost.py,
# BENCHMARKS.md). A worker is a training process, which holds its peak memory anyway. Other C libraries
# ignore these variables; values the user set win.
_WORKER_MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**36)}


def worker_env(threads: int) -> dict[str, str]:
    """A worker's environment: this process's, ``threads`` OpenMP threads, glibc keeping freed memory."""
    return {**_WORKER_MALLOC_ENV, **os.environ, "OMP_NUM_THREADS": str(threads)}


class Workers:
    """The worker processes of one sweep, one per run, ``len(slots)`` at a time: slot ``i`` trains on
    device ``slots[i]`` (None: the run's config's), each with an even share of the CPU cores (on CUDA they
    only feed the GPU; on CPU they do the work) unless the user set ``threads``. A context manager: the
    pool is open inside ``with``, and an exception leaving it stops the workers (:meth:`stop`)."""

    def __init__(self, plan: Plan, slots: list[str | None], log: Callable[[str], None]) -> None:
        self.plan, self.slots, self.log = plan, slots, log
        self.threads = max(1, (os.cpu_count() or 2) // len(slots))
        self._free: queue.SimpleQueue[int] = queue.SimpleQueue()
        for i in range(len(slots)):
            self._free.put(i)
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen] = set()
        self._stopped = False
        self._pool: ThreadPoolExecutor | None = None
        self._restore: Callable[[], Any] = lambda: None

    def __enter__(self) -> Workers:
        (self.plan.out / "logs").mkdir(parents=True, exist_ok=True)
        self._restore = sigterm_raises_interrupt()
        self._pool = ThreadPoolExecutor(len(self.slots), thread_name_prefix="reslab-worker")
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is not None:
                self.stop()
        finally:
            self._restore()
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, run: RunSpec, verb: str) -> Future[int]:
        """Queue ``run`` (``verb``: "training" or "continuing", for the log); the future's result is its
        worker's exit code (:data:`~reslab.errors.INTERRUPTED_EXIT` when :meth:`stop` came first)."""
        if self._pool is None:
            raise RuntimeError("Workers.submit: open the pool first (`with Workers(...) as workers`)")
        return self._pool.submit(self._train, run, verb)

    def _request(self, run: RunSpec, slot: int) -> dict[str, Any]:
        cfg = dict(self.plan.configs[run.name])
        if self.slots[slot] is not None:
            cfg["device"] = self.slots[slot]
        if "threads" not in self.plan.extra:
            cfg["threads"] = self.threads
        return {"recipe": self.plan.recipe, "config": cfg, "out_dir": str(self.plan.run_dir(run))}

    def _train(self, run: RunSpec, verb: str) -> int:
        slot = self._free.get()
        try:
            logs = self.plan.out / "logs"
            req = self._request(run, slot)
            _io.write_json(logs / f"{run.name}.request.json", req)
            cmd = [sys.executable, "-m", "reslab.experiments.worker", str(logs / f"{run.name}.request.json")]
            env = worker_env(req["config"].get("threads") or self.threads)
            with open(logs / f"{run.name}.log", "ab") as fh, self._started(cmd, fh, env) as proc:
                if proc is None:
                    return INTERRUPTED_EXIT
                device = self.slots[slot]
                self.log(f"  {verb} {run.name} (worker {slot}{', ' + device if device else ''})")
                return proc.wait()
        finally:
            self._free.put(slot)

    @contextlib.contextmanager
    def _started(self, cmd: list[str], fh: Any, env: dict[str, str]) -> Iterator[subprocess.Popen | None]:
        """The worker process, known to :meth:`stop` while it runs (None: the sweep is stopping)."""
        with self._lock:
            proc = None
            if not self._stopped:
                proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
                self._running.add(proc)
        try:
            yield proc
        finally:
            with self._lock:
                self._running.discard(proc)

    def stop(self, grace_s: float = 30.0) -> None:
        """Stop every worker (each run keeps its last checkpoint; a rerun continues it) and start no more.
        A worker still running ``grace_s`` after SIGTERM is killed: none outlives its sweep, and the
        pool's threads, which wait for their workers, end."""
        with self._lock:
            self._stopped = True
            procs = list(self._running)
        for proc in procs:
            with contextlib.suppress(OSError):
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    proc.kill()


def sigterm_raises_interrupt() -> Callable[[], None]:
    """While workers train, SIGTERM to this process raises KeyboardInterrupt (as Ctrl-C does), so the
    workers are stopped at a checkpoint and the invocation is recorded as interrupted; without it the
    default action would end this process at once and leave the workers training, unpublished. Returns
    the function that puts the previous handler back."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, old)
