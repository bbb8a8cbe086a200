"""Packaging beyond pyproject.toml: the shipped models in weights/ are installed as sampleforge/weights/,
so an installed sampleforge finds ``drums-v1`` without a source checkout (see ``bundle.weights_dirs``)."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["sampleforge", "sampleforge.*"]), "sampleforge.weights"],
    package_dir={"sampleforge.weights": "weights"},
)
