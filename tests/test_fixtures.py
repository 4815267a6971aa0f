"""The real files committed in tests/fixtures are copies of the shared data folder's files (the EPIC
validation file: its header and first 300 rows), so that tests on the fixtures test the real files."""
import filecmp
import glob
import os

import pytest

from tests.paths import EPIC_ROWS, FIXTURES, requires_shared, shared_path

EPIC_VAL = "epic-kitchens-100-annotations/EPIC_100_validation.csv"
COPIES = sorted(os.path.relpath(p, FIXTURES) for p in glob.glob(os.path.join(FIXTURES, "*", "**", "*"), recursive=True)
                if os.path.isfile(p) and os.path.relpath(p, FIXTURES) != EPIC_VAL)


def test_copies_with_their_licences():
    assert len([p for p in COPIES if p.endswith(".yaml")]) == 7 and "pyslowfast-configs/LICENSE" in COPIES
    assert {"epic-kitchens-100-annotations/license.txt", "epic-kitchens-100-annotations/EPIC_100_verb_classes.csv",
            "epic-kitchens-100-annotations/EPIC_100_noun_classes.csv"} <= set(COPIES)


@pytest.mark.parametrize("relpath", [pytest.param(p, marks=requires_shared(p)) for p in COPIES])
def test_fixture_is_the_shared_file(relpath):
    assert filecmp.cmp(os.path.join(FIXTURES, relpath), shared_path(relpath), shallow=False)


@requires_shared(EPIC_VAL)
def test_epic_rows_are_the_first_rows_of_the_shared_file():
    with open(os.path.join(EPIC_ROWS, "EPIC_100_validation.csv")) as f, open(shared_path(EPIC_VAL)) as g:
        rows, real = f.read().splitlines(), g.read().splitlines()
    assert len(rows) == 301 and rows == real[:301]
