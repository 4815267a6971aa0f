from tests.datasets.conftest import cfg, egotoy_root, one_thread  # noqa: F401
