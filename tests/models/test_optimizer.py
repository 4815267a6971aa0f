import pytest
import torch
from torch import nn

from ego_fsar.config import get_cfg
from ego_fsar.models.optimizer import clip_gradients, construct_optimizer, param_groups, set_lr


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 4, 1, bias=False)
        self.bn = nn.BatchNorm3d(4)
        self.ln = nn.LayerNorm(4)
        self.gn = nn.GroupNorm(2, 4)
        self.fc = nn.Linear(4, 2)
        self.scale = nn.Parameter(torch.tensor(1.0))
        self.pos_embed = nn.Parameter(torch.zeros(1, 3, 4))
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)

    def no_weight_decay(self):
        return {"pos_embed"}


def _cfg(**solver):
    cfg = get_cfg()
    cfg.SOLVER.WEIGHT_DECAY = 1e-4
    cfg.BN.WEIGHT_DECAY = 0.5
    for key, value in solver.items():
        cfg.SOLVER[key] = value
    return cfg


def _decay_of(optimizer):
    return {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}


def test_weight_decay_groups():
    net = _Net()
    decay = _decay_of(construct_optimizer(net, _cfg()))
    for norm in (net.bn, net.ln, net.gn):
        assert decay[id(norm.weight)] == decay[id(norm.bias)] == 0.5
    assert decay[id(net.conv.weight)] == decay[id(net.fc.weight)] == 1e-4
    assert decay[id(net.fc.bias)] == decay[id(net.scale)] == decay[id(net.pos_embed)] == 0.0


def test_1d_params_keep_weight_decay_when_zero_wd_1d_is_off():
    net = _Net()
    decay = _decay_of(construct_optimizer(net, _cfg(ZERO_WD_1D_PARAM=False)))
    assert decay[id(net.fc.bias)] == decay[id(net.scale)] == 1e-4
    assert decay[id(net.pos_embed)] == 0.0
    assert decay[id(net.bn.weight)] == 0.5


def test_every_trainable_parameter_once_and_frozen_skipped():
    net = _Net()
    net.tied = nn.Linear(4, 2)
    net.tied.weight = net.fc.weight
    params = [p for g in param_groups(net, _cfg()) for p in g["params"]]
    assert len(params) == len({id(p) for p in params})
    assert {id(p) for p in params} == {id(p) for p in net.parameters() if p.requires_grad}
    assert id(net.frozen.weight) not in {id(p) for p in params}


@pytest.mark.parametrize("method,cls", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam),
                                        ("adamw", torch.optim.AdamW)])
def test_optimizer_hyperparameters(method, cls):
    cfg = _cfg(OPTIMIZING_METHOD=method, BASE_LR=0.3, MOMENTUM=0.8, DAMPENING=0.0, NESTEROV=True,
               BETAS=(0.5, 0.6))
    opt = construct_optimizer(_Net(), cfg)
    assert isinstance(opt, cls)
    group = opt.param_groups[0]
    assert group["lr"] == 0.3
    if method == "sgd":
        assert (group["momentum"], group["nesterov"]) == (0.8, True)
    else:
        assert group["betas"] == (0.5, 0.6)


def test_unknown_optimizer():
    with pytest.raises(KeyError, match=r"SOLVER.OPTIMIZING_METHOD 'lamb'.*adam.*adamw.*sgd"):
        construct_optimizer(_Net(), _cfg(OPTIMIZING_METHOD="lamb"))


def test_set_lr():
    opt = construct_optimizer(_Net(), _cfg())
    set_lr(opt, 0.123)
    assert [g["lr"] for g in opt.param_groups] == [0.123] * len(opt.param_groups)


def _with_grads(*grads):
    params = [nn.Parameter(torch.zeros(len(g))) for g in grads]
    for p, g in zip(params, grads):
        p.grad = torch.tensor(g)
    return params


def test_clip_by_l2_norm_returns_norm_before_clipping():
    params = _with_grads([3.0, 0.0], [4.0])
    norm = clip_gradients(params, _cfg(CLIP_GRAD_L2NORM=1.0))
    assert float(norm) == pytest.approx(5.0)
    assert torch.allclose(torch.cat([p.grad for p in params]), torch.tensor([0.6, 0.0, 0.8]), atol=1e-5)


def test_clip_by_value():
    params = _with_grads([3.0, -0.5], [-4.0])
    norm = clip_gradients(params, _cfg(CLIP_GRAD_VAL=1.0))
    assert float(norm) == pytest.approx((9 + 0.25 + 16) ** 0.5)
    assert torch.equal(torch.cat([p.grad for p in params]), torch.tensor([1.0, -0.5, -1.0]))


def test_no_clipping_returns_none_and_keeps_grads():
    params = _with_grads([3.0, 4.0])
    assert clip_gradients(params, _cfg()) is None
    assert torch.equal(params[0].grad, torch.tensor([3.0, 4.0]))


def test_both_clip_keys_rejected():
    with pytest.raises(ValueError, match="CLIP_GRAD_VAL.*CLIP_GRAD_L2NORM"):
        clip_gradients(_with_grads([1.0]), _cfg(CLIP_GRAD_VAL=1.0, CLIP_GRAD_L2NORM=1.0))
