"""Checked merging of yaml files and KEY VALUE overrides into a config.

yacs alone reports an unknown key without saying where it came from; here every error names the
key, the source (file or command line) and the closest valid keys, and a type mismatch names both
types. Keys listed in `POLYMORPHIC_KEYS` accept several types (e.g. `MODEL.NUM_CLASSES` is an int,
or a list for multi-head models).
"""
import difflib
from ast import literal_eval
from typing import Any, Dict, Iterable, List, Tuple

from fvcore.common.config import CfgNode

POLYMORPHIC_KEYS: Dict[str, Tuple[type, ...]] = {"MODEL.NUM_CLASSES": (int, list, tuple)}


class ConfigError(ValueError):
    """A config file or override that does not fit the declared keys."""


def _all_keys(cfg: CfgNode, prefix: str = "") -> List[str]:
    keys = []
    for k, v in cfg.items():
        full = prefix + k
        keys.append(full)
        if isinstance(v, CfgNode):
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
    """Return `value` converted to the type of `default`, or raise ConfigError."""
    allowed = POLYMORPHIC_KEYS.get(full_key)
    if allowed is not None:
        if isinstance(value, allowed):
            return list(value) if isinstance(value, tuple) else value
        raise ConfigError(
            f"{source}: {full_key} expects one of {[t.__name__ for t in allowed]}, got "
            f"{type(value).__name__} ({value!r})"
        )
    if default is None or value is None or type(value) is type(default):
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
        return type(default)(value)
    raise ConfigError(
        f"{source}: type mismatch for {full_key}: expected {type(default).__name__} "
        f"(default {default!r}), got {type(value).__name__} ({value!r})"
    )


def _unknown(full_key: str, cfg_root: CfgNode, source: str) -> ConfigError:
    close = difflib.get_close_matches(full_key, _all_keys(cfg_root), n=3, cutoff=0.5)
    hint = f"; closest valid keys: {', '.join(close)}" if close else ""
    return ConfigError(f"{source}: unknown config key {full_key}{hint}")


def merge_dict(cfg: CfgNode, other: Dict[str, Any], source: str, _root: CfgNode = None, _prefix: str = "") -> None:
    """Merge a nested dict (a loaded yaml file) into `cfg` in place, checking keys and types."""
    root = cfg if _root is None else _root
    for key, value in other.items():
        full = _prefix + key
        if key not in cfg:
            raise _unknown(full, root, source)
        default = cfg[key]
        if isinstance(default, CfgNode):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: {full} is a group of keys, got {type(value).__name__} ({value!r})")
            merge_dict(default, value, source, root, full + ".")
            continue
        cfg[key] = _coerce(full, _decode(value), default, source)


def merge_list(cfg: CfgNode, opts: Iterable[str], source: str = "command line") -> None:
    """Merge `[KEY, VALUE, KEY, VALUE, ...]` overrides into `cfg` in place."""
    opts = list(opts)
    if len(opts) % 2:
        raise ConfigError(f"{source}: overrides must be KEY VALUE pairs, got an odd list {opts}")
    for full, raw in zip(opts[0::2], opts[1::2]):
        node = cfg
        parts = full.split(".")
        for part in parts[:-1]:
            if part not in node or not isinstance(node[part], CfgNode):
                raise _unknown(full, cfg, source)
            node = node[part]
        if parts[-1] not in node or isinstance(node[parts[-1]], CfgNode):
            raise _unknown(full, cfg, source)
        node[parts[-1]] = _coerce(full, _decode(raw), node[parts[-1]], source)


def merge_file(cfg: CfgNode, path: str) -> None:
    """Merge a yaml file (with `_BASE_` inheritance) into `cfg` in place."""
    try:
        loaded = CfgNode.load_yaml_with_base(path, allow_unsafe=False)
    except FileNotFoundError as err:
        raise ConfigError(f"config file not found: {path}") from err
    if loaded is None:
        return
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of config groups, got {type(loaded).__name__}")
    merge_dict(cfg, loaded, path)
