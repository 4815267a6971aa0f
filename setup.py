"""Install ego_fsar: `pip install -e .` (add `[test]` for the test dependencies)."""
from pathlib import Path

from setuptools import find_packages, setup


def _requirements(name: str) -> list:
    lines = Path(__file__).with_name(name).read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith(("#", "-r"))]


setup(
    name="ego_fsar",
    version="0.1.0",
    description="Egocentric and cross-domain few-shot action recognition in PyTorch",
    packages=find_packages(exclude=("tests", "tools", "configs")),
    python_requires=">=3.10",
    install_requires=_requirements("requirements.txt"),
    extras_require={"test": _requirements("requirements-test.txt")},
)
