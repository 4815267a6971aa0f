from .defaults import assert_and_infer_cfg, get_cfg
from .merge import ConfigError, merge_dict, merge_file, merge_list

__all__ = ["get_cfg", "assert_and_infer_cfg", "ConfigError", "merge_dict", "merge_file", "merge_list"]
