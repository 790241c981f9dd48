"""Where minigpt-tui keeps its files.

Runs live under the data home; settings in config.toml under the config home; the token
cache under the cache home. MINIGPT_TUI_HOME moves all three into one folder (tests point it at a temporary one).
"""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "minigpt-tui"
HOME_ENV = "MINIGPT_TUI_HOME"


def data_home() -> Path:
    override = os.environ.get(HOME_ENV)
    if override:
        return Path(override).expanduser()
    from platformdirs import user_data_path

    return user_data_path(APP_NAME)


def runs_dir() -> Path:
    return data_home() / "runs"


def exports_dir() -> Path:
    """Where the app's Export dialog suggests writing exported models: a folder in the user's home
    (~/minigpt-tui-exports) they will find, not the hidden data home; under MINIGPT_TUI_HOME its exports/ folder."""
    override = os.environ.get(HOME_ENV)
    if override:
        return Path(override).expanduser() / "exports"
    return Path.home() / f"{APP_NAME}-exports"


def cache_dir() -> Path:
    """Files minigpt-tui can rebuild at any time (the token cache): safe to delete.
    Under MINIGPT_TUI_HOME it is its cache/ folder, else the platform's user cache folder."""
    override = os.environ.get(HOME_ENV)
    if override:
        return Path(override).expanduser() / "cache"
    from platformdirs import user_cache_path

    return user_cache_path(APP_NAME)


def debug_log_file() -> Path:
    """Where the app logs what it could not show as a sentence (tracebacks, for bug reports)."""
    return data_home() / "debug.log"


def settings_file() -> Path:
    """The app's remembered settings (last run, sampling settings)."""
    override = os.environ.get(HOME_ENV)
    if override:
        return Path(override).expanduser() / "config.toml"
    from platformdirs import user_config_path

    return user_config_path(APP_NAME) / "config.toml"


def recipes_dir() -> Path:
    """The folder of model recipes (TOML), in a source checkout or an installed package."""
    checkout = Path(__file__).resolve().parents[2] / "models"
    if checkout.is_dir() and any(checkout.glob("*.toml")):
        return checkout
    # Installed: models/ became the data-only (namespace) package minigpt_tui.recipes.
    import importlib.util

    spec = importlib.util.find_spec("minigpt_tui.recipes")
    locations = list(spec.submodule_search_locations or []) if spec else []
    return Path(locations[0]) if locations else checkout


def list_recipes() -> list[Path]:
    return sorted(recipes_dir().glob("*.toml"))


DEFAULT_RECIPE = "kjv-char-transformer"


def find_recipe(name_or_path: str) -> Path:
    """A recipe by path, or by name (with or without .toml) from the recipes folder."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    stem = path.name[:-5] if path.name.endswith(".toml") else path.name
    candidate = recipes_dir() / f"{stem}.toml"
    if candidate.is_file():
        return candidate
    return path  # does not exist; the caller reports it
