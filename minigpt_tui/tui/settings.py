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
from minigpt_tui.core.generation.sampling_settings import SamplingSettings

# The sampling settings the file keeps under [sampling]: those the Generate tab edits.
# The others (stop strings, the repetition window) are command-line options; the app
# always uses their defaults.
SAVED_SAMPLING = ("temperature", "top_k", "top_p", "min_p", "repetition_penalty", "seed", "max_new_tokens",
                  "allow_unk")


@dataclass
class AppSettings:
    last_run: str = ""  # a run name under the runs folder
    checkpoint: str = "best"  # "best" | "last"
    confidence: bool = False  # colour generated tokens by probability
    recipe: str = ""  # the recipe last used on the Train tab
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    keymap: dict[str, str] = field(default_factory=dict)  # binding id -> key(s), e.g. "generate.temp_up" = "plus"

    def to_dict(self) -> dict[str, Any]:
        raw = asdict(self)
        raw["sampling"] = {name: raw["sampling"][name] for name in SAVED_SAMPLING}
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
        for name in SAVED_SAMPLING:
            if name in sampling:
                setattr(settings.sampling, name, _typed(sampling[name], getattr(settings.sampling, name)))
    settings.sampling.clamp()
    # The CLI may ask for 0 new tokens (print the prompt only); in the app Enter would then do nothing.
    settings.sampling.max_new_tokens = max(settings.sampling.max_new_tokens, 1)
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
    from minigpt_tui.core.fsutil import atomic_write_text

    path = Path(path) if path is not None else paths.settings_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, tomli_w.dumps(settings.to_dict()))
    except OSError as err:
        return f"Could not save settings to {path} ({err.strerror or err})."
    return None


class SettingsKeeper:
    """The app's part that keeps AppSettings on disk (mixed into the App): a change is saved a
    second after the last one (so a held key writes once), and again on the way out."""

    SAVE_DELAY_S = 1.0

    def keep_settings(self, settings: AppSettings | None, save: bool) -> None:
        """Called from the app's __init__: the settings given (tests) or the saved ones."""
        warning = None
        if settings is None:
            settings, warning = load_settings()
        self.settings = settings
        self.settings_warning = warning  # one sentence for a notification once the app runs
        self.save_enabled = save
        self._save_timer = None
        self._dirty_settings = False

    def schedule_save(self) -> None:
        self._dirty_settings = True
        if not self.save_enabled:
            return
        if self._save_timer is not None:
            self._save_timer.stop()
        self._save_timer = self.set_timer(self.SAVE_DELAY_S, self.save_now)

    def save_now(self) -> None:
        self._save_timer = None
        self._dirty_settings = False
        if not self.save_enabled:
            return
        error = save_settings(self.settings)
        if error:
            self.notify(error, severity="warning")

    def on_unmount(self) -> None:
        """Settings are saved on the way out as well (a pending debounced save included)."""
        if self._save_timer is not None:
            self._save_timer.stop()
        if self._dirty_settings:
            self.save_now()
