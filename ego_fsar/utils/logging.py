"""Logging: stdout + OUTPUT_DIR/stdout.log on the master process, json stats, TensorBoard."""
import logging
import os
import sys
import traceback
from typing import Dict, Optional

import simplejson

from . import distributed as du

LOG_FILE = "stdout.log"
_FORMAT = "[%(asctime)s][%(levelname)s] %(name)s:%(lineno)d: %(message)s"
JSON_STATS_FILE = "json_stats.log"
_state = {"output_dir": None}


def setup_logging(output_dir: Optional[str] = None) -> None:
    """Log to stdout (and `output_dir/stdout.log`) on the master process; silence the others."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    if not du.is_master_proc():
        root.setLevel(logging.ERROR)
        root.addHandler(logging.NullHandler())
        return
    root.setLevel(logging.INFO)
    fmt = logging.Formatter(_FORMAT, datefmt="%m/%d %H:%M:%S")
    stream = logging.StreamHandler(sys.stdout)
    stream.setFormatter(fmt)
    root.addHandler(stream)
    _state["output_dir"] = output_dir
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
        file_handler = logging.FileHandler(os.path.join(output_dir, LOG_FILE))
        file_handler.setFormatter(fmt)
        root.addHandler(file_handler)


def log_fatal_error(output_dir: Optional[str], what: str) -> None:
    """Append the exception being handled (traceback) and a last line `[rank R] <what> failed: <error>`
    to `output_dir`/stdout.log, from any rank (only the master's log handlers write to that file), and
    print the last line to stderr."""
    error = traceback.format_exception_only(*sys.exc_info()[:2])[-1].strip().replace("\n", " ")
    line = f"[rank {du.get_rank()}] {what} failed: {error}"
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
        with open(os.path.join(output_dir, LOG_FILE), "a") as f:
            f.write(f"{traceback.format_exc()}{line}\n")
    print(line, file=sys.stderr, flush=True)


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)


def _round(value):
    return round(value, 6) if isinstance(value, float) else value


def log_json_stats(stats: Dict) -> None:
    """Log `json_stats: {...}` and append the same json line to OUTPUT_DIR/json_stats.log."""
    if not du.is_master_proc():
        return
    line = simplejson.dumps({k: _round(v) for k, v in stats.items()}, sort_keys=True, use_decimal=True)
    logging.getLogger(__name__).info("json_stats: %s", line)
    if _state["output_dir"]:
        with open(os.path.join(_state["output_dir"], JSON_STATS_FILE), "a") as f:
            f.write(line + "\n")
