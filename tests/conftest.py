"""Fixtures shared by every test folder: a tiny EgoToy written once per session, a config that
reads it, and one torch thread per test (tiny tensors; extra threads only contend for the cores).
Tests marked `shared_data` (tests.paths.requires_shared) are skipped, or failed under
EGO_FSAR_REQUIRE_SHARED, when a file of the shared data folder they read is absent."""
import pytest
import torch
from fvcore.common.config import CfgNode

from ego_fsar.datasets.egotoy_writer import make_egotoy
from tests.egotoy import TINY, egotoy_cfg
from tests.paths import shared_file

pytest_plugins = ("pytester",)  # tests/test_paths.py runs pytest on a test file


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


def pytest_configure(config):
    config.addinivalue_line("markers", "shared_data(*relpaths): reads these files of the shared data folder "
                                       "(EGO_FSAR_SHARED_DATA); see tests/paths.py")


def pytest_runtest_setup(item):
    for mark in item.iter_markers("shared_data"):
        for relpath in mark.args:
            shared_file(relpath)
