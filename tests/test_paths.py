"""tests/paths.py: a test that reads a file of the shared data folder is skipped without it, with one
reason naming EGO_FSAR_SHARED_DATA, and fails instead under EGO_FSAR_REQUIRE_SHARED (as in CI)."""
import pytest

from tests import paths

TESTS = '''
from tests.paths import requires_shared, shared_file


@requires_shared("present.txt")
def test_marked_present():
    pass


@requires_shared("present.txt", "absent.txt")
def test_marked_absent():
    pass


def test_called_absent():
    shared_file("absent.txt")
'''


@pytest.fixture
def shared(tmp_path, monkeypatch):
    """A shared data folder holding only present.txt; EGO_FSAR_REQUIRE_SHARED unset."""
    root = tmp_path / "shared"
    root.mkdir()
    (root / "present.txt").write_text("x")
    monkeypatch.setattr(paths, "SHARED_DATA", str(root))
    monkeypatch.delenv(paths.REQUIRE_ENV, raising=False)
    return root


def test_present_file_is_returned(shared):
    assert paths.shared_file("present.txt") == str(shared / "present.txt")


@pytest.mark.parametrize("value", [None, "", "0"])
def test_absent_file_skips_naming_the_variable(shared, monkeypatch, value):
    if value is not None:
        monkeypatch.setenv(paths.REQUIRE_ENV, value)
    with pytest.raises(pytest.skip.Exception, match="set EGO_FSAR_SHARED_DATA to their folder"):
        paths.shared_file("absent.txt")


def test_absent_file_fails_when_required(shared, monkeypatch):
    monkeypatch.setenv(paths.REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="absent.txt not found, and EGO_FSAR_REQUIRE_SHARED is set"):
        paths.shared_file("absent.txt")


def test_marked_and_calling_tests_skip_with_one_reason_or_fail(shared, pytester, monkeypatch):
    pytester.makeconftest("from tests.conftest import pytest_configure, pytest_runtest_setup\n")
    pytester.makepyfile(TESTS)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=2)
    reports = result.reprec.getreports("pytest_runtest_logreport")
    assert {r.longrepr[2] for r in reports if r.skipped} == {f"Skipped: {paths.SKIP_REASON}"}
    monkeypatch.setenv(paths.REQUIRE_ENV, "1")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1, errors=1)  # the marked test errs in setup
    failed = [str(r.longrepr) for r in result.reprec.getreports("pytest_runtest_logreport") if r.failed]
    assert len(failed) == 2 and all("absent.txt not found, and EGO_FSAR_REQUIRE_SHARED is set" in f for f in failed)
