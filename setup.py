"""Packages are found, not listed: every package under cobench/ ships, plus the data folders at the
repository root (devices/, kernels/, presets/, spaces/), which users edit in a checkout and which an
installed wheel carries as package data under `cobench._catalogue` (see cobench/catalogue.py)."""

from setuptools import find_packages, setup

CATALOGUE = ("devices", "kernels", "presets", "spaces")

setup(
    packages=find_packages(include=["cobench", "cobench.*"]) + [f"cobench._catalogue.{k}" for k in CATALOGUE],
    package_dir={f"cobench._catalogue.{k}": k for k in CATALOGUE},
)
