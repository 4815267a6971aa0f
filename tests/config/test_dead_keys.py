"""Every config key is read by code under ego_fsar/ or tools/ (issue 8, item 9).

A key `GROUP.KEY` counts as read when, in some module, one of these appears (assignments to it do
not count; `x.KEY += ...` does):
- an attribute/subscript chain holding `GROUP` then `KEY`: `cfg.GROUP.KEY`, `cfg["GROUP"].KEY`;
- `alias.KEY` or `getattr(alias, "KEY")` where the module binds `alias = <...>.GROUP` (or a
  conditional expression of such groups: `group = cfg.TRAIN if train else cfg.TEST`);
- the string "GROUP.KEY" as an argument of a call: `_per_pathway(cfg, "RESNET.SPATIAL_STRIDES", ...)`.
A top-level key `KEY` counts when some chain reads `.KEY`. A key read only under another group
(`TEST.BASE_LR` when only `SOLVER.BASE_LR` is read) is not read.
"""
import ast
import glob
import os
from typing import Dict, Iterable, List, Set

from fvcore.common.config import CfgNode

from ego_fsar.config import get_cfg
from tests.paths import REPO_ROOT

SOURCES = sorted(glob.glob(os.path.join(REPO_ROOT, "ego_fsar", "**", "*.py"), recursive=True)
                 + glob.glob(os.path.join(REPO_ROOT, "tools", "**", "*.py"), recursive=True))


def _chain(node: ast.AST) -> List[str]:
    """Names along an attribute/subscript chain, base first: `cfg.A["B"].C` -> ["cfg", "A", "B", "C"];
    a dynamic subscript or a base that is not a name gives ""."""
    names = []
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        if isinstance(node, ast.Attribute):
            names.append(node.attr)
        else:
            key = node.slice
            names.append(key.value if isinstance(key, ast.Constant) and isinstance(key.value, str) else "")
        node = node.value
    names.append(node.id if isinstance(node, ast.Name) else "")
    return names[::-1]


def _groups_of(value: ast.AST) -> Set[str]:
    """Last names of the chains an assigned value can be (both branches of `a if c else b`)."""
    if isinstance(value, ast.IfExp):
        return _groups_of(value.body) | _groups_of(value.orelse)
    if isinstance(value, (ast.Attribute, ast.Subscript)):
        return {_chain(value)[-1]} - {""}
    return set()


def _aliases(tree: ast.AST) -> Dict[str, Set[str]]:
    """Variable -> the groups it is bound to (`vit = cfg.VIT`) anywhere in the module."""
    aliases: Dict[str, Set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                pairs = ([(target, node.value)] if not isinstance(target, ast.Tuple) else
                         zip(target.elts, node.value.elts) if isinstance(node.value, ast.Tuple) else [])
                for name, value in pairs:
                    if isinstance(name, ast.Name):
                        aliases.setdefault(name.id, set()).update(_groups_of(value))
    return aliases


def _read_chains(tree: ast.AST) -> Iterable[List[str]]:
    """Every chain the module reads, aliases expanded to their groups, `getattr(x, "K")` as x.K."""
    aliases = _aliases(tree)
    aug_targets = {id(n.target) for n in ast.walk(tree) if isinstance(n, ast.AugAssign)}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Attribute, ast.Subscript)):
            if isinstance(node.ctx, ast.Load) or id(node) in aug_targets:
                chain = _chain(node)
            else:
                continue
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
              and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
              and isinstance(node.args[1].value, str)):
            chain = _chain(node.args[0]) + [node.args[1].value]
        else:
            continue
        yield chain
        for group in aliases.get(chain[0], ()):
            yield [group] + chain[1:]


def _call_strings(tree: ast.AST) -> Iterable[str]:
    """String constants passed directly as call arguments."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for arg in list(node.args) + [k.value for k in node.keywords]:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    yield arg.value


def read_names(paths: Iterable[str]) -> Set[str]:
    """Dotted names `A.B` and single names `B` that the modules at `paths` read."""
    names: Set[str] = set()
    for path in paths:
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        for chain in _read_chains(tree):
            names.update(chain[1:])
            names.update(f"{a}.{b}" for a, b in zip(chain, chain[1:]))
        names.update(_call_strings(tree))
    return names


def all_keys(cfg: CfgNode, prefix: str = "") -> List[str]:
    keys = []
    for key, value in cfg.items():
        keys.extend(all_keys(value, f"{prefix}{key}.") if isinstance(value, CfgNode) else [prefix + key])
    return keys


def unread_keys(cfg: CfgNode, paths: Iterable[str]) -> List[str]:
    read = read_names(paths)
    return [key for key in all_keys(cfg) if key not in read]


def test_every_config_key_is_read():
    unread = unread_keys(get_cfg(), SOURCES)
    assert not unread, f"config keys that no code under ego_fsar/ or tools/ reads: {unread}"


def test_an_unread_key_is_reported(tmp_path):
    cfg = get_cfg()
    cfg.SOLVER.NEVER_READ_KEY = 1  # fabricated: no code reads it
    cfg.TEST.BASE_LR = 0.1  # its name is read, but only as SOLVER.BASE_LR
    cfg.NEVER_READ_TOP_KEY = 1
    source = tmp_path / "reader.py"
    source.write_text(
        "def f(cfg, train):\n"
        "    group = cfg.TRAIN if train else cfg.TEST\n"
        "    solver = cfg['SOLVER']\n"
        "    return (cfg.SOLVER.BASE_LR, group.BATCH_SIZE, solver.MOMENTUM, getattr(cfg.BN, 'NUM_SPLITS'),\n"
        "            helper(cfg, 'DATA.NUM_FRAMES'), cfg.NUM_GPUS)\n"
        "def g(cfg):\n"
        "    cfg.SOLVER.NEVER_READ_KEY = 2\n"
        "    raise ValueError('SOLVER.NEVER_READ_KEY is not read, only named: ' + 'TEST.BASE_LR')\n"
    )
    unread = set(unread_keys(cfg, [str(source)]))
    assert {"SOLVER.NEVER_READ_KEY", "TEST.BASE_LR", "NEVER_READ_TOP_KEY"} <= unread
    assert not {"SOLVER.BASE_LR", "TRAIN.BATCH_SIZE", "TEST.BATCH_SIZE", "SOLVER.MOMENTUM", "BN.NUM_SPLITS",
                "DATA.NUM_FRAMES", "NUM_GPUS"} & unread
