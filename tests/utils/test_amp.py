import pytest
import torch

from ego_fsar.config import get_cfg
from ego_fsar.utils.amp import AmpPolicy, amp_policy, autocast, make_grad_scaler

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def _cfg(enabled=True, dtype="auto"):
    cfg = get_cfg()
    cfg.TRAIN.MIXED_PRECISION = enabled
    cfg.MIXED_PRECISION.DTYPE = dtype
    return cfg


def _no_cuda(*args, **kwargs):
    raise AssertionError("the CPU path called a CUDA API")


@pytest.fixture
def cuda_forbidden(monkeypatch):
    for name in ("is_available", "is_bf16_supported", "current_device", "device_count", "get_device_capability"):
        monkeypatch.setattr(torch.cuda, name, _no_cuda)


@pytest.mark.parametrize("device,dtype,bf16,expected", [
    (CUDA, "auto", True, AmpPolicy(True, "cuda", torch.bfloat16, False)),
    (CUDA, "auto", False, AmpPolicy(True, "cuda", torch.float16, True)),
    (CUDA, "fp16", True, AmpPolicy(True, "cuda", torch.float16, True)),
    (CUDA, "bf16", True, AmpPolicy(True, "cuda", torch.bfloat16, False)),
    (CPU, "auto", None, AmpPolicy(True, "cpu", torch.bfloat16, False)),
    (CPU, "bf16", None, AmpPolicy(True, "cpu", torch.bfloat16, False)),
])
def test_decision_table(device, dtype, bf16, expected, cuda_forbidden):
    calls = []

    def bf16_supported():
        calls.append(1)
        return bf16

    assert amp_policy(_cfg(dtype=dtype), device, bf16_supported=bf16_supported) == expected
    if device.type == "cpu":
        assert calls == []


@pytest.mark.parametrize("device", [CPU, CUDA])
@pytest.mark.parametrize("dtype", ["auto", "fp16", "bf16"])
def test_disabled_without_mixed_precision(device, dtype, cuda_forbidden):
    assert amp_policy(_cfg(enabled=False, dtype=dtype), device, bf16_supported=_no_cuda) == AmpPolicy(
        False, device.type, None, False)


def test_cpu_path_never_calls_cuda_by_default(cuda_forbidden):
    assert amp_policy(_cfg(), CPU).dtype == torch.bfloat16
    scaler = make_grad_scaler(amp_policy(_cfg(), CPU))
    assert not scaler.is_enabled()


def test_cuda_bf16_requested_but_unsupported():
    with pytest.raises(ValueError, match="MIXED_PRECISION.DTYPE"):
        amp_policy(_cfg(dtype="bf16"), CUDA, bf16_supported=lambda: False)


def test_fp16_on_cpu_rejected(cuda_forbidden):
    with pytest.raises(ValueError, match="MIXED_PRECISION.DTYPE 'fp16'.*CPU"):
        amp_policy(_cfg(dtype="fp16"), CPU)


def test_bad_dtype_and_device():
    with pytest.raises(ValueError, match="MIXED_PRECISION.DTYPE"):
        amp_policy(_cfg(dtype="fp8"), CPU)
    with pytest.raises(ValueError, match="meta"):
        amp_policy(_cfg(), torch.device("meta"))


def test_cpu_bf16_autocast_runs_matmul_in_bf16(cuda_forbidden):
    a, b = torch.randn(4, 8), torch.randn(8, 3)
    with autocast(amp_policy(_cfg(), CPU)):
        assert (a @ b).dtype == torch.bfloat16
    with autocast(amp_policy(_cfg(enabled=False), CPU)):
        assert (a @ b).dtype == torch.float32


def test_scaler_state_is_checkpointable():
    disabled = make_grad_scaler(AmpPolicy(False, "cpu", None, False))
    assert not disabled.is_enabled()
    disabled.load_state_dict(disabled.state_dict())
    enabled = make_grad_scaler(AmpPolicy(True, "cpu", torch.float16, True))
    assert enabled.is_enabled()
    state = enabled.state_dict()
    assert state["scale"] == 2.0**16
    restored = make_grad_scaler(AmpPolicy(True, "cpu", torch.float16, True))
    restored.load_state_dict({**state, "scale": 8.0})
    assert restored.state_dict()["scale"] == 8.0
