"""Timing on a device: timed calls with pending device work finished on both sides, the timing of one
stage of an engine function, rates and peak accelerator memory."""
import contextlib
import time
from typing import Callable, Iterator, List, Tuple

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
def time_calls(module, name: str, seconds: List[float]) -> Iterator[None]:
    """Append the duration of every call of `module.name` made inside the block to `seconds`
    (measures one stage of an engine function without copying it)."""
    original = getattr(module, name)

    def timed_call(*args, **kwargs):
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


def peak_memory(device: torch.device) -> Callable[[], str]:
    """Reset the device's peak-memory counter; the returned call gives the peak since then (MiB), or
    "n/a" on the CPU (PyTorch tracks no CPU peak)."""
    if device.type != "cuda":
        return lambda: "n/a (CPU)"
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    return lambda: f"{torch.cuda.max_memory_allocated(device) / 2 ** 20:.0f}"
