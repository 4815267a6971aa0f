"""tools/submit.py: the SLURM job it asks for, each node's run_net arguments, and, through submitit's local
executor, a tiny training that is requeued on preemption and resumes from its last checkpoint."""
import os
import re
import signal
import subprocess
import time
from types import SimpleNamespace

import psutil
import pytest

from ego_fsar.utils import checkpoint as cu
from tests.engine.test_train import tiny_train_cfg
from tests.tools.tiny import load_tool, write_cfg

submitit = pytest.importorskip("submitit")
submit = load_tool("submit")
# Bound on each wait for the local job: it fails (never hangs) past it.
JOB_TIMEOUT_S = 240


@pytest.fixture
def fake_srun(tmp_path, monkeypatch):
    """An `srun` on PATH, so that submitit's SLURM executor can be built (it submits nothing here)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_slurm_job_of_two_nodes(fake_srun, tmp_path):
    args = submit.parse_submit_args(["--cfg", "x.yaml", "SOLVER.MAX_EPOCH", "3", "--nodes", "2", "--gpus_per_node",
                                     "8", "--partition", "gpu", "--time", "600", "--max_requeues", "5"])
    assert args.run_net_argv == ["--cfg", "x.yaml", "SOLVER.MAX_EPOCH", "3"]
    executor = submit.build_executor(args, str(tmp_path))
    script = executor._executor._make_submission_file_text("python -m job", "uid")
    for line in ("--nodes=2", "--ntasks-per-node=1", "--gpus-per-node=8", "--cpus-per-task=80", "--partition=gpu",
                 "--time=600", "--signal=USR2@"):
        assert line in script, script
    assert "--kill-on-bad-exit=1" in script and executor._executor.max_num_timeout == 5


def test_each_node_runs_its_shard_and_a_requeue_runs_the_same_task():
    task = submit.RunNetTask(["--cfg", "x.yaml"], nodes=2)
    node1 = SimpleNamespace(job_id="4242", node=1, hostnames=["node-a", "node-b"])
    argv = task.shard_argv(node1)
    assert argv[:2] == ["--cfg", "x.yaml"]
    assert argv[2:6] == ["--num_shards", "2", "--shard_id", "1"]
    assert re.fullmatch(r"--init_method tcp://node-a:\d+", " ".join(argv[6:]))
    assert task.shard_argv(SimpleNamespace(job_id="4242", node=0, hostnames=["node-a", "node-b"]))[-1] == argv[-1]
    assert submit.RunNetTask(["--cfg", "x.yaml"], nodes=1).shard_argv(node1)[-1] == "auto"
    resubmission = task.checkpoint()
    assert isinstance(resubmission.function, submit.RunNetTask) and resubmission.function.shard_argv(node1) == argv


def _wait_for(condition, job, what: str) -> None:
    """Poll `condition()` until true; fail after JOB_TIMEOUT_S or when the job ends first."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while not condition():
        assert time.monotonic() < deadline and not job.done(), f"{what}: not within {JOB_TIMEOUT_S} s\n{job.stdout()}"
        time.sleep(0.5)


def _epoch_starts(out_dir: str):
    path = os.path.join(out_dir, "stdout.log")
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        return [int(n) for n in re.findall(r"Start epoch: (\d+)", f.read())]


def _end(job) -> None:
    """Cancel the endless local job (SIGINT to submitit's controller); if the controller has not exited
    within 30 s (a cancel that lands while it requeues can go unanswered), kill it and its task."""
    job.cancel()
    try:
        job._process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        controller = psutil.Process(job._process.pid)
        for process in [*controller.children(recursive=True), controller]:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        job._process.wait(timeout=JOB_TIMEOUT_S)


def test_local_job_is_requeued_on_preemption_and_resumes(cfg, tmp_path):
    """A local job (one CPU process) gets SLURM's preemption signal (USR2, as submitit's SLURM jobs do) once
    it has written a checkpoint: submitit calls RunNetTask.checkpoint, requeues the job, and the new run
    resumes after the last checkpoint (TRAIN.AUTO_RESUME). The endless training is then cancelled."""
    cfg = tiny_train_cfg(cfg, tmp_path / "out")
    cfg.SOLVER.MAX_EPOCH, cfg.TRAIN.EVAL_PERIOD, cfg.TEST.ENABLE = 100000, 0, False
    job = submit.main(["--cfg", write_cfg(cfg, tmp_path / "cfg.yaml"), "--cluster", "local", "--gpus_per_node", "0"])
    try:
        _wait_for(lambda: cu.get_last_checkpoint(cfg.OUTPUT_DIR) is not None, job, "a first checkpoint")
        (task,) = psutil.Process(job._process.pid).children()
        task.send_signal(signal.SIGUSR2)
        _wait_for(lambda: len(_epoch_starts(cfg.OUTPUT_DIR)) == 2, job, "a resumed run")
    finally:
        _end(job)
    first, resumed = _epoch_starts(cfg.OUTPUT_DIR)
    assert first == 1 and resumed > 1
    assert os.path.isfile(os.path.join(cfg.OUTPUT_DIR, "checkpoints", f"checkpoint_epoch_{resumed - 1:05d}.pyth"))
    assert "Requeued job" in job.stdout()
