"""`@configurable`: a module built from explicit arguments or from a config, with one constructor.

Decorate `__init__` (which takes plain arguments: widths, rates, names) and give the class a classmethod
`from_config(cls, cfg, *args, **kwargs) -> dict` that reads those arguments off a config. Then both work:

    head = ProtoNet(cfg, in_dim=512)                 # the registries' call: from_config, then __init__
    head = ProtoNet(in_dim=512, metric="euclidean")  # no config at all

A call whose first argument is a CfgNode goes through `from_config`; any other call is `__init__`'s own.
"""
import functools
from typing import Callable

from fvcore.common.config import CfgNode


def configurable(init: Callable) -> Callable:
    """Make `init` (an `__init__`) also accept `(cfg, *args, **kwargs)`, turned into its arguments by the
    class's `from_config`. Raises TypeError naming the class when `from_config` is missing or does not
    return a dict."""

    @functools.wraps(init)
    def wrapped(self, *args, **kwargs) -> None:
        if not args or not isinstance(args[0], CfgNode):
            init(self, *args, **kwargs)
            return
        from_config = getattr(type(self), "from_config", None)
        if from_config is None:
            raise TypeError(f"{type(self).__name__} was given a config but has no from_config classmethod")
        explicit = from_config(*args, **kwargs)
        if not isinstance(explicit, dict):
            raise TypeError(f"{type(self).__name__}.from_config must return a dict of __init__ arguments, "
                            f"got {type(explicit).__name__}")
        init(self, **explicit)

    return wrapped
