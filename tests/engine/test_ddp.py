"""DDP wrapping (`wrap_ddp`): DDP searches for unused parameters only in models that declare some
(`FIND_UNUSED_PARAMETERS`), and the declarations match what a training step uses. SyncBN: GPU training
converts BatchNorm with torch's `convert_sync_batchnorm`, the CPU never does."""
import pytest
import torch
import torch.distributed as dist
from torch import nn

from ego_fsar.benchmark.train import SYNTHETIC_BATCHES
from ego_fsar.engine import trainer
from ego_fsar.engine.protocols import get_protocol
from ego_fsar.models import build_model
from ego_fsar.models.backbones import norm_helper
from ego_fsar.models.losses import build_loss
from ego_fsar.utils.env import seed_everything
from tests.engine.test_fewshot import fewshot_cfg, vit_fewshot_cfg
from tests.engine.test_train import tiny_train_cfg


class _Declares(nn.Linear):
    FIND_UNUSED_PARAMETERS = True


@pytest.fixture
def one_process_group():
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.mark.parametrize("model, expected", [(nn.Linear(2, 2), False), (_Declares(2, 2), True)])
def test_wrap_ddp_searches_unused_parameters_only_when_declared(cfg, one_process_group, model, expected):
    assert trainer.wrap_ddp(model, cfg, torch.device("cpu")).find_unused_parameters is expected


def _unused_after_one_step(cfg):
    """Names of the trainable parameters that one training step on a random batch leaves without gradient."""
    seed_everything(0)
    model = build_model(cfg).train()
    batch, _ = SYNTHETIC_BATCHES[cfg.TRAIN.PROTOCOL](cfg, 2)
    outputs, labels, _ = get_protocol(cfg).forward(model, batch, torch.device("cpu"), cfg)
    build_loss(cfg)(outputs, labels)[0].backward()
    return model.FIND_UNUSED_PARAMETERS, [k for k, p in model.named_parameters() if p.requires_grad and p.grad is None]


def _detached_fc(cfg, out_dir):
    cfg = tiny_train_cfg(cfg, out_dir)
    cfg.MODEL.DETACH_FINAL_FC = True
    return cfg


def _episodic(make, head):
    def build(cfg, out_dir):
        cfg = make(cfg, out_dir, head)
        cfg.TRAIN.PROTOCOL = "episodic"
        return cfg
    return build


@pytest.mark.parametrize("make", [tiny_train_cfg, _detached_fc, _episodic(fewshot_cfg, "TRX"),
                                  _episodic(vit_fewshot_cfg, "EMPNet")],
                         ids=["classifier", "detached_final_fc", "fewshot_trx", "fewshot_empnet_on_vit"])
def test_models_declare_exactly_when_a_step_leaves_parameters_unused(cfg, tmp_path, make):
    declared, unused = _unused_after_one_step(make(cfg, tmp_path))
    assert declared == bool(unused), unused


def _sync_bn_cfg(cfg, out_dir, num_gpus, *opts):
    cfg = tiny_train_cfg(cfg, out_dir, arch="slowfast")
    cfg.merge_from_list(["BN.NORM_TYPE", "sync_batchnorm", *opts])
    cfg.NUM_GPUS = num_gpus
    return cfg


def _fake_world(monkeypatch, size):
    """torch.distributed as a process of a `size`-process job; new_subgroups returns a marker group."""
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: size)
    monkeypatch.setattr(dist, "new_subgroups", lambda group_size: (f"group of {group_size}", []))


def _norm_types(model):
    return {type(m) for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}


def test_cpu_training_never_converts_to_sync_batchnorm(cfg, tmp_path, monkeypatch):
    cfg = _sync_bn_cfg(cfg, tmp_path, 0, "BN.GLOBAL_SYNC", True)
    model = build_model(cfg)
    _fake_world(monkeypatch, 4)
    assert norm_helper.convert_sync_batchnorm(model, cfg) is model
    assert _norm_types(model) == {nn.BatchNorm3d}


@pytest.mark.parametrize("opts, group", [(("BN.NUM_SYNC_DEVICES", 2), "group of 2"), (("BN.GLOBAL_SYNC", True), None)])
def test_gpu_training_converts_with_torch_sync_batchnorm(cfg, tmp_path, monkeypatch, opts, group):
    """NUM_GPUS 1 in a 4-process job (torch.distributed mocked; torch's conversion itself runs, and it needs
    no GPU): every BatchNorm becomes a SyncBatchNorm of the BN.NUM_SYNC_DEVICES group, or of all ranks."""
    model = build_model(_sync_bn_cfg(cfg.clone(), tmp_path, 0))
    cfg = _sync_bn_cfg(cfg, tmp_path, 1, *opts)
    stem_bn = model.backbone.s1.pathway0_stem.bn
    _fake_world(monkeypatch, 4)
    converted = norm_helper.convert_sync_batchnorm(model, cfg)
    syncs = [m for m in converted.modules() if isinstance(m, nn.SyncBatchNorm)]
    assert _norm_types(converted) == {nn.SyncBatchNorm}
    assert all(m.process_group == group for m in syncs)
    assert converted.backbone.s1.pathway0_stem.bn.weight is stem_bn.weight
