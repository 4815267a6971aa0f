"""Submit a run_net job to SLURM through submitit (PySlowFast's tools/submit.py):

    python tools/submit.py --cfg configs/X.yaml [KEY VALUE ...] --nodes 2 --gpus_per_node 8 \\
        --partition learnfair --time 4320

One SLURM task per node runs tools/run_net.py with `--num_shards NODES --shard_id <node>` and
`--init_method tcp://<first node>:<port>` (the port derived from the job id, or --port); run_net starts
one process per GPU there. `--gpus_per_node 0` trains on the CPU (NUM_GPUS 0, NUM_CPU_PROCS processes).
A failing task ends the job step (srun --kill-on-bad-exit); the other nodes' processes leave their
collectives within DIST.TIMEOUT_S. On preemption or time-out SLURM signals the job; submitit requeues
it (at most --max_requeues times) and the new run resumes from the last checkpoint in OUTPUT_DIR
(TRAIN.AUTO_RESUME, forced True): the epochs since that checkpoint are trained again. submitit's logs
and pickles go to --job_dir (default OUTPUT_DIR/submitit). `--cluster local` runs the job on this
machine (one node) through submitit's local executor, to try a submission out.
"""
import argparse
import importlib.util
import os
import random
from typing import List

import submitit

from ego_fsar.utils.parser import load_config, parse_args, positive_int

RUN_NET = os.path.join(os.path.dirname(os.path.abspath(__file__)), "run_net.py")
# Range of the rendezvous port derived from the job id (submitit's TorchDistributedEnvironment's).
PORT_RANGE = (20000, 60000)


def parse_submit_args(argv: List[str] = None) -> argparse.Namespace:
    """The SLURM options; everything else (--cfg FILE, KEY VALUE overrides) goes to run_net as `run_net_argv`."""
    parser = argparse.ArgumentParser(description="Submit tools/run_net.py to SLURM (submitit)")
    parser.add_argument("--nodes", type=positive_int, default=1, help="number of nodes (NUM_SHARDS)")
    parser.add_argument("--gpus_per_node", type=int, default=8,
                        help="GPUs (processes) per node (NUM_GPUS); 0: CPU, NUM_CPU_PROCS processes per node")
    parser.add_argument("--partition", default="", help="SLURM partition")
    parser.add_argument("--time", type=positive_int, default=4320, help="time limit of each run, minutes")
    parser.add_argument("--name", default="ego_fsar", help="SLURM job name")
    parser.add_argument("--cpus_per_task", type=positive_int, default=None,
                        help="CPUs per node (data loading; default 10 per GPU)")
    parser.add_argument("--mem_gb", type=positive_int, default=None, help="memory per node, GB")
    parser.add_argument("--constraint", default="", help="SLURM constraint (e.g. volta32gb)")
    parser.add_argument("--account", default="", help="SLURM account")
    parser.add_argument("--comment", default="", help="SLURM comment")
    parser.add_argument("--max_requeues", type=int, default=30, help="requeues on preemption / time-out")
    parser.add_argument("--port", type=int, default=None, help="rendezvous port on the first node "
                                                                   "(default: derived from the job id)")
    parser.add_argument("--job_dir", default="", help="submitit's logs (default OUTPUT_DIR/submitit)")
    parser.add_argument("--cluster", choices=("slurm", "local"), default="slurm",
                        help="local: run on this machine (one node) through submitit's local executor")
    args, run_net_argv = parser.parse_known_args(argv)
    args.run_net_argv = run_net_argv
    return args


class RunNetTask:
    """The callable submitit runs on every node: run_net on this node's shard. `checkpoint` (called by
    submitit on preemption or time-out) returns the same task, which resumes from the last checkpoint."""

    def __init__(self, run_net_argv: List[str], nodes: int, port: int = None):
        self.run_net_argv = list(run_net_argv)
        self.nodes = nodes
        self.port = port

    def shard_argv(self, job_env: "submitit.JobEnvironment") -> List[str]:
        """run_net's argv on node `job_env.node` of the job."""
        port = self.port or random.Random(job_env.job_id.split("_")[0]).randrange(*PORT_RANGE)
        init_method = f"tcp://{job_env.hostnames[0]}:{port}" if self.nodes > 1 else "auto"
        return self.run_net_argv + ["--num_shards", str(self.nodes), "--shard_id", str(job_env.node),
                                    "--init_method", init_method]

    def __call__(self) -> None:
        spec = importlib.util.spec_from_file_location("run_net", RUN_NET)
        run_net = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(run_net)
        run_net.main(self.shard_argv(submitit.JobEnvironment()))

    def checkpoint(self) -> submitit.helpers.DelayedSubmission:
        return submitit.helpers.DelayedSubmission(type(self)(self.run_net_argv, self.nodes, self.port))


def build_executor(args: argparse.Namespace, folder: str) -> submitit.AutoExecutor:
    """submitit's executor for `args`: one task per node, the GPUs, CPUs, time, partition, requeues."""
    if args.cluster == "local" and args.nodes > 1:
        raise SystemExit(f"--cluster local runs one node; got --nodes {args.nodes}")
    executor = submitit.AutoExecutor(folder=os.path.join(folder, "%j"), cluster=args.cluster,
                                     slurm_max_num_timeout=args.max_requeues, local_max_num_timeout=args.max_requeues)
    slurm = {"slurm_partition": args.partition, "slurm_constraint": args.constraint,
             "slurm_account": args.account, "slurm_comment": args.comment}
    executor.update_parameters(name=args.name, nodes=args.nodes, tasks_per_node=1,
                               gpus_per_node=args.gpus_per_node,
                               cpus_per_task=args.cpus_per_task or 10 * max(1, args.gpus_per_node),
                               timeout_min=args.time, **({"mem_gb": args.mem_gb} if args.mem_gb else {}),
                               **{k: v for k, v in slurm.items() if v},
                               slurm_srun_args=["--kill-on-bad-exit=1"])
    return executor


def main(argv: List[str] = None) -> "submitit.Job":
    """Check the config (as run_net reads it on a node of this job), submit, and return the job."""
    args = parse_submit_args(argv)
    run_net_argv = args.run_net_argv + ["NUM_GPUS", str(args.gpus_per_node), "TRAIN.AUTO_RESUME", "True"]
    run_net_args = parse_args(run_net_argv + ["--num_shards", str(args.nodes)])
    if len(run_net_args.cfg_files) != 1:
        raise SystemExit(f"tools/submit.py submits one experiment: give one --cfg file, got {run_net_args.cfg_files}")
    cfg = load_config(run_net_args, run_net_args.cfg_files[0])
    executor = build_executor(args, args.job_dir or os.path.join(cfg.OUTPUT_DIR, "submitit"))
    job = executor.submit(RunNetTask(run_net_argv, args.nodes, args.port))
    print(f"Submitted job {job.job_id}: {args.nodes} node(s) x {args.gpus_per_node} GPU(s), output in "
          f"{cfg.OUTPUT_DIR}, submitit logs in {executor.folder}")
    return job


if __name__ == "__main__":
    main()
