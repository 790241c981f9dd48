"""Colours for Rich text drawn in Python (plots, status lines, confidence shading), read
from the app's current theme, so that "Change theme" recolours them as it does the CSS.

Widgets that draw with these call `colour(self.app, role)` when they render, and
re-render on `app.theme_changed_signal`.
"""

from __future__ import annotations

from textual.app import App
from textual.color import Color, ColorParseError

# role -> (theme variable, fallback for a theme that lacks it)
ROLES: dict[str, tuple[str, str]] = {
    "train": ("text-primary", "#57a5e2"),  # the training-loss curve and numbers
    "val": ("text-warning", "#ffc473"),  # the validation-loss curve and numbers
    "muted": ("", "#8a8a8a"),  # axes, reference lines, empty bar cells: see _muted
    "good": ("text-success", "#8ad4a1"),
    "warn": ("text-warning", "#ffc473"),
    "bad": ("text-error", "#d17e92"),
    "accent": ("text-accent", "#ffc473"),
    "primary": ("text-primary", "#57a5e2"),  # the probability bars of the Generate tab's odds panel
    "lr": ("text-success", "#8ad4a1"),  # the learning-rate strip under the loss plot
    # Runs overlaid in the comparison view, in order (SERIES_ROLES; the sixth is a blend).
    "series-0": ("text-primary", "#57a5e2"),
    "series-1": ("text-warning", "#ffc473"),
    "series-2": ("text-success", "#8ad4a1"),
    "series-3": ("text-error", "#d17e92"),
    "series-5": ("foreground", "#e0e0e0"),
    # Confidence shading of generated tokens, least to most likely (the saturated base colours:
    # they colour text on the surface); the third is a blend, set in BLENDS.
    "confidence-0": ("error", "#ff5f5f"),
    "confidence-1": ("warning", "#ffaf5f"),
    "confidence-3": ("success", "#87d787"),
}
# role -> (theme variable, theme variable, fallback): half-way between two roles' variables
# (in the default theme warning and accent are one colour, so a third level needs a blend).
BLENDS: dict[str, tuple[str, str, str]] = {
    "confidence-2": ("warning", "success", "#ffd75f"),
    "series-4": ("text-error", "text-primary", "#9491ba"),
}
SERIES_ROLES = tuple(f"series-{i}" for i in range(6))


def colour(app: App, role: str) -> str:
    """A Rich colour ("#rrggbb") for a role in ROLES or BLENDS, or for a theme variable by its name."""
    if role in BLENDS:
        first, second, fallback = BLENDS[role]
        a, b = _hex(app, first), _hex(app, second)
        return Color.parse(a).blend(Color.parse(b), 0.5).hex if a and b else fallback
    if role == "muted":
        return _muted(app)
    variable, fallback = ROLES.get(role, (role, "#8a8a8a"))
    return _hex(app, variable) or fallback


def _hex(app: App, variable: str) -> str:
    value = str(app.theme_variables.get(variable, ""))
    # Rich takes #rrggbb only: drop an alpha channel; CSS-only values ("auto 60%") have none.
    return value[:7] if value.startswith("#") and len(value) in (7, 9) else ""


def _muted(app: App) -> str:
    """Half way between the theme's text and background colours: grey on dark themes and on
    light ones alike (a darkened foreground would be black on a light theme)."""
    variables = app.theme_variables
    try:
        foreground = Color.parse(str(variables.get("foreground", "")))
        background = Color.parse(str(variables.get("background", "")))
    except ColorParseError:
        return ROLES["muted"][1]
    return background.blend(foreground.with_alpha(1.0), 0.55).hex[:7]


def faded(app: App, role: str, amount: float = 0.6) -> str:
    """A role's colour moved `amount` of the way towards the background: a curve drawn faint
    behind another (the raw training loss behind its smoothed curve)."""
    try:
        background = Color.parse(str(app.theme_variables.get("background", "")))
    except ColorParseError:
        background = Color.parse("#121212")
    return Color.parse(colour(app, role)).blend(background, amount).hex[:7]
