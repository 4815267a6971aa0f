from .defaults import assert_and_infer_cfg, get_cfg
from .merge import CfgNode, ConfigError, merge_dict, merge_file, merge_list

__all__ = ["CfgNode", "get_cfg", "assert_and_infer_cfg", "ConfigError", "merge_dict", "merge_file", "merge_list"]
