"""A plain (non-editable) install has every module of the source tree (packages are found, not
listed) and the recipes in models/, shipped inside the package."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_non_editable_install_lists_the_recipes(tmp_path):
    pytest.importorskip("setuptools")
    target = tmp_path / "site"
    build = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                            "--target", str(target), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    code = ("from minigpt_tui.core import paths; print(paths.recipes_dir());"
            "print(' '.join(p.stem for p in paths.list_recipes()))")
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    where, names = out.stdout.splitlines()
    assert Path(where).is_relative_to(target)
    assert {"kjv-char-transformer", "kjv-char-gru", "wikitext2-word-lstm", "shakespeare-char-transformer"} <= set(names.split())
    source = {p.relative_to(ROOT).as_posix() for p in (ROOT / "minigpt_tui").rglob("*") if p.suffix in (".py", ".tcss")}
    installed = {p.relative_to(target).as_posix() for p in (target / "minigpt_tui").rglob("*") if p.suffix in (".py", ".tcss")}
    assert source <= installed, sorted(source - installed)
    started = subprocess.run([sys.executable, "-m", "minigpt_tui", "--list"], capture_output=True, text=True,
                             env={**env, "MINIGPT_TUI_HOME": str(tmp_path / "home")}, cwd=tmp_path)
    assert started.returncode == 0 and "No runs" in started.stdout + started.stderr, started.stderr
