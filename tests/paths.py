"""Locations of the shared real data files (`../shared/data` beside the checkout)."""
import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.environ.get("EGO_FSAR_SHARED_DATA", os.path.join(os.path.dirname(REPO_ROOT), "shared", "data"))
