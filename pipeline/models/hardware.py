"""Which precision `auto` means on the hardware at hand, answered without importing torch where the OS tells: the
embed stage's own process resolves `auto` and keys its precision check before its encoder pool starts, and torch
would cost it ~1.2 s and ~140 MiB for the whole stage when its encoders all run in the pool's actors.

Reduced precision runs the matrix multiplies under autocast (weights stay float32; layer norms, softmax and the
pooling stay float32), so vectors keep cosine >= `MIN_COSINE` to the float32 ones while bf16 GEMMs run about twice
as fast on CPUs with AVX512-BF16 / AMX and on GPUs. fp16 is a GPU choice: CPUs have no fast fp16 GEMM.
"""

from __future__ import annotations

import functools
from importlib import metadata

# What autocast promises: every text of the check's sample at least this close (cosine) to its fp32 vector. bf16
# measured 0.99997 at worst on 768 SciFact abstracts and claims with MiniLM.
MIN_COSINE = 0.9999
# The CPU flags of a native bf16 multiply (Linux's /proc/cpuinfo and torch's probe name them alike).
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.cache
def cpu_flags() -> frozenset[str]:
    """This CPU's instruction-set flags: Linux's /proc/cpuinfo (x86), else torch's own probe (cpuinfo), which answers
    on every platform torch runs on."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    import torch

    return frozenset(name for name, present in torch.cpu.get_capabilities().items() if present is True)


def resolve_precision(precision: str, runtime: str, device: str) -> str:
    """`precision`, with `auto` made concrete for `runtime` on `device` ("cpu" or "cuda"): on a GPU bf16 where it
    runs natively (Ampere on), else fp16; on a CPU bf16 where it runs in hardware (elsewhere bf16 GEMMs are emulated,
    slower than fp32), else fp32; onnx fp32, since its int8 moves vectors (cosine ~0.99), a trade to choose rather
    than a default."""
    if precision != "auto":
        return precision
    if runtime != "torch":
        return "fp32"
    if device == "cuda":
        import torch

        # Native only: emulated bf16 on an older GPU is slower than its fp16.
        return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"
    return "bf16" if any(flag in cpu_flags() for flag in BF16_FLAGS) else "fp32"


def describe(device: str) -> str:
    """What a precision check's result depends on besides the model: torch's version and the device's kind (the
    CPU's bf16 and vector instruction sets, the GPU's name where this process sees it)."""
    version = metadata.version("torch")
    if device == "cuda":
        import torch

        if torch.cuda.is_available():
            return f"torch {version}, {torch.cuda.get_device_name()}"
    found = sorted(flag for flag in cpu_flags() if flag.startswith(("avx", "amx", "fma", "sse", "asimd", "sve")))
    return f"torch {version}, {device}: {' '.join(found)}"
