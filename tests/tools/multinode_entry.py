"""Started by test_multinode as tools/run_net.py is started (`--cfg X.yaml [--num_shards N --shard_id I
--init_method URL]`, or under torchrun): trains through launch_job and records each rank's result."""
from ego_fsar.utils.launch import launch_job
from ego_fsar.utils.parser import load_config, parse_args
from tests.tools.test_multinode import train_and_record

if __name__ == "__main__":
    args = parse_args()
    launch_job(load_config(args, args.cfg_files[0]), train_and_record)
