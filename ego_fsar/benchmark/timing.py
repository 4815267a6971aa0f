"""Timing on a device: timed calls with pending device work finished on both sides, the timing of one
stage of an engine function, rates and peak memory (accelerator or resident)."""
import contextlib
import time
import types
from typing import Any, Callable, Iterator, List, Tuple

import torch


def sync(device: torch.device) -> None:
    """Wait for the work queued on `device` (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable, *args, device: torch.device = torch.device("cpu")) -> Tuple[float, object]:
    """(seconds, result) of `fn(*args)`, with pending device work finished on both sides."""
    sync(device)
    tic = time.perf_counter()
    result = fn(*args)
    sync(device)
    return time.perf_counter() - tic, result


def rate(count: float, seconds: float) -> str:
    """`count / seconds` as text with two decimals ("inf" for no time)."""
    return f"{count / seconds:.2f}" if seconds > 0 else "inf"


@contextlib.contextmanager
def time_calls(module: types.ModuleType, name: str, seconds: List[float]) -> Iterator[None]:
    """Append the duration of every call of `module.name` made inside the block to `seconds`
    (measures one stage of an engine function without copying it)."""
    original = getattr(module, name)

    def timed_call(*args, **kwargs) -> Any:
        tic = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - tic)

    setattr(module, name, timed_call)
    try:
        yield
    finally:
        setattr(module, name, original)


def _proc_status_mib(field: str) -> float:
    """A memory field of /proc/self/status ("VmRSS", "VmHWM"; Linux, reported in kB) in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(f"/proc/self/status has no {field} line")


def peak_memory(device: torch.device) -> Callable[[], Tuple[str, str]]:
    """Reset the peak-memory counter; the returned call gives (peak since then, peak above the memory in
    use at the reset), in MiB as text. CUDA: the device's allocator. CPU: this process's resident memory
    (Linux: VmHWM, reset through /proc/self/clear_refs; "n/a" elsewhere); memory freed earlier but kept by
    the C allocator counts as resident, so measure a run in a process of its own."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device) / 2 ** 20

        def read() -> float:
            return torch.cuda.max_memory_allocated(device) / 2 ** 20
    else:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            start = _proc_status_mib("VmRSS")
        except OSError:
            return lambda: ("n/a", "n/a")

        def read() -> float:
            return _proc_status_mib("VmHWM")

    def result() -> Tuple[str, str]:
        peak = read()
        return f"{peak:.0f}", f"{peak - start:.0f}"

    return result
