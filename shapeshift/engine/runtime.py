"""Process-wide settings: numerics applied before torch starts its thread pool, the precision a machine
computes fastest, and each job's memory (released before it starts, its peak measured)."""

from __future__ import annotations

import contextlib
import ctypes
import gc

import torch


def fast_cpu_math() -> None:
    """Flush denormal floats to zero.

    The star/moon task is easy: the loss reaches ~0 within an epoch, gradients underflow into denormal
    floats, and CPU convolution backward then runs 3-5x slower (measured: the strided CNN fell from
    ~1,600 to ~330 img/s). Threads inherit this setting only when they are created after it, so entry
    points call this at import, before the first parallel op creates the pool. Values below ~1e-38
    become 0; nothing else changes.
    """
    torch.set_flush_denormal(True)


AUTO = "auto"
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")  # CPU features that compute bf16 matrix products natively


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo); empty where unknown. A seam: tests replace it."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def on_gpu(accelerator: str) -> bool:
    """Whether a Trainer with this `accelerator` computes on a CUDA GPU."""
    return accelerator in ("gpu", "cuda") or (accelerator == AUTO and torch.cuda.is_available())


def choose_deterministic(deterministic: bool | str, accelerator: str) -> tuple[bool | str, str]:
    """(Lightning `deterministic`, why): `auto` is `True` on the CPU and `"warn"` on a GPU, any other value
    is kept. torch has no deterministic CUDA backward for reflection padding (antialiased-cnns pads that
    way, as does `arch.padding_mode=reflect`), so `True` raises there; `"warn"` still selects the
    deterministic kernel of every op that has one, so the other models are exactly as reproducible."""
    if str(deterministic) != AUTO:
        return deterministic, "set in the config"
    if on_gpu(accelerator):
        return "warn", "GPU: deterministic kernels where torch has them (reflection padding has none)"
    return True, "CPU: every op has a deterministic kernel"


def choose_precision(precision: str, accelerator: str) -> tuple[str, str]:
    """(Lightning precision, why): `auto` becomes bf16 autocast where the hardware computes bf16 natively
    (GPUs with bf16; CPUs with AMX or AVX512-BF16) and fp32 elsewhere; any other value is kept as given."""
    if str(precision) != AUTO:
        return str(precision), "set in the config"
    if on_gpu(accelerator):
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return "bf16-mixed", f"{torch.cuda.get_device_name()} computes bf16 natively"
        return "32-true", "this GPU has no native bf16"
    native = sorted(set(BF16_CPU_FLAGS) & cpu_flags())
    if native:
        return "bf16-mixed", f"the CPU computes bf16 natively ({', '.join(native)})"
    return (
        "32-true",
        "the CPU has no native bf16 (no amx_bf16 or avx512_bf16): bf16 would be emulated, slower",
    )


def reset_peak_memory() -> None:
    """Start a new peak-memory window for this process, so each job of a multirun measures its own peak
    (the process's lifetime peak would carry the largest earlier job). Linux 4.0+; a no-op elsewhere."""
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    if torch.cuda.is_initialized():  # the GPU's peak too, where an earlier job of this process used one
        torch.cuda.reset_peak_memory_stats()


def peak_memory_mib() -> float | None:
    """Peak resident memory (VmHWM) since the last reset, in MiB; None where the kernel does not say."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def gpu_peak_memory_mib(device: torch.device) -> float | None:
    """Peak memory torch allocated on this CUDA device since the job started, in MiB; None off CUDA."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def checkpoint_epoch(path) -> int:
    """The 0-based epoch a Lightning checkpoint was saved in (memory-mapped: the weights are not read)."""
    return int(torch.load(path, map_location="cpu", mmap=True, weights_only=True)["epoch"])


def release_memory() -> None:
    """Hand the memory an earlier job freed back to the system before the next job of a multirun starts.

    Without it, each job starts from what the last one left behind: unreachable cycles (Lightning's trainer
    and module refer to each other) and free heap pages glibc keeps (measured: ResNet-18 jobs in one process
    left 1.2-1.8 GiB resident, 0.5 GiB after this).
    """
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def device_for(accelerator: str) -> torch.device:
    """The device a model runs on outside a Trainer (`audit`, `explain`): CUDA where a Trainer with this
    `accelerator` would compute on a GPU (`gpu`, `cuda`, or `auto` with a GPU present), else the CPU."""
    return torch.device("cuda" if on_gpu(accelerator) else "cpu")
