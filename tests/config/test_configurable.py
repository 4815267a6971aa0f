import inspect

import pytest
import torch
from torch import nn

from ego_fsar.config import get_cfg
from ego_fsar.config.configurable import configurable
from ego_fsar.models import build_head
from ego_fsar.models.build import HEAD_REGISTRY
from ego_fsar.models.heads.protonet import ProtoNet
from ego_fsar.models.heads.trx import TRX


class _Scaled(nn.Module):
    @configurable
    def __init__(self, in_dim: int, scale: float = 2.0):
        super().__init__()
        self.in_dim, self.scale = in_dim, scale

    @classmethod
    def from_config(cls, cfg, in_dim: int):
        return {"in_dim": in_dim, "scale": cfg.HEAD.INIT_SCALE}


def test_a_config_goes_through_from_config_and_arguments_straight_to_init():
    cfg = get_cfg()
    cfg.HEAD.INIT_SCALE = 5.0
    from_cfg, positional, explicit = _Scaled(cfg, 7), _Scaled(cfg, in_dim=7), _Scaled(in_dim=7)
    assert (from_cfg.in_dim, from_cfg.scale) == (positional.in_dim, positional.scale) == (7, 5.0)
    assert (explicit.in_dim, explicit.scale) == (7, 2.0)
    with pytest.raises(TypeError):
        _Scaled(in_dim=7, unknown=1)


def test_a_config_without_from_config_or_with_a_bad_one_is_refused():
    class NoFromConfig(nn.Module):
        @configurable
        def __init__(self, width: int = 1):
            super().__init__()

    class BadFromConfig(NoFromConfig):
        @classmethod
        def from_config(cls, cfg):
            return [1]

    with pytest.raises(TypeError, match="NoFromConfig was given a config but has no from_config"):
        NoFromConfig(get_cfg())
    with pytest.raises(TypeError, match="BadFromConfig.from_config must return a dict"):
        BadFromConfig(get_cfg())
    assert isinstance(NoFromConfig(width=3), NoFromConfig)


@pytest.mark.parametrize("name", sorted(name for name, _ in HEAD_REGISTRY))
def test_every_head_is_configurable_with_the_config_defaults(name):
    """`Head(in_dim=..)` equals `Head(get_cfg(), in_dim)`: each argument's default is the default config's value."""
    cls = HEAD_REGISTRY.get(name)
    init = cls.__init__
    assert hasattr(init, "__wrapped__") and hasattr(cls, "from_config"), f"{name}.__init__ is not @configurable"
    explicit = cls.from_config(get_cfg(), 16)
    params = inspect.signature(init.__wrapped__).parameters
    assert set(explicit) == set(params) - {"self"}, f"{name}.from_config does not give exactly __init__'s arguments"
    for arg, value in explicit.items():
        default = params[arg].default
        if default is not inspect.Parameter.empty:
            same = list(default) == list(value) if isinstance(default, (list, tuple)) else default == value
            assert same, f"{name}({arg}=...) defaults to {default!r}, the default config gives {value!r}"


def test_a_head_built_without_a_config_matches_the_one_built_from_it():
    cfg = get_cfg()
    cfg.HEAD.NAME, cfg.HEAD.TRX_CARDINALITIES, cfg.HEAD.TRX_DIM = "TRX", [2], 12
    torch.manual_seed(0)
    from_cfg = build_head(cfg, in_dim=8)
    torch.manual_seed(0)
    explicit = TRX(in_dim=8, cardinalities=(2,), dim=12)
    assert from_cfg.state_dict().keys() == explicit.state_dict().keys()
    for key, value in from_cfg.state_dict().items():
        torch.testing.assert_close(explicit.state_dict()[key], value, rtol=0, atol=0)
    euclidean = ProtoNet(in_dim=8, metric="euclidean")
    assert euclidean.logit_scale is None and not list(euclidean.parameters())
    with pytest.raises(ValueError, match="HEAD.METRIC"):
        ProtoNet(in_dim=8, metric="dot")
