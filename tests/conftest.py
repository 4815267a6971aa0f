"""Fixtures shared by every test folder: a tiny EgoToy written once per session, a config that
reads it, and one torch thread per test (tiny tensors; extra threads only contend for the cores)."""
import pytest
import torch
from fvcore.common.config import CfgNode

from ego_fsar.datasets.egotoy import make_egotoy
from tests.egotoy import TINY, egotoy_cfg


@pytest.fixture(scope="session")
def egotoy_root(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("egotoy") / "egotoy")
    make_egotoy(root, seed=0, **TINY)
    return root


@pytest.fixture
def cfg(egotoy_root) -> CfgNode:
    return egotoy_cfg(egotoy_root)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
