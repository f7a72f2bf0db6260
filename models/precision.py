"""Which floating-point precision a model runs in, chosen by the hardware (no Kafka, no torch import).

bf16 where the CPU computes it natively (AMX or AVX-512 BF16: 3-4x fp32 for transformers on
such CPUs, measured in docs/models.md), fp32 elsewhere on CPU; on CUDA, bf16 where the GPU
supports it, else fp16. A setting or flag overrides the choice (``requested``). ``int8``
(torch dynamic quantisation, CPU only) is an explicit, deprecated opt-in, never chosen.

The device: CUDA when a GPU is there, else the CPU (``choose_device``; the caller asks torch).
"""

from __future__ import annotations

from pathlib import Path

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
DEVICES = ("auto", "cpu", "cuda")
BF16_CPU_FLAGS = {"amx_bf16", "avx512_bf16"}


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``; empty where it cannot be read).

    >>> sorted(cpu_flags("processor : 0\\nflags : fpu sse2 amx_bf16 avx512f\\n"))
    ['amx_bf16', 'avx512f', 'fpu', 'sse2']
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def choose_precision(requested: str, device: str, flags: set[str] | None = None, cuda_bf16: bool = False) -> str:
    """``requested`` unless it is ``auto``; then the fastest precision that keeps accuracy here.

    >>> choose_precision("auto", "cpu", {"avx512_bf16"}), choose_precision("auto", "cpu", {"avx2"})
    ('bf16', 'fp32')
    >>> choose_precision("auto", "cuda", cuda_bf16=False), choose_precision("fp32", "cuda")
    ('fp16', 'fp32')
    """
    if requested not in PRECISIONS:
        raise ValueError(f"precision {requested!r} is not one of {', '.join(PRECISIONS)}")
    if requested == "int8" and device.startswith("cuda"):
        raise ValueError("precision int8 (torch dynamic quantisation) runs on the CPU only: choose fp16 or bf16 on CUDA")
    if requested != "auto":
        return requested
    if device.startswith("cuda"):
        return "bf16" if cuda_bf16 else "fp16"
    return "bf16" if BF16_CPU_FLAGS & (cpu_flags() if flags is None else flags) else "fp32"


STUDENT_PRECISIONS = ("auto", "fp32", "bf16")


def choose_student_precision(requested: str, arch: str, layers: int = 1, flags: set[str] | None = None) -> str:
    """The student's weights: ``requested``; ``auto`` is bf16 for a one-layer BiLSTM on a CPU that
    computes bf16 natively, fp32 for every other student and CPU.

    Measured at the stream's batch of 256 (``scripts/bench_student_precision.py``, docs/benchmarks.md):
    the served BiLSTM (``models/student_serving.py``: oneDNN's LSTM kernel, rows grouped by length)
    is 2.5x faster in bf16 than in fp32 on an AMX CPU, 100% the same labels on emotion test, and
    its memory levels off (+180 MB over its first 1,500 batches, then flat). A stacked BiLSTM is
    served packed, where bf16 made memory grow by 1 GB and more; an MLP's forward pass is 2 us per
    tweet in fp32 and bf16 makes it slower.

    >>> choose_student_precision("auto", "bilstm", flags={"amx_bf16"}), choose_student_precision("auto", "bilstm", flags={"avx2"})
    ('bf16', 'fp32')
    >>> choose_student_precision("auto", "mlp", flags={"amx_bf16"}), choose_student_precision("bf16", "mlp")
    ('fp32', 'bf16')
    >>> choose_student_precision("auto", "bilstm", layers=2, flags={"amx_bf16"})
    'fp32'
    """
    if requested not in STUDENT_PRECISIONS:
        raise ValueError(f"student precision {requested!r} is not one of {', '.join(STUDENT_PRECISIONS)}")
    if requested != "auto":
        return requested
    native_bf16 = bool(BF16_CPU_FLAGS & (cpu_flags() if flags is None else flags))
    return "bf16" if arch == "bilstm" and layers == 1 and native_bf16 else "fp32"


def choose_device(requested: str, cuda_available: bool) -> str:
    """``cuda`` where a GPU is there (``auto``), else ``cpu``; an explicit ``cuda`` without one is an error.

    >>> choose_device("auto", True), choose_device("auto", False), choose_device("cpu", True)
    ('cuda', 'cpu', 'cpu')
    """
    kind = requested.split(":", 1)[0]
    if kind not in DEVICES:
        raise ValueError(f"device {requested!r} is not one of {', '.join(DEVICES)} (or cuda:N)")
    if kind == "auto":
        return "cuda" if cuda_available else "cpu"
    if kind == "cuda" and not cuda_available:
        raise ValueError(f"device {requested!r} asked for, but torch sees no CUDA device")
    return requested
