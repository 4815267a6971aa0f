"""Checked merging of yaml files and KEY VALUE overrides into a config.

yacs alone reports an unknown key without saying where it came from; here every error names the
key, the source (file or command line) and the closest valid keys, and a type mismatch names both
types. Keys listed in `POLYMORPHIC_KEYS` accept several types (e.g. `MODEL.NUM_CLASSES` is an int,
or a list for multi-head models); a None (yaml `null`, `None` on the command line) is accepted only
by the keys of `NULLABLE_KEYS`.

`CfgNode` is fvcore's CfgNode whose `merge_from_file`, `merge_from_list` and
`merge_from_other_cfg` are these checked merges, so that code calling the yacs methods directly
(PySlowFast habits, notebooks) gets the same checks and values as `load_config`.
"""
import difflib
from ast import literal_eval
from typing import Any, Dict, Iterable, List, Tuple

import yaml
from fvcore.common.config import CfgNode as _FvcoreCfgNode

# Keys that accept several types (a tuple value is stored as a list).
POLYMORPHIC_KEYS: Dict[str, Tuple[type, ...]] = {"MODEL.NUM_CLASSES": (int, list, tuple)}

# Keys that accept None ("off" / "not set"), with the type of their other values. A key whose
# default is not None rejects None unless it is listed here; every key whose default is None is
# listed (tests/config checks it) so that its other values are type-checked too.
NULLABLE_KEYS: Dict[str, type] = {
    "SOLVER.CLIP_GRAD_VAL": float,
    "SOLVER.CLIP_GRAD_L2NORM": float,
    "SOLVER.WARMUP_FACTOR": float,
}


class ConfigError(ValueError):
    """A config file or override that does not fit the declared keys."""


def _all_keys(cfg: _FvcoreCfgNode, prefix: str = "") -> List[str]:
    keys = []
    for k, v in cfg.items():
        full = prefix + k
        keys.append(full)
        if isinstance(v, _FvcoreCfgNode):
            keys.extend(_all_keys(v, full + "."))
    return keys


def _decode(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def _coerce(full_key: str, value: Any, default: Any, source: str) -> Any:
    """Return `value` converted to the type of `default` (of NULLABLE_KEYS for those keys), or
    raise ConfigError. A key with default None that is not in NULLABLE_KEYS accepts any value."""
    allowed = POLYMORPHIC_KEYS.get(full_key)
    if allowed is not None:
        if isinstance(value, allowed):
            return list(value) if isinstance(value, tuple) else value
        raise ConfigError(
            f"{source}: {full_key} expects one of {[t.__name__ for t in allowed]}, got "
            f"{type(value).__name__} ({value!r})"
        )
    nullable = full_key in NULLABLE_KEYS
    if value is None and not (nullable or default is None):
        raise ConfigError(
            f"{source}: {full_key} cannot be None: expected {type(default).__name__} (default {default!r}); "
            f"the keys that accept None are {sorted(NULLABLE_KEYS)}"
        )
    if value is None or (default is None and not nullable):
        return value
    expected = NULLABLE_KEYS.get(full_key, type(default))
    if type(value) is expected:
        return value
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if issubclass(expected, (list, tuple)) and isinstance(value, (list, tuple)):
        return expected(value)
    expected_name = f"{expected.__name__} or None" if nullable else expected.__name__
    raise ConfigError(
        f"{source}: type mismatch for {full_key}: expected {expected_name} "
        f"(default {default!r}), got {type(value).__name__} ({value!r})"
    )


def _unknown(full_key: str, cfg_root: _FvcoreCfgNode, source: str) -> ConfigError:
    close = difflib.get_close_matches(full_key, _all_keys(cfg_root), n=3, cutoff=0.5)
    hint = f"; closest valid keys: {', '.join(close)}" if close else ""
    return ConfigError(f"{source}: unknown config key {full_key}{hint}")


def merge_dict(cfg: _FvcoreCfgNode, other: Dict[str, Any], source: str, _root: _FvcoreCfgNode = None,
               _prefix: str = "") -> None:
    """Merge a nested dict (a loaded yaml file) into `cfg` in place, checking keys and types."""
    root = cfg if _root is None else _root
    for key, value in other.items():
        full = _prefix + key
        if key not in cfg:
            raise _unknown(full, root, source)
        default = cfg[key]
        if isinstance(default, _FvcoreCfgNode):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: {full} is a group of keys, got {type(value).__name__} ({value!r})")
            merge_dict(default, value, source, root, full + ".")
            continue
        setattr(cfg, key, _coerce(full, _decode(value), default, source))


def merge_list(cfg: _FvcoreCfgNode, opts: Iterable[str], source: str = "command line") -> None:
    """Merge `[KEY, VALUE, KEY, VALUE, ...]` overrides into `cfg` in place."""
    opts = list(opts)
    if len(opts) % 2:
        raise ConfigError(f"{source}: overrides must be KEY VALUE pairs, got an odd list {opts}")
    for full, raw in zip(opts[0::2], opts[1::2]):
        node = cfg
        parts = full.split(".")
        for part in parts[:-1]:
            if part not in node or not isinstance(node[part], _FvcoreCfgNode):
                raise _unknown(full, cfg, source)
            node = node[part]
        if parts[-1] not in node or isinstance(node[parts[-1]], _FvcoreCfgNode):
            raise _unknown(full, cfg, source)
        setattr(node, parts[-1], _coerce(full, _decode(raw), node[parts[-1]], source))


def merge_file(cfg: _FvcoreCfgNode, path: str, allow_unsafe: bool = False) -> None:
    """Merge a yaml file (with `_BASE_` inheritance) into `cfg` in place."""
    merge_dict(cfg, CfgNode.load_yaml_with_base(path, allow_unsafe=allow_unsafe), path)


class CfgNode(_FvcoreCfgNode):
    """fvcore's CfgNode with checked merges (every group of a config from `get_cfg()` is one)."""

    @classmethod
    def load_yaml_with_base(cls, filename: str, allow_unsafe: bool = False) -> Dict[str, Any]:
        """fvcore's loader (`_BASE_` inheritance) that first checks that `filename`, and each of its
        bases, exists and holds a non-empty yaml mapping; raises ConfigError naming the file."""
        load = yaml.unsafe_load if allow_unsafe else yaml.safe_load
        try:
            with cls._open_cfg(filename) as f:
                loaded = load(f)
        except FileNotFoundError as err:
            raise ConfigError(f"config file not found: {filename}") from err
        except yaml.YAMLError as err:
            raise ConfigError(f"{filename}: not valid yaml: {err}") from err
        if not isinstance(loaded, dict) or not loaded:
            got = "nothing (the file is empty or only comments)" if loaded is None else repr(loaded)[:80]
            raise ConfigError(f"{filename}: expected a mapping of config groups and keys, got {got}")
        return super().load_yaml_with_base(filename, allow_unsafe=allow_unsafe)

    def merge_from_file(self, cfg_filename: str, allow_unsafe: bool = False) -> None:
        """Merge a yaml file (with `_BASE_` inheritance), checking keys and types."""
        merge_file(self, cfg_filename, allow_unsafe)

    def merge_from_list(self, cfg_list: List[str], source: str = "overrides") -> None:
        """Merge `[KEY, VALUE, ...]` overrides, checking keys and types; `source` names them in errors."""
        merge_list(self, cfg_list, source)

    def merge_from_other_cfg(self, cfg_other: _FvcoreCfgNode) -> None:
        """Merge another config (or nested dict), checking keys and types."""
        merge_dict(self, cfg_other, "merge_from_other_cfg")
