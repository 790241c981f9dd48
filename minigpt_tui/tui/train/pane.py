"""The Train tab: a recipe and a form on the left, the live run on the right.

This module is the glue: the widgets, the key bindings and the handlers. The form's
rules and the command it stands for are in form.py, the trainer child process in
process.py, starting, watching and stopping a run in runner.py, the run's state and its
drawing in state.py. Numbers are repainted by a 4 Hz timer that runs only while
training, so a fast trainer cannot flood the screen.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.message import Message
from textual.theme import Theme
from textual.widgets import Button, Input, Select, Static

from minigpt_tui.core import paths
from minigpt_tui.core.config import RunConfig
from minigpt_tui.core.data import catalogue
from minigpt_tui.core.errors import ConfigError, CorpusError
from minigpt_tui.core.runs import events as ev
from minigpt_tui.core.runs.run_dir import RunDir
from minigpt_tui.tui.formatting import fmt_bytes
from minigpt_tui.tui.palette import colour
from minigpt_tui.tui.screens import ConfirmScreen, RunPickerScreen
from minigpt_tui.tui.train import form
from minigpt_tui.tui.train.form import EXTRA, FORM, FORM_FIELDS, FORM_KEYS, config_value, field_id, format_value
from minigpt_tui.tui.train.process import STREAM_LIMIT, TrainerProcess, WatchedRun
from minigpt_tui.tui.train.runner import RunDriver
from minigpt_tui.tui.train.standby import Standby
from minigpt_tui.tui.train.state import RunState, render_badge, render_idle, render_sample, render_status
from minigpt_tui.tui.widgets.live_text import LiveText
from minigpt_tui.tui.widgets.loss_plot import PLOT_BINDINGS, VIEWS, LossPlot

log = logging.getLogger(__name__)


class _FetchCancelled(Exception):
    """The app is closing: the corpus download stops (its .part stays, for a later resume)."""


class TrainPane(RunDriver, Vertical):
    """Recipe, corpus and hyperparameters; start/stop; the live loss plot and samples."""

    BINDINGS = [
        Binding("s", "start", "Start", id="train.start", tooltip="Start training with the form's settings"),
        Binding("x", "stop", "Stop", id="train.stop", tooltip="Stop: the trainer saves a checkpoint and exits"),
        Binding("n", "new_run", "New run", id="train.new_run",
                tooltip="Leave resume or start-from mode for a new run from a recipe"),
        # Not in the footer (it is full): in the help (?) and the palette.
        Binding("c", "pick_corpus", "Corpus", id="train.corpus", show=False,
                tooltip="Pick a named corpus from the catalogue (those not downloaded say how to fetch them)"),
        Binding("escape", "leave_field", "Leave field", id="train.leave_field",
                tooltip="Leave the form field (then single keys act)"),
        *PLOT_BINDINGS,  # log scale, smoothing, follow: from anywhere in the tab, not only the plot
    ]

    class RunEvent(Message):
        """A trainer event the rest of the app may care about (started, checkpoint, done)."""

        def __init__(self, event: ev.Event) -> None:
            super().__init__()
            self.event = event

    class Ended(Message):
        """The trainer has exited; `status` is the run's final status (finished, stopped, failed)."""

        def __init__(self, status: str, run_dir: str) -> None:
            super().__init__()
            self.status = status
            self.run_dir = run_dir

    class RecipeChosen(Message):
        def __init__(self, recipe: str) -> None:
            super().__init__()
            self.recipe = recipe

    def __init__(self, recipe: str = "", **kwargs) -> None:
        super().__init__(**kwargs)
        self.recipes = {p.stem: p for p in paths.list_recipes()}
        if recipe not in self.recipes:
            recipe = paths.DEFAULT_RECIPE if paths.DEFAULT_RECIPE in self.recipes else next(iter(self.recipes), "")
        self.recipe = recipe
        self.base_config: RunConfig = RunConfig()
        self.resume_dir: Path | None = None  # set: the form resumes this run
        self.from_dir: Path | None = None  # set: the form starts a new run from this run's weights (--from)
        self.from_step = 0  # the step of the checkpoint it starts from
        self.state = RunState()
        self.proc: TrainerProcess | WatchedRun | None = None  # the running trainer, or the one watched
        self.standby = Standby(STREAM_LIMIT)  # a trainer process waiting for `s` (runner.schedule_standby)
        self.stop_requested = False
        self.errors: dict[str, str] = {}
        self.config: RunConfig | None = None  # the validated form, None while it has an error
        self._dirty = False
        self._ui_timer = None
        self._loading_form = False
        self._validation_pending = False
        self._shown_errors: dict[str, str] = {}
        self._fetching: str | None = None  # the catalogue corpus being downloaded, if one is
        self._choices_shown: dict[str, tuple[str, ...]] = {}  # a Select's choices, where they differ from FORM_FIELDS

    # ---- layout ---------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with Horizontal(id="train-body"):
            with VerticalScroll(id="train-form"):
                yield from form.compose_form(list(self.recipes), self.recipe)
            with Vertical(id="train-live"):
                with Horizontal(id="train-buttons"):
                    yield Button("Start (s)", id="start", compact=True, variant="success")
                    yield Button("Stop (x)", id="stop", compact=True, variant="error")
                    yield LiveText("", id="train-badge")
                yield LiveText("", id="train-status")
                yield LossPlot(id="train-plot", empty_message="The loss curves appear here once training starts.")
                yield Static("", id="train-sample")

    def on_mount(self) -> None:
        self._ui_timer = self.set_interval(0.25, self._tick, pause=True)
        self.app.theme_changed_signal.subscribe(self, self._theme_changed)
        self.load_recipe(self.recipe)
        self._update_buttons()
        self._render_status()

    async def on_unmount(self) -> None:
        await self.standby.close()

    def _theme_changed(self, theme: Theme) -> None:
        """Text drawn in Python holds colours read from the theme: draw it again."""
        self._shown_errors.clear()
        self.validate_form()
        self._render_status()

    # ---- the form -------------------------------------------------------------------------------
    def load_recipe(self, name: str) -> bool:
        path = self.recipes.get(name)
        if path is None:
            return False
        try:
            config = RunConfig.load(path)
        except ConfigError as err:
            self.app.notify(str(err), severity="error", title="Recipe")
            return False
        self.recipe = name
        self.resume_dir = self.from_dir = None
        self.base_config = config
        self._fill_form(config)
        return True

    def prepare_resume(self, run_dir: Path, config: RunConfig, step: int) -> None:
        """Fill the form from a run to resume; only max_steps (and --set) stay editable."""
        self.resume_dir = Path(run_dir)
        self.from_dir = None
        self.base_config = config
        self._fill_form(config)
        self._set_form_mode()
        self.query_one("#start", Button).focus()

    def prepare_start_from(self, run_dir: Path, config: RunConfig, step: int) -> None:
        """Fill the form for a new run that starts from a run's weights (--from): `config` is
        start_from_config(run, None, []), the run's own data and train fields; the fields of
        the model's shape (and its tokenizer) stay locked."""
        self.from_dir = Path(run_dir)
        self.from_step = step
        self.resume_dir = None
        self.base_config = config
        self._fill_form(config)
        self.query_one("#start", Button).focus()

    def run_moved(self, old_dir: Path, new_dir: Path) -> None:
        """The run this form resumes (or starts from) was renamed: follow it to its new name."""
        if self.resume_dir is not None and Path(self.resume_dir) == Path(old_dir):
            self.resume_dir = Path(new_dir)
            self._set_form_mode()
        if self.from_dir is not None and Path(self.from_dir) == Path(old_dir):
            self.from_dir = Path(new_dir)
            self._set_form_mode()

    def _fill_form(self, config: RunConfig) -> None:
        self._loading_form = True
        try:
            for key, _, choices in FORM_FIELDS:
                widget = self.query_one("#" + field_id(key))
                value = config_value(config, key)
                if choices:
                    shown = form.shown_choices(choices, value, self._mode)
                    if self._choices_shown.get(key, choices) != shown:
                        widget.set_options([(c, c) for c in shown])
                        self._choices_shown[key] = shown
                    widget.value = value if value in shown else choices[0]
                else:
                    widget.value = format_value(value)
            self.query_one("#" + field_id(EXTRA), Input).value = ""
            if self.recipe and self._mode is None:
                self.query_one("#recipe", Select).value = self.recipe
        finally:
            self._loading_form = False
        self._set_form_mode()
        self.validate_form()

    @property
    def _mode(self) -> str | None:
        """"resume", "from" (a new run from a run's weights) or None (a new run from the recipe)."""
        return "resume" if self.resume_dir is not None else "from" if self.from_dir is not None else None

    def _set_form_mode(self) -> None:
        running = self.training
        focused = self.app.focused
        self.set_class(running, "-running")  # a narrow screen shows the form only while idle
        family = str(self.query_one("#" + field_id("model.family"), Select).value)
        for key in FORM_KEYS:
            widget = self.query_one("#" + field_id(key))
            widget.disabled = running or form.locked(self._mode, key, family)
        self.query_one("#" + field_id(EXTRA)).disabled = running
        self.query_one("#recipe").disabled = running or self._mode is not None
        mode = self.query_one("#form-mode", Static)
        line = form.mode_line(self._mode, (self.resume_dir or self.from_dir or Path()).name, self.from_step)
        if line is not None:
            mode.update(line)
        mode.display = line is not None
        # A field that had focus (Enter in it starts training) is disabled now: focus would go
        # nowhere and the tab's keys (x: stop) would be dead. Move it to the Start/Stop button.
        if focused is not None and focused.disabled and focused in self.query(".form-field, #recipe"):
            self.call_after_refresh(self.focus_default)
        self.refresh_bindings()

    def _form_values(self) -> dict[str, str]:
        """Config key -> the text of its field (a Select's value)."""
        values = {}
        for key in FORM_KEYS:
            raw = self.query_one("#" + field_id(key)).value
            values[key] = str(raw) if raw is not Select.BLANK else ""
        return values

    def _extra_text(self) -> str:
        return self.query_one("#" + field_id(EXTRA), Input).value

    def validate_form(self) -> RunConfig | None:
        """Check the form against the core's rules; errors show under their fields."""
        source = RunDir(self.from_dir) if self.from_dir is not None else None
        check = form.check_form(self.base_config, self._form_values(), self._extra_text(), start_from=source)
        errors = check.errors
        shown_hint = ("✓ " if check.corpus_ok else "✗ ") + check.corpus_hint
        if self._shown_errors.get("corpus-hint") != shown_hint:
            self._shown_errors["corpus-hint"] = shown_hint
            style = colour(self.app, "good" if check.corpus_ok else "bad")
            self.query_one("#corpus-hint", Static).update(Text(shown_hint, style=style))
        self.errors = errors
        if self.state.status == "idle" and self.is_mounted:
            self._dirty = True  # the idle status line names the corpus
            self.call_after_refresh(self._tick)
        for key in [*FORM_KEYS, EXTRA, FORM]:
            message = errors.get(key, "")
            if key == "data.path" and message and not check.corpus_ok:
                message = ""  # the hint line already says it
            if self._shown_errors.get(key, "") == message:
                continue  # repaint only what changed
            self._shown_errors[key] = message
            target = self.query_one("#form-error" if key == FORM else "#" + field_id(key) + "-error", Static)
            target.update(Text(message, style=colour(self.app, "bad")))
            target.display = bool(message)
        self.config = check.config
        return check.config

    @on(Input.Changed, ".form-field")
    @on(Select.Changed, ".form-field")
    def _field_changed(self, event) -> None:
        if event.control.id == field_id("model.family"):
            self._set_form_mode()  # (n_head is for the Transformer only)
        self._schedule_validation()

    def _schedule_validation(self) -> None:
        """Validate once for a burst of changes (filling the form changes every field at once)."""
        if not self._validation_pending:
            self._validation_pending = True
            self.call_later(self._run_pending_validation)

    def _run_pending_validation(self) -> None:
        if self._validation_pending:
            self._validation_pending = False
            self.validate_form()

    @on(Select.Changed, "#recipe")
    def _recipe_changed(self, event: Select.Changed) -> None:
        if self._loading_form or event.value is Select.BLANK or event.value == self.recipe:
            return
        if self.load_recipe(str(event.value)):
            self.post_message(TrainPane.RecipeChosen(self.recipe))

    @on(Input.Submitted, ".form-field")
    def _field_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_start()

    # ---- start / stop ---------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "start":  # (while watching too: the watch ends and our own run starts)
            return None if self.training else True
        if action == "stop":
            return True if self.proc is not None and not self.stop_requested else None
        if action == "new_run":
            return True if self._mode is not None and not self.training else False
        if action == "leave_field":
            return self._in_form_field()
        if action == "pick_corpus":
            return not self.query_one("#" + field_id("data.path"), Input).disabled
        return True

    def _in_form_field(self) -> bool:
        focused = self.app.focused
        return isinstance(focused, (Input, Select)) and focused in self.query(".form-field, #recipe")

    def command_line(self) -> list[str]:
        """The headless command this start runs (without the --events flag); [] while the form has an error."""
        config = self.validate_form()
        if config is None:
            return []
        recipe_path = self.recipes[self.recipe] if self._mode is None else None
        return form.command_line(config, self._form_values(), self._extra_text(),
                                 resume_dir=self.resume_dir, recipe_path=recipe_path,
                                 from_dir=self.from_dir, from_base=self.base_config)

    def action_start(self) -> None:
        if self.training:
            self.app.notify("A run is already training; stop it first (x).", severity="warning")
            return
        if not self.recipes and self._mode is None:
            self.app.notify(f"No recipes found in {paths.recipes_dir()}.", severity="error")
            return
        try:
            args = self.command_line()
        except ConfigError as err:
            self.app.notify(str(err), severity="error", title="Cannot start")
            return
        if not args:
            key, message = next(iter(self.errors.items()), (FORM, "The form has an error."))
            self.app.notify(message, severity="error", title="Cannot start")
            self._focus_field(key)
            return
        self.start_process(args)

    def action_pick_corpus(self) -> None:
        """The catalogue in a list; the chosen name goes into the corpus field (kjv: left empty)."""
        field = self.query_one("#" + field_id("data.path"), Input)
        if field.disabled:
            return
        current = field.value.strip() or "kjv"

        def chosen(name: str | None) -> None:
            if name:
                field.value = "" if name == "kjv" else name
                field.cursor_position = len(field.value)
                field.focus()
                entry = catalogue.named(name)
                if entry is not None and not catalogue.is_present(entry) and self._fetching is None:
                    size = f" ({fmt_bytes(entry.size)})" if entry.size is not None else ""
                    self.app.push_screen(ConfirmScreen(f"{entry.name} is not downloaded yet. Download it now{size}? "
                                                       f"(Or later: {catalogue.FETCH_COMMAND} {entry.name})",
                                                       yes="Download"),
                                         lambda yes: yes and self.fetch_corpus(entry))

        self.app.push_screen(RunPickerScreen(form.corpus_choices(), current,
                                             title="Train on which corpus? (Enter picks, Esc cancels)"), chosen)

    @work(thread=True, exclusive=True, group="corpus-fetch", exit_on_error=False)
    def fetch_corpus(self, entry: catalogue.Entry) -> None:
        """Download a catalogue corpus as `minigpt-tui --corpus fetch` does, its progress on the
        line under the corpus hint; the form is checked again when it is here. Leaving the app
        stops it (the partial download stays, for the next fetch to resume)."""
        from textual.worker import get_current_worker

        worker = get_current_worker()
        self._fetching = entry.name
        last = [0.0]

        def progress(stage: str, done: int, total: int | None) -> None:
            if worker.is_cancelled:
                raise _FetchCancelled()
            now = time.monotonic()
            if now - last[0] >= 0.25 or (total is not None and done >= total):
                last[0] = now
                amount = f"{100 * done / total:.0f}%" if total else fmt_bytes(done) if done else ""
                words = catalogue.STAGE_WORDS.get(stage, stage)
                self.app.call_from_thread(self._show_fetch, f"⇣ {entry.name}: {words} {amount}".rstrip())

        try:
            catalogue.fetch(entry, progress)
        except _FetchCancelled:
            return
        except CorpusError as err:
            self.app.call_from_thread(self.app.notify, str(err), severity="error", title="Download failed")
        except Exception as err:  # a bug or an odd file: said in one sentence, the traceback logged
            log.exception("fetching corpus %s", entry.name)
            self.app.call_from_thread(self.app.notify, f"Downloading {entry.name} failed "
                                      f"({type(err).__name__}: {err}).", severity="error", title="Download failed")
        else:
            self.app.call_from_thread(self.app.notify, f"{entry.name} is downloaded; the form can use it now.",
                                      title="Corpus ready")
        finally:
            self._fetching = None
            if not worker.is_cancelled:
                self.app.call_from_thread(self._show_fetch, "")
        self.app.call_from_thread(self._revalidate_corpus)

    def _show_fetch(self, text: str) -> None:
        line = self.query_one("#corpus-fetch", Static)
        line.update(Text(text, style=colour(self.app, "accent")) if text else "")
        line.display = bool(text)

    def _revalidate_corpus(self) -> None:
        self._shown_errors.pop("corpus-hint", None)
        self.validate_form()

    def action_plot(self, view: str) -> None:
        if view in VIEWS:
            self.plot.toggle(view)

    def action_new_run(self) -> None:
        if self.training:
            return
        self.load_recipe(self.recipe)

    def action_leave_field(self) -> None:
        if self._in_form_field():
            self.focus_default()

    def _focus_field(self, key: str) -> None:
        target = "#form-error" if key == FORM else "#" + field_id(key)
        try:
            widget = self.query_one(target)
        except NoMatches:
            return
        if widget.focusable:
            widget.focus()
        widget.scroll_visible()

    @on(Button.Pressed, "#start")
    def _start_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_start()

    @on(Button.Pressed, "#stop")
    def _stop_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_stop()

    def focus_default(self) -> None:
        button = self.query_one("#start" if self.proc is None else "#stop", Button)
        if button.disabled:
            self.query_one("#train-plot").focus()
        else:
            button.focus()

    # ---- display ---------------------------------------------------------------------------------------
    @property
    def plot(self) -> LossPlot:
        return self.query_one("#train-plot", LossPlot)

    def _tick(self) -> None:
        if self._dirty:
            self._render_status()

    def _update_buttons(self) -> None:
        start, stop = self.query_one("#start", Button), self.query_one("#stop", Button)
        focused = self.app.focused
        start.disabled = self.training
        stop.disabled = self.proc is None or self.stop_requested
        if focused in (start, stop) and focused.disabled:
            if not stop.disabled:
                stop.focus()
            elif not start.disabled:
                start.focus()
            else:
                self.plot.focus()
        self.refresh_bindings()

    def _render_status(self) -> None:
        self._dirty = False
        s = self.state
        self.query_one("#train-badge", LiveText).update(render_badge(s, self.app))
        if s.status == "idle":
            corpus_ok, corpus = form.describe_corpus(self.query_one("#" + field_id("data.path"), Input).value)
            verb, name = {"resume": ("resume", getattr(self.resume_dir, "name", "")),
                          "from": ("fine-tune from", getattr(self.from_dir, "name", ""))}.get(
                self._mode, ("train", self.recipe))
            lines = render_idle(verb, name, corpus_ok, corpus)
        else:
            lines = render_status(s, self.app)
        self.query_one("#train-status", LiveText).update(lines)
        sample = render_sample(s, self.app)
        if sample is not None:
            self.query_one("#train-sample", Static).update(sample)
