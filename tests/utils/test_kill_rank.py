"""`kill -9` of one rank of a 2-process job (spawned, and under torchrun) whose ranks all-reduce in a loop,
as training does: every process of the job exits (non-zero) instead of waiting, and the log names the
killed rank. The spawning launcher's watch over its processes (`_log_killed_ranks`) on stand-ins."""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest
import torch

from ego_fsar.utils import distributed as du
from ego_fsar.utils.launch import _log_killed_ranks, free_port
from tests.paths import REPO_ROOT
from tests.utils.test_launch import _cfg, _env, _survivors

_ENTRY = os.path.join(REPO_ROOT, "tests", "utils", "kill_entry.py")
# Failure conditions, not measured times: a job still running past them hangs.
_START_S, _END_S = 120, 60
# A collective that no error ends fails after this (gloo's default is 30 minutes).
_DIST_TIMEOUT_S = "20"


def reduce_until_killed(cfg):
    """Write this process's (pid, start time) to OUTPUT_DIR/pid<rank>.json, then all-reduce in a loop."""
    path = os.path.join(cfg.OUTPUT_DIR, f"pid{du.get_rank()}.json")
    with open(path + ".tmp", "w") as f:
        json.dump([os.getpid(), psutil.Process().create_time()], f)
    os.replace(path + ".tmp", path)
    while True:
        du.all_reduce([torch.ones(1)])
        time.sleep(0.05)


def _command(tmp_path, torchrun: bool):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                str(free_port())] if torchrun else [sys.executable]
    return launcher + [_ENTRY, str(tmp_path), "2", "DIST.TIMEOUT_S", _DIST_TIMEOUT_S]


def _wait_for_ranks(job, tmp_path):
    deadline = time.monotonic() + _START_S
    paths = [tmp_path / f"pid{r}.json" for r in range(2)]
    while not all(p.exists() for p in paths):
        assert job.poll() is None, f"the job ended before its ranks started (rc {job.returncode})"
        assert time.monotonic() < deadline, "the ranks did not start"
        time.sleep(0.2)
    return [tuple(json.loads(p.read_text())) for p in paths]


@pytest.mark.parametrize("torchrun", [False, True], ids=["spawn", "torchrun"])
def test_kill_9_of_one_rank_ends_the_job(tmp_path, torchrun):
    """Rank 1 is killed while rank 0 waits for it in an all-reduce. Spawned: the launcher writes
    `[rank 1] ... ended by signal SIGKILL` to stdout.log. torchrun: its agent names rank 1 and the signal
    as the root cause (rank 0 only sees a lost connection)."""
    out = open(tmp_path / "job.log", "w")
    job = subprocess.Popen(_command(tmp_path, torchrun), env=_env(), cwd=REPO_ROOT, stdout=out,
                           stderr=subprocess.STDOUT)
    try:
        pids = _wait_for_ranks(job, tmp_path)
        os.kill(pids[1][0], signal.SIGKILL)
        rc = job.wait(timeout=_END_S)
    finally:
        if job.poll() is None:
            job.kill()
        out.close()
    log = (tmp_path / "job.log").read_text()
    assert rc != 0, log
    survivors = _survivors(pids)
    for pid in survivors:
        os.kill(pid, signal.SIGKILL)
    assert survivors == []
    if torchrun:
        root_cause = log.split("Root Cause")[-1]
        assert re.search(r"rank\s*: 1 \(local_rank: 1\)", root_cause), log
        assert f"Signal 9 (SIGKILL) received by PID {pids[1][0]}" in root_cause, log
    else:
        line = f"[rank 1] reduce_until_killed ended by signal SIGKILL (pid {pids[1][0]})"
        assert line in (tmp_path / "stdout.log").read_text() and line in log


class _Ended:
    """A spawned process as the launcher sees it: `exitcode` reads None `running_reads` times, then `code`;
    its sentinel is ready (the process has ended; its pipe is closed)."""

    def __init__(self, code: int, running_reads: int = 0, pid: int = 123):
        self.code, self.running_reads, self.pid = code, running_reads, pid
        read, write = os.pipe()
        os.close(write)
        self.sentinel = read

    @property
    def exitcode(self):
        self.running_reads -= 1
        return None if self.running_reads >= 0 else self.code


def _watch(processes, cfg):
    """`_log_killed_ranks` in a thread; False when it is still waiting after 20 s."""
    thread = threading.Thread(target=_log_killed_ranks, args=(processes, cfg, "train"), daemon=True)
    thread.start()
    thread.join(20)
    return not thread.is_alive()


def test_watch_ends_when_processes_end_while_it_looks(tmp_path):
    """Processes that end between two looks at them (here after 1 to 3 reads of their exit code) never
    leave the launcher waiting on no process."""
    cfg = _cfg(tmp_path, 2)
    for reads in range(1, 4):
        assert _watch([_Ended(0, reads), _Ended(0, reads)], cfg)
    assert not (tmp_path / "stdout.log").exists()


def test_watch_names_ranks_ended_by_a_signal_with_their_global_rank(tmp_path, capsys):
    """Node 1 of a 2-node job: its local process 1 killed (SIGKILL) is rank 3; local process 0 raised (exit
    code 1, its own error is logged by itself) and is not named."""
    cfg = _cfg(tmp_path, 2)
    cfg.NUM_SHARDS, cfg.SHARD_ID = 2, 1
    assert _watch([_Ended(1), _Ended(-signal.SIGKILL, pid=456)], cfg)
    line = "[rank 3] train ended by signal SIGKILL (pid 456)"
    log = (tmp_path / "stdout.log").read_text()
    assert line in log and "[rank 2]" not in log and line in capsys.readouterr().err
