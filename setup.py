"""Package discovery, the one thing pyproject.toml cannot say: every package under minigpt_tui/
is found (a new subpackage needs no entry anywhere), plus the recipes, which live at the top
level in models/ (easy to find and copy) and install as the data-only package
minigpt_tui.recipes (pyproject.toml maps the folder), so a plain `pip install .` has them too."""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["minigpt_tui", "minigpt_tui.*"]), "minigpt_tui.recipes"])
