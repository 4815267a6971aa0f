"""Where the tests find their data: the checkout, the small real files committed in tests/fixtures, and
the complete real annotation files of the shared data folder.

The shared folder is `$EGO_FSAR_SHARED_DATA`, by default `../shared/data` beside the checkout. A test
that needs one of its files is marked `@requires_shared(relpath, ...)` (or calls `shared_file`): it is
skipped when the file is absent, and fails instead when `EGO_FSAR_REQUIRE_SHARED=1` (CI), so that a
real-data test cannot be skipped silently where the data should be.
"""
import os

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO_ROOT, "tests", "fixtures")
PYSLOWFAST_CONFIGS = os.path.join(FIXTURES, "pyslowfast-configs")
EPIC_ROWS = os.path.join(FIXTURES, "epic-kitchens-100-annotations")
SHARED_ENV, REQUIRE_ENV = "EGO_FSAR_SHARED_DATA", "EGO_FSAR_REQUIRE_SHARED"
SHARED_DATA = os.path.abspath(os.environ.get(SHARED_ENV) or os.path.join(os.path.dirname(REPO_ROOT), "shared", "data"))
SKIP_REASON = (f"needs the shared real data files: set {SHARED_ENV} to their folder "
               f"(default ../shared/data beside the checkout)")


def shared_path(relpath: str) -> str:
    """`relpath` under the shared data folder, whether it exists or not."""
    return os.path.join(SHARED_DATA, relpath)


def shared_file(relpath: str) -> str:
    """`relpath` under the shared data folder; skips the calling test when it is absent, or fails it
    when EGO_FSAR_REQUIRE_SHARED is set (to anything but "" or "0")."""
    path = shared_path(relpath)
    if not os.path.exists(path):
        if os.environ.get(REQUIRE_ENV, "") not in ("", "0"):
            pytest.fail(f"{path} not found, and {REQUIRE_ENV} is set: {SKIP_REASON}", pytrace=False)
        pytest.skip(SKIP_REASON)
    return path


def requires_shared(*relpaths: str) -> pytest.MarkDecorator:
    """Mark a test that reads these files of the shared data folder (checked by tests/conftest.py
    with `shared_file` before the test runs)."""
    return pytest.mark.shared_data(*relpaths)
