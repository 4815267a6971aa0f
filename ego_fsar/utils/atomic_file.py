"""Atomic file writes: a reader sees the old file or the whole new one, never a part."""
import os
from typing import Any, Callable


def atomic_write(path: str, write: Callable[[Any], None], mode: str = "wb") -> None:
    """`write(file)` into a temporary file `<path>.tmp.<pid>` of the same folder (opened with `mode`),
    then rename it over `path`; the temporary file is removed if writing fails."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, mode) as f:
            write(f)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
