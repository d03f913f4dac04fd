"""Which arithmetic a run uses: ``amp: auto | bf16 | off`` resolved for a device, in one place.

bf16 autocast (convolutions and matrix products in bfloat16; accumulation, BatchNorm statistics, the
loss, the master weights and the optimizer state in fp32: ``torch.autocast``'s CPU/CUDA op lists) pays
where the hardware multiplies bf16 natively: CUDA GPUs, and x86 CPUs with AVX512-BF16 or AMX-BF16.
Elsewhere the CPU emulates it, far slower than fp32: measured on an AVX2-only AMD EPYC (2 cores, torch
2.14.1), a ResNet-20 training step at batch 128 ran at ~200 img/s in fp32 and ~20 img/s in bf16.

``auto`` therefore means bf16 on CUDA and on CPUs with native bf16, fp32 on every other CPU. The
decision rests on a measurement made elsewhere (issue 32; ../shared/measurements/bf16-cpu-2026-12-06.md,
cited in BENCHMARKS.md): on a 2-core AMD EPYC with AVX512-BF16, bf16 trained ResNet-20 1.48-1.50x faster
than fp32, within ~0.1 point of its accuracy at equal epochs and ~0.65 point above it at equal time.

The CPU probe (:func:`cpu_bf16_probe`) runs at run time, never from the processor's name: the project's
machines differ (AVX2-only on some, AVX512-BF16 or AMX on others). It asks the public
``torch.backends.cpu.get_cpu_capability()`` first: the vector tier torch dispatches to ("DEFAULT",
"AVX2", "AVX512", "SVE256", ...; it never names bf16, so "AVX512" is necessary, not sufficient), then the
CPU's own feature flags from ``/proc/cpuinfo`` (Linux, public), and only where that file is unreadable
torch's private probe (``torch.cpu._is_avx512_bf16_supported``/``_is_amx_tile_supported``, kept as a
fallback). Deviation: ARM CPUs with bf16 instructions (SVE/BF16) are not probed and stay fp32.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

AMP_DTYPES = {"bf16": torch.bfloat16, "off": None}
# The /proc/cpuinfo flags that mean bf16 multiplication in hardware, with the names a header shows.
BF16_FLAGS = {"avx512_bf16": "AVX512-BF16", "amx_bf16": "AMX-BF16"}
CPUINFO = Path("/proc/cpuinfo")


def _capability() -> str:
    """``torch.backends.cpu.get_cpu_capability()`` (public), ``"unknown"`` where it fails."""
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        return "unknown"


def _cpuinfo_flags() -> set[str] | None:
    """The first ``flags`` line of ``/proc/cpuinfo`` as a set; ``None`` where there is none (not Linux)."""
    try:
        text = CPUINFO.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "flags":
            return set(value.split())
    return None


def _torch_flags() -> set[str]:
    """The fallback: torch's private probes (``torch.cpu._is_*_supported``), where they exist."""
    probes = {"avx512_bf16": "_is_avx512_bf16_supported", "amx_bf16": "_is_amx_tile_supported"}
    found = set()
    for flag, name in probes.items():
        probe = getattr(torch.cpu, name, None)
        try:
            if probe is not None and probe():
                found.add(flag)
        except RuntimeError:
            continue
    return found


@functools.cache
def cpu_bf16_probe() -> tuple[bool, str]:
    """Whether this CPU multiplies bf16 in hardware, and why, in the words a run's header shows:
    ``(True, "AVX512-BF16, AMX-BF16 (/proc/cpuinfo; torch capability AVX512)")`` or
    ``(False, "torch capability AVX2: no AVX512-BF16/AMX-BF16")`` (module docstring)."""
    cap = _capability()
    if not cap.upper().startswith("AVX512"):
        return False, f"torch capability {cap}: no AVX512-BF16/AMX-BF16"
    flags, source = _cpuinfo_flags(), "/proc/cpuinfo"
    if flags is None:
        flags, source = _torch_flags(), "torch.cpu's probe"
    found = [name for flag, name in BF16_FLAGS.items() if flag in flags]
    if found:
        return True, f"{', '.join(found)} ({source}; torch capability {cap})"
    return False, f"no AVX512-BF16/AMX-BF16 ({source}; torch capability {cap})"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX-BF16): :func:`cpu_bf16_probe`."""
    return cpu_bf16_probe()[0]


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device`` (``None``: fp32). See the module docstring."""
    if amp == "auto":
        native = device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16())
        return torch.bfloat16 if native else None
    return AMP_DTYPES[amp]


def recorded_amp(config: dict, device: torch.device) -> torch.dtype | None:
    """The autocast dtype a run trained in, for evaluating its weights: the resolved ``precision`` its
    weights' metadata records (``"bf16"``/``"fp32"``), else (older runs) its ``amp`` resolved here."""
    recorded = config.get("precision")
    if recorded in ("bf16", "fp32"):
        return torch.bfloat16 if recorded == "bf16" else None
    return resolve_amp(str(config.get("amp", "auto")), device)


def precision_name(dtype: torch.dtype | None) -> str:
    """``"bf16"`` or ``"fp32"``: what a run records in its summary."""
    return "bf16" if dtype == torch.bfloat16 else "fp32"


def precision_reason(amp: str, device: torch.device, dtype: torch.dtype | None) -> str:
    """What a run computes in and why, for its header, ``config.yaml`` and ``summary.json``:
    ``bf16 autocast (amp=auto: native bf16 on this CPU: AVX512-BF16, ...)``."""
    name = precision_name(dtype)
    if amp == "off":
        return f"{name} (amp=off)"
    if amp == "bf16":
        native = device.type == "cuda" or cpu_has_native_bf16()
        return f"{name} autocast (amp=bf16{'' if native else ', emulated on this CPU: slow'})"
    if dtype != resolve_amp("auto", device):  # a resumed run keeps what it started in (session.run_amp)
        return f"{name}{' autocast' if dtype else ''} (amp=auto: the precision this run started in, kept)"
    if device.type == "cuda":
        return f"{name} autocast (amp=auto: bf16 on CUDA)"
    if device.type != "cpu":
        return f"{name} (amp=auto: bf16 only on CUDA and on CPUs with native bf16)"
    native, why = cpu_bf16_probe()
    if native:
        return f"{name} autocast (amp=auto: native bf16 on this CPU: {why}; --set amp=off for fp32)"
    return f"{name} (amp=auto: this CPU has no native bf16: {why})"


def auto_reason(device: torch.device | str) -> str:
    """What ``amp: auto`` computes in on ``device`` here, and why (:func:`precision_reason`)."""
    device = torch.device(device)
    return precision_reason("auto", device, resolve_amp("auto", device))


def slow_bf16_warning(dtype: torch.dtype | None, device: torch.device) -> str | None:
    """A one-line warning when bf16 was forced on a CPU that only emulates it; else ``None``."""
    if dtype == torch.bfloat16 and device.type == "cpu" and not cpu_has_native_bf16():
        return (
            "warning: amp=bf16 on a CPU without native bf16 (no AVX512-BF16/AMX): emulated, "
            "about 10x slower than fp32 here; amp=auto or amp=off uses fp32"
        )
    return None
