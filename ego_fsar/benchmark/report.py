"""The text around a benchmark's figures: aligned tables and the lines naming the machine they were
measured on (device, threads, load, bf16 support)."""
import os
from typing import Dict, List, Sequence, Tuple

import torch
from fvcore.common.config import CfgNode

from ego_fsar.utils.env import device_for

# One table row: column name -> cell text.
Row = Dict[str, str]


def format_table(rows: List[Row], columns: Sequence[str]) -> str:
    """Rows as an aligned text table (missing cells are blank)."""
    widths = {c: max([len(c)] + [len(r.get(c, "")) for r in rows]) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns).rstrip(),
             "  ".join("-" * widths[c] for c in columns)]
    lines += ["  ".join(r.get(c, "").ljust(widths[c]) for c in columns).rstrip() for r in rows]
    return "\n".join(lines)


def cpu_info() -> Dict[str, str]:
    """The first processor's entries of /proc/cpuinfo (empty where there is none)."""
    info = {}
    if os.path.isfile("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                info[key.strip()] = value.strip()
    return info


def device_line(cfg: CfgNode) -> str:
    """The device, torch's CPU threads and the machine's load (other work skews every figure)."""
    device = device_for(cfg)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU ({cpu_info().get('model name', 'unknown model')})"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown"
    return (f"device: {name}; {torch.get_num_threads()} torch threads; {os.cpu_count()} cores, "
            f"load average {load} (1, 5, 15 min)")


def bf16_support(device: torch.device) -> Tuple[bool, str]:
    """(native bf16 support, a line describing it) for `device`."""
    if device.type == "cuda":
        supported = torch.cuda.is_bf16_supported()
        return supported, f"bf16 on {torch.cuda.get_device_name(device)}: {'yes' if supported else 'no'}"
    flags = set(cpu_info().get("flags", "").split())
    native = {flag: flag in flags for flag in ("avx512f", "avx512_bf16", "amx_bf16")}
    supported = native["avx512_bf16"] or native["amx_bf16"]
    listed = ", ".join(f"{flag} {'yes' if has else 'no'}" for flag, has in native.items())
    return supported, (f"CPU kernels: {torch.backends.cpu.get_cpu_capability()}; {listed}; "
                       f"native bf16: {'yes' if supported else 'no'}")
