"""What the app remembers between sessions: the last run, its checkpoint and the sampling settings.

Stored as config.toml in the config path (MINIGPT_TUI_HOME moves it), written with
tomli-w through an atomic rename. A missing file gives the defaults; a broken one
gives the defaults and one sentence for a notification. Torch-free, like the rest of
the app's start-up path.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import tomli_w

from minigpt_tui.core import paths


@dataclass
class SamplingPrefs:
    """The sampling settings the Generate tab edits (mirrors core.sampling.SamplingSettings)."""

    temperature: float = 0.8
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    seed: int = 1337
    max_new_tokens: int = 500

    def clamp(self) -> "SamplingPrefs":
        """Pull values a hand-edited file may hold back into their valid ranges."""
        self.temperature = min(max(self.temperature, 0.0), 5.0)
        self.top_k = max(self.top_k, 0)
        self.top_p = min(max(self.top_p, 0.05), 1.0)
        self.min_p = min(max(self.min_p, 0.0), 0.99)
        self.repetition_penalty = min(max(self.repetition_penalty, 0.1), 10.0)
        self.max_new_tokens = min(max(self.max_new_tokens, 1), 100_000)
        return self


@dataclass
class AppSettings:
    last_run: str = ""  # a run name under the runs folder
    checkpoint: str = "best"  # "best" | "last"
    confidence: bool = False  # colour generated tokens by probability
    recipe: str = ""  # the recipe last used on the Train tab
    sampling: SamplingPrefs = field(default_factory=SamplingPrefs)
    keymap: dict[str, str] = field(default_factory=dict)  # binding id -> key(s), e.g. "generate.temp_up" = "plus"

    def to_dict(self) -> dict[str, Any]:
        raw = asdict(self)
        if not raw["keymap"]:
            del raw["keymap"]
        return raw


def _typed(value: Any, default: Any) -> Any:
    """`value` when it has the default's type (ints are fine for floats), else the default."""
    if isinstance(default, bool):
        return value if isinstance(value, bool) else default
    if isinstance(default, int):
        return value if isinstance(value, int) and not isinstance(value, bool) else default
    if isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return float(value) if ok else default
    if isinstance(default, str):
        return value if isinstance(value, str) else default
    return default


def from_dict(raw: dict[str, Any]) -> AppSettings:
    settings = AppSettings()
    for f in fields(AppSettings):
        if f.name in ("sampling", "keymap") or f.name not in raw:
            continue
        setattr(settings, f.name, _typed(raw[f.name], getattr(settings, f.name)))
    if settings.checkpoint not in ("best", "last"):
        settings.checkpoint = "best"
    sampling = raw.get("sampling")
    if isinstance(sampling, dict):
        for f in fields(SamplingPrefs):
            if f.name in sampling:
                setattr(settings.sampling, f.name, _typed(sampling[f.name], getattr(settings.sampling, f.name)))
    settings.sampling.clamp()
    keymap = raw.get("keymap")
    if isinstance(keymap, dict):
        settings.keymap = {str(k): v for k, v in keymap.items() if isinstance(v, str) and v}
    return settings


def load_settings(path: Path | None = None) -> tuple[AppSettings, str | None]:
    """The saved settings and, when the file was unusable, one sentence saying so."""
    path = Path(path) if path is not None else paths.settings_file()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return AppSettings(), None
    except (OSError, UnicodeDecodeError) as err:
        return AppSettings(), f"Settings file {path} cannot be read ({err}); using the defaults."
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return AppSettings(), f"Settings file {path} is not valid TOML; using the defaults (it is rewritten on exit)."
    return from_dict(raw), None


def save_settings(settings: AppSettings, path: Path | None = None) -> str | None:
    """Write the settings atomically; returns one sentence on failure, None on success."""
    from minigpt_tui.core.checkpoint import atomic_write_text

    path = Path(path) if path is not None else paths.settings_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, tomli_w.dumps(settings.to_dict()))
    except OSError as err:
        return f"Could not save settings to {path} ({err.strerror or err})."
    return None
