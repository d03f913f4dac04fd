"""Which arithmetic a run uses: ``amp: auto | bf16 | off`` resolved for a device, in one place.

bf16 autocast (convolutions and matrix products in bfloat16, accumulation, BatchNorm statistics, the
loss and the optimizer state in fp32) pays where the hardware multiplies bf16 natively: CUDA GPUs, and
x86 CPUs with AVX512-BF16 or AMX-BF16. Elsewhere the CPU emulates it, and emulation is far slower than
fp32: measured on an AVX2-only AMD EPYC (2 cores, torch 2.14.1), a ResNet-20 training step at batch 128
ran at ~200 img/s in fp32 and ~20 img/s in bf16 (BENCHMARKS.md).

``auto`` therefore means bf16 on CUDA and fp32 on the CPU. Making bf16 the default on CPUs that run it
natively waits for the accuracy comparison the project requires first (fp32 vs bf16 over seeds on the
``fashion_mnist`` recipes), which needs such a CPU; :func:`cpu_has_native_bf16` is the run-time test
that decision will use, and it already guards a forced ``amp: bf16`` with a warning.
"""

from __future__ import annotations

import functools

import torch

AMP_DTYPES = {"bf16": torch.bfloat16, "off": None}


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX-BF16), read at run time from
    torch's CPU feature probe (cpuinfo), not from the processor's name."""
    try:
        caps = torch.backends.cpu.get_cpu_capability()
        info = torch._C._cpu._get_cpu_capability()  # a dict of feature flags (torch >= 2.3)
    except (AttributeError, RuntimeError):
        return False
    if not isinstance(info, dict):
        return False
    return bool(info.get("avx512_bf16") or info.get("amx_bf16")) or "AMX" in str(caps).upper()


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device`` (``None``: fp32). See the module docstring."""
    if amp == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return AMP_DTYPES[amp]


def precision_name(dtype: torch.dtype | None) -> str:
    """``"bf16"`` or ``"fp32"``: what a run records in its summary."""
    return "bf16" if dtype == torch.bfloat16 else "fp32"


def precision_reason(amp: str, device: torch.device, dtype: torch.dtype | None) -> str:
    """What a run computes in and why, for its header: ``fp32 (amp=auto: fp32 on the CPU, ...)``."""
    name = precision_name(dtype)
    if amp == "off":
        return f"{name} (amp=off)"
    if amp == "bf16":
        native = device.type == "cuda" or cpu_has_native_bf16()
        return f"{name} autocast (amp=bf16{'' if native else ', emulated on this CPU: slow'})"
    if device.type == "cuda":
        return f"{name} autocast (amp=auto: bf16 on CUDA)"
    return f"{name} (amp=auto: bf16 only on CUDA; --set amp=bf16 forces it on the CPU)"


def slow_bf16_warning(dtype: torch.dtype | None, device: torch.device) -> str | None:
    """A one-line warning when bf16 was forced on a CPU that only emulates it; else ``None``."""
    if dtype == torch.bfloat16 and device.type == "cpu" and not cpu_has_native_bf16():
        return (
            "warning: amp=bf16 on a CPU without native bf16 (no AVX512-BF16/AMX): emulated, "
            "about 10x slower than fp32 here; amp=auto or amp=off uses fp32"
        )
    return None
