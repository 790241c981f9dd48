"""The Train tab: a recipe and a form on the left, the live run on the right.

Training runs as a child process of the headless trainer
(`python -m minigpt_tui --train RECIPE --set k=v ... --events jsonl`); this tab reads
its JSON-lines events from an asyncio pipe, so nothing the trainer does can stall
the UI. Stop is SIGTERM: the trainer saves a checkpoint and reports Done(stopped).
Numbers and the plot are repainted by a 4 Hz timer that runs only while training.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shlex
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Button, Input, Label, Select, Static

from minigpt_tui.core import events as ev
from minigpt_tui.core import paths
from minigpt_tui.core.config import ConfigError, RunConfig
from minigpt_tui.tui.widgets.live_text import LiveText
from minigpt_tui.tui.widgets.loss_plot import LossPlot

# (config key, label, choices or None). The labels are the TOML names, so what a person
# learns here carries over to recipes and --set.
FORM_FIELDS: list[tuple[str, str, tuple[str, ...] | None]] = [
    ("data.path", "corpus", None),
    ("data.tokenizer", "tokenizer", ("char", "word")),
    ("data.vocab_size", "vocab_size", None),
    ("model.family", "family", ("transformer", "gru", "lstm")),
    ("model.n_layer", "n_layer", None),
    ("model.n_head", "n_head", None),
    ("model.n_embd", "n_embd", None),
    ("model.context_length", "context", None),
    ("model.dropout", "dropout", None),
    ("train.max_steps", "max_steps", None),
    ("train.batch_size", "batch_size", None),
    ("train.learning_rate", "learning_rate", None),
    ("train.eval_interval", "eval_interval", None),
    ("train.device", "device", None),
]
STRING_FIELDS = {"data.path", "data.tokenizer", "model.family", "train.device"}
EXTRA = "extra"  # the free-form "--set" field
STREAM_LIMIT = 16 * 1024 * 1024  # longest event line we accept (a long sample)


def field_id(key: str) -> str:
    return "f-" + key.replace(".", "-").replace("_", "-")


def format_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format(value, "g")
    return str(value)


def config_value(config: RunConfig, key: str):
    section, name = key.split(".")
    return getattr(getattr(config, section), name)


def describe_corpus(text: str) -> tuple[bool, str]:
    """(usable, one line) for the corpus field, checked as the user types."""
    if not text.strip():
        return True, "built-in KJV Bible"
    path = Path(text.strip()).expanduser()
    try:
        if path.is_file():
            size = path.stat().st_size
            if size == 0:
                return False, f"{path.name} is empty"
            return True, f"text file, {_size(size)}"
        if path.is_dir():
            for ext in ("tokens", "raw"):
                if (path / f"wiki.train.{ext}").is_file() and (path / f"wiki.valid.{ext}").is_file():
                    return True, f"WikiText folder (.{ext})"
            return False, "folder without wiki.train.tokens / wiki.valid.tokens"
    except OSError as err:
        return False, f"cannot read: {err.strerror or err}"
    return False, "no such file or folder"


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def fmt_duration(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "-"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


@dataclass
class RunState:
    """What the tab knows about the current (or last) run, fed by events."""

    status: str = "idle"  # idle | starting | training | stopping | finished | stopped | failed
    run_name: str = ""
    run_dir: str = ""
    family: str = ""
    corpus: str = ""
    params: int = 0
    device: str = ""
    dtype: str = ""
    ln_vocab: float | None = None
    start_step: int = 0
    max_steps: int = 0
    step: int = 0
    loss: float | None = None
    val_loss: float | None = None
    best_val_loss: float | None = None
    tokens_per_s: float = 0.0
    eta_s: float = float("nan")
    sample: str = ""
    sample_step: int | None = None
    message: str = ""
    checkpoints: list[tuple[int, str]] = field(default_factory=list)


class TrainPane(Vertical):
    """Recipe, corpus and hyperparameters; start/stop; the live loss plot and samples."""

    BINDINGS = [
        Binding("s", "start", "Start", id="train.start", tooltip="Start training with the form's settings"),
        Binding("x", "stop", "Stop", id="train.stop", tooltip="Stop: the trainer saves a checkpoint and exits"),
        Binding("n", "new_run", "New run", id="train.new_run",
                tooltip="Leave resume mode and set up a new run from a recipe"),
        Binding("escape", "leave_field", "Leave field", id="train.leave_field",
                tooltip="Leave the form field (then single keys act)"),
    ]

    class RunEvent(Message):
        """A trainer event the rest of the app may care about (started, checkpoint, done)."""

        def __init__(self, event: ev.Event) -> None:
            super().__init__()
            self.event = event

    def __init__(self, recipe: str = "", **kwargs) -> None:
        super().__init__(**kwargs)
        self.recipes = {p.stem: p for p in paths.list_recipes()}
        if recipe not in self.recipes:
            recipe = paths.DEFAULT_RECIPE if paths.DEFAULT_RECIPE in self.recipes else next(iter(self.recipes), "")
        self.recipe = recipe
        self.base_config: RunConfig = RunConfig()
        self.resume_dir: Path | None = None  # set: the form resumes this run
        self.state = RunState()
        self.proc: asyncio.subprocess.Process | None = None
        self.stop_requested = False
        self.errors: dict[str, str] = {}
        self.config: RunConfig | None = None  # the validated form, None while it has an error
        self.stderr_lines: list[str] = []
        self.stray_lines: list[str] = []
        self.events_seen = 0
        self._dirty = False
        self._ui_timer = None
        self._loading_form = False
        self._validation_pending = False
        self._shown_errors: dict[str, str] = {}

    # ---- layout ---------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with Horizontal(id="train-body"):
            with VerticalScroll(id="train-form"):
                yield Static("", id="form-mode")
                with Horizontal(classes="form-row"):
                    yield Label("recipe", classes="form-label")
                    yield Select([(name, name) for name in self.recipes], value=self.recipe or Select.BLANK,
                                 allow_blank=not self.recipes, compact=True, id="recipe")
                for key, label, choices in FORM_FIELDS:
                    with Horizontal(classes="form-row"):
                        yield Label(label, classes="form-label")
                        if choices:
                            yield Select([(c, c) for c in choices], value=choices[0], allow_blank=False,
                                         compact=True, id=field_id(key), classes="form-field")
                        else:
                            placeholder = "(empty: built-in KJV)" if key == "data.path" else ""
                            yield Input(compact=True, id=field_id(key), classes="form-field",
                                        placeholder=placeholder, select_on_focus=False)
                    if key == "data.path":
                        yield Static("", id="corpus-hint", classes="hint")
                    yield Static("", id=field_id(key) + "-error", classes="field-error")
                with Horizontal(classes="form-row"):
                    yield Label("--set", classes="form-label")
                    yield Input(compact=True, id=field_id(EXTRA), classes="form-field",
                                placeholder="section.key=value ...", select_on_focus=False)
                yield Static("", id=field_id(EXTRA) + "-error", classes="field-error")
                yield Static("", id="form-error", classes="field-error")
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
        self.load_recipe(self.recipe)
        self._update_buttons()
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
        self.resume_dir = None
        self.base_config = config
        self._fill_form(config)
        return True

    def prepare_resume(self, run_dir: Path, config: RunConfig, step: int) -> None:
        """Fill the form from a run to resume; only max_steps (and --set) stay editable."""
        self.resume_dir = Path(run_dir)
        self.base_config = config
        self._fill_form(config)
        self._set_form_mode()
        self.query_one("#start", Button).focus()

    def _fill_form(self, config: RunConfig) -> None:
        self._loading_form = True
        try:
            for key, _, choices in FORM_FIELDS:
                widget = self.query_one("#" + field_id(key))
                value = config_value(config, key)
                if choices:
                    widget.value = value if value in choices else choices[0]
                else:
                    widget.value = format_value(value)
            self.query_one("#" + field_id(EXTRA), Input).value = ""
            if self.recipe and self.resume_dir is None:
                self.query_one("#recipe", Select).value = self.recipe
        finally:
            self._loading_form = False
        self._set_form_mode()
        self.validate_form()

    def _set_form_mode(self) -> None:
        resuming = self.resume_dir is not None
        running = self.is_running
        for key, _, _ in FORM_FIELDS:
            widget = self.query_one("#" + field_id(key))
            widget.disabled = running or (resuming and key != "train.max_steps")
        self.query_one("#" + field_id(EXTRA)).disabled = running
        self.query_one("#recipe").disabled = running or resuming
        mode = self.query_one("#form-mode", Static)
        if resuming:
            mode.update(Text.assemble(("Resume ", "bold"), (self.resume_dir.name, "bold"),
                                      ("\nraise max_steps to train longer; n: new run", "dim")))
            mode.display = True
        else:
            mode.display = False
        self.refresh_bindings()

    def form_overrides(self) -> list[tuple[str, str]]:
        """(field key, 'section.key=value') for every form field."""
        out = []
        for key, _, choices in FORM_FIELDS:
            raw = self.query_one("#" + field_id(key)).value
            text = str(raw) if raw is not Select.BLANK else ""
            if key in STRING_FIELDS:
                out.append((key, f"{key}={json.dumps(text.strip() if key != 'data.path' else text, ensure_ascii=False)}"))
            else:
                out.append((key, f"{key}={text.strip()}"))
        return out

    def extra_overrides(self) -> list[str]:
        text = self.query_one("#" + field_id(EXTRA), Input).value
        try:
            return shlex.split(text)
        except ValueError:
            raise ConfigError("The --set field has an unclosed quote.") from None

    def validate_form(self) -> RunConfig | None:
        """Check every field against the core's rules; errors show under their fields."""
        base = self.base_config
        errors: dict[str, str] = {}
        overrides = self.form_overrides()
        for key, item in overrides:
            if not item.split("=", 1)[1]:
                errors[key] = f"{key} needs a value."
                continue
            try:
                base.with_overrides([item])
            except ConfigError as err:
                errors.setdefault(self._field_for(str(err), key), str(err))
        try:
            extra = self.extra_overrides()
            base.with_overrides(extra)
        except ConfigError as err:
            extra = []
            errors.setdefault(EXTRA, str(err))
        config = None
        if not errors:
            try:
                config = base.with_overrides([item for _, item in overrides] + extra)
            except ConfigError as err:
                errors[self._field_for(str(err), "form")] = str(err)
        ok, hint = describe_corpus(self.query_one("#" + field_id("data.path"), Input).value)
        if not ok and "data.path" not in errors:
            errors["data.path"] = f"Corpus path {self.query_one('#' + field_id('data.path'), Input).value.strip()} " \
                                  f"is not usable ({hint}); give a text file, a WikiText folder, or leave it empty."
            config = None
        shown_hint = ("✓ " if ok else "✗ ") + hint
        if self._shown_errors.get("corpus-hint") != shown_hint:
            self._shown_errors["corpus-hint"] = shown_hint
            self.query_one("#corpus-hint", Static).update(Text(shown_hint, style="green" if ok else "red"))
        self.errors = errors
        if self.state.status == "idle" and self.is_mounted:
            self._dirty = True
            self.call_after_refresh(self._tick)
        for key, _, _ in [*FORM_FIELDS, (EXTRA, "", None), ("form", "", None)]:
            message = errors.get(key, "")
            if key == "data.path" and message and not ok:
                message = ""  # the hint line already says it
            if self._shown_errors.get(key, "") == message:
                continue  # repaint only what changed
            self._shown_errors[key] = message
            target = self.query_one("#form-error" if key == "form" else "#" + field_id(key) + "-error", Static)
            target.update(Text(message, style="red"))
            target.display = bool(message)
        self.config = config
        return config

    @staticmethod
    def _field_for(message: str, default: str) -> str:
        """The form field an error sentence names (it starts with the field's key)."""
        first = message.split(" ", 1)[0].rstrip(",.;:")
        if any(first == key for key, _, _ in FORM_FIELDS):
            return first
        return default if default != "form" else "form"

    @on(Input.Changed, ".form-field")
    @on(Select.Changed, ".form-field")
    def _field_changed(self, event) -> None:
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

    class RecipeChosen(Message):
        def __init__(self, recipe: str) -> None:
            super().__init__()
            self.recipe = recipe

    @on(Input.Submitted, ".form-field")
    def _field_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_start()

    # ---- start / stop ---------------------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        return self.proc is not None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "start":
            return None if self.is_running else True
        if action == "stop":
            return True if self.is_running and not self.stop_requested else None
        if action == "new_run":
            return True if self.resume_dir is not None and not self.is_running else False
        if action == "leave_field":
            return self._in_form_field()
        return True

    def _in_form_field(self) -> bool:
        focused = self.app.focused
        return isinstance(focused, (Input, Select)) and focused in self.query(".form-field, #recipe")

    def command_line(self) -> list[str]:
        """The headless command this start runs (without the --events flag)."""
        config = self.validate_form()
        if config is None:
            return []
        extra = self.extra_overrides()
        if self.resume_dir is not None:
            sets = [f"train.max_steps={config.train.max_steps}"] + extra
            head = ["--train", "--resume", str(self.resume_dir)]
        else:
            recipe = RunConfig.load(self.recipes[self.recipe])
            sets = []
            for key, item in self.form_overrides():
                if config_value(config, key) != config_value(recipe, key):
                    sets.append(item)
            sets += extra
            head = ["--train", str(self.recipes[self.recipe])]
        args = list(head)
        for item in sets:
            args += ["--set", item]
        return args

    def action_start(self) -> None:
        if self.is_running:
            self.app.notify("A run is already training; stop it first (x).", severity="warning")
            return
        if not self.recipes and self.resume_dir is None:
            self.app.notify(f"No recipes found in {paths.recipes_dir()}.", severity="error")
            return
        try:
            args = self.command_line()
        except ConfigError as err:
            self.app.notify(str(err), severity="error", title="Cannot start")
            return
        if not args:
            key, message = next(iter(self.errors.items()), ("form", "The form has an error."))
            self.app.notify(message, severity="error", title="Cannot start")
            self._focus_field(key)
            return
        self.start_process(args)

    def start_process(self, args: list[str]) -> None:
        """Start the headless trainer with these CLI arguments (plus --events jsonl)."""
        argv = [sys.executable, "-m", "minigpt_tui", *args, "--events", "jsonl"]
        resuming = "--resume" in args
        self.state = RunState(status="starting")
        self.stop_requested = False
        self.stderr_lines, self.stray_lines = [], []
        self.plot.clear()
        self._dirty = True
        shown = " ".join(shlex.quote(a) for a in ["minigpt-tui", *args])
        self.query_one("#train-sample", Static).update(
            Text.assemble(("Starting the trainer", "bold"), (" (the same as running:\n", "dim"), (shown, "dim"), (")", "dim")))
        self.run_worker(self._run_process(argv, resuming), group="train", exclusive=True,
                        exit_on_error=False, name="trainer")

    async def _run_process(self, argv: list[str], resuming: bool) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=env, limit=STREAM_LIMIT)
        except OSError as err:
            self.state.status = "failed"
            self.state.message = f"Could not start the trainer ({err.strerror or err})."
            self.app.notify(self.state.message, severity="error", title="Training")
            self._render_status()
            return
        self.proc = proc
        self._set_form_mode()
        self._update_buttons()
        self._ui_timer.resume()
        stderr_task = asyncio.create_task(self._read_stderr(proc.stderr))
        try:
            while True:
                try:
                    raw = await proc.stdout.readline()
                except ValueError:  # a line over the limit: skip it
                    continue
                if not raw:
                    break
                line = raw.decode("utf-8", "replace").strip()
                if not line:
                    continue
                try:
                    event = ev.decode(line)
                except ValueError:
                    self.stray_lines = (self.stray_lines + [line])[-20:]
                    continue
                self.handle_event(event, resuming=resuming)
            rc = await proc.wait()
            await stderr_task
        finally:
            self.proc = None
        self._finish(rc)

    async def _read_stderr(self, stream: asyncio.StreamReader) -> None:
        while True:
            try:
                raw = await stream.readline()
            except ValueError:
                continue
            if not raw:
                return
            text = raw.decode("utf-8", "replace").strip()
            if text:
                self.stderr_lines = (self.stderr_lines + [text])[-50:]

    def handle_event(self, event: ev.Event, resuming: bool = False) -> None:
        """Update the run state from one trainer event (the display catches up on the next tick)."""
        s = self.state
        self.events_seen += 1
        self._dirty = True
        if isinstance(event, ev.Started):
            s.status = "training" if not self.stop_requested else "stopping"
            s.run_name, s.run_dir, s.family, s.corpus = event.run_name, event.run_dir, event.family, event.corpus
            s.params, s.device, s.dtype = event.params, event.device, event.dtype
            s.ln_vocab, s.start_step, s.max_steps, s.step = event.ln_vocab, event.start_step, event.max_steps, event.start_step
            train, val = [], []
            if resuming:
                train, val = metrics_series(Path(event.run_dir), upto=event.start_step)
                if val:
                    s.val_loss = val[-1][1]
                    s.best_val_loss = min(v for _, v in val)
            self.plot.set_data(train, val, event.ln_vocab, event.max_steps)
            self.post_message(TrainPane.RunEvent(event))
        elif isinstance(event, ev.Step):
            s.step = event.step
            s.loss, s.tokens_per_s, s.eta_s = event.loss, event.tokens_per_s, event.eta_s
            self.plot.add_train(event.step, event.loss)
        elif isinstance(event, ev.Eval):
            s.step = max(s.step, event.step)
            s.val_loss, s.best_val_loss = event.val_loss, event.best_val_loss
            self.plot.add_val(event.step, event.val_loss)
        elif isinstance(event, ev.Sample):
            s.sample, s.sample_step = event.text, event.step
        elif isinstance(event, ev.CheckpointSaved):
            s.checkpoints.append((event.step, event.kind))
            self.post_message(TrainPane.RunEvent(event))
        elif isinstance(event, ev.Done):
            s.status = event.reason
            s.step = event.step
            s.best_val_loss = event.best_val_loss
            self.post_message(TrainPane.RunEvent(event))
        elif isinstance(event, ev.Error):
            s.status = "failed"
            s.message = event.message
            self.post_message(TrainPane.RunEvent(event))

    def _finish(self, rc: int) -> None:
        s = self.state
        self._ui_timer.pause()
        if s.status == "failed" or (rc != 0 and s.status not in ("finished", "stopped")):
            if self.stop_requested and rc < 0:
                s.status = "stopped"
                s.message = "Stopped before the first step; nothing was saved."
                self.app.notify(s.message, title="Training")
            else:
                if not s.message:
                    s.message = self._crash_message(rc)
                s.status = "failed"
                self.app.notify(s.message, severity="error", title="Training failed", timeout=10)
        elif s.status == "stopped":
            self.app.notify(f"Stopped {s.run_name} at step {s.step}; its checkpoint is saved.", title="Training")
        elif s.status == "finished":
            best = f", best val loss {s.best_val_loss:.3f}" if s.best_val_loss is not None else ""
            self.app.notify(f"Finished {s.run_name} at step {s.step}{best}.", title="Training")
        else:
            s.status = "stopped"
        self.stop_requested = False
        self._set_form_mode()
        self._update_buttons()
        self._render_status()
        self.plot.request_redraw(now=True)
        self.post_message(TrainPane.Ended(s.status, s.run_dir))

    class Ended(Message):
        def __init__(self, status: str, run_dir: str) -> None:
            super().__init__()
            self.status = status
            self.run_dir = run_dir

    def _crash_message(self, rc: int) -> str:
        """Why the trainer ended: its own sentence, else the signal that killed it, else its
        last line of stderr (the end of a traceback says more than a warning printed first)."""
        for line in reversed(self.stderr_lines):
            if line.startswith("minigpt-tui:"):
                return line.removeprefix("minigpt-tui:").strip()
        if rc < 0:
            try:
                name = signal.Signals(-rc).name
            except ValueError:
                name = f"signal {-rc}"
            return f"The trainer was killed by {name}."
        if self.stderr_lines:
            return f"The trainer exited with status {rc}: {self.stderr_lines[-1][:200]}"
        return f"The trainer exited with status {rc} without saying why."

    def action_stop(self) -> None:
        if not self.is_running:
            self.app.notify("Nothing is training.", severity="warning")
            return
        self.request_stop()

    def request_stop(self) -> None:
        if self.proc is None or self.stop_requested:
            return
        self.stop_requested = True
        self.state.status = "stopping"
        try:
            self.proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        self._dirty = True
        self._render_status()
        self._update_buttons()

    async def stop_and_wait(self, timeout: float = 60.0) -> None:
        """Stop the trainer and wait until it has saved and exited (for quitting)."""
        proc = self.proc
        if proc is None:
            return
        self.request_stop()
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except asyncio.TimeoutError:
            proc.kill()

    def action_new_run(self) -> None:
        if self.is_running:
            return
        self.load_recipe(self.recipe)

    def action_leave_field(self) -> None:
        if self._in_form_field():
            self.focus_default()

    def _focus_field(self, key: str) -> None:
        target = "#form-error" if key == "form" else "#" + field_id(key)
        try:
            widget = self.query_one(target)
        except Exception:
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
        button = self.query_one("#start" if not self.is_running else "#stop", Button)
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
        start.disabled = self.is_running
        stop.disabled = not self.is_running or self.stop_requested
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
        badge = {
            "idle": ("ready", "dim"), "starting": ("● starting", "yellow"), "training": ("● training", "green"),
            "stopping": ("● stopping, saving a checkpoint", "yellow"), "finished": ("✓ finished", "green"),
            "stopped": ("■ stopped", "yellow"), "failed": ("✗ failed", "red"),
        }.get(s.status, (s.status, ""))
        self.query_one("#train-badge", LiveText).update(Text(badge[0], style=badge[1], justify="right"))
        lines = Text(no_wrap=True, overflow="ellipsis")
        if s.status == "idle":
            name = self.recipe if self.resume_dir is None else self.resume_dir.name
            verb = "resume" if self.resume_dir is not None else "train"
            lines.append(f"Press s to {verb} ", "bold")
            lines.append(name or "?", "bold")
            corpus_ok, corpus = describe_corpus(self.query_one("#" + field_id("data.path"), Input).value)
            lines.append(f"\non {corpus}." if corpus_ok else "\n(fix the corpus path first).", "dim")
            lines.append("\nIts loss starts near ln V, then falls.", "dim")
        elif not s.run_name:  # the trainer has not started a run (yet, or at all)
            lines.append("Starting the trainer…" if s.status in ("starting", "stopping") else s.message or s.status,
                         "bold" if s.status != "failed" else "bold red")
        else:
            lines.append(s.run_name, "bold")
            total = s.max_steps or 0
            lines.append("\nstep ")
            lines.append(f"{s.step:,}", "bold")
            if total:
                lines.append(f"/{total:,} ")
                frac = min(1.0, s.step / total) if total else 0.0
                bar_w = 12
                filled = int(round(frac * bar_w))
                lines.append("━" * filled, "green")
                lines.append("━" * (bar_w - filled), "#444444")
                lines.append(f" {frac:4.0%}")
            lines.append("\nloss ")
            lines.append(f"{s.loss:.3f}" if s.loss is not None else "-", "bold #4aa8ff")
            lines.append("  val ")
            lines.append(f"{s.val_loss:.3f}" if s.val_loss is not None else "-", "bold #ff9f1c")
            if s.best_val_loss is not None:
                lines.append(f" (best {s.best_val_loss:.3f})")
            lines.append("\n")
            lines.append(f"{s.tokens_per_s:,.0f} tok/s" if s.tokens_per_s else "- tok/s")
            if s.status in ("training", "stopping"):
                lines.append(f"  ETA {fmt_duration(s.eta_s)}")
            if s.ln_vocab is not None:
                lines.append(f"  ln V {s.ln_vocab:.2f}", "dim")
            if s.device:
                lines.append(f"  {s.device}", "dim")
            if s.message and s.status == "failed":
                lines.append("\n")
                lines.append(s.message, "red")
        self.query_one("#train-status", LiveText).update(lines)
        sample = self.query_one("#train-sample", Static)
        if s.sample:
            from minigpt_tui.core.tokenizer import prettify

            text = Text.assemble((f"sample at step {s.sample_step}\n", "bold dim"), prettify(s.sample.strip("\n")))
            sample.update(text)
        elif s.status == "failed":
            sample.update(Text(s.message, style="red"))
        elif s.status == "stopped" and not s.run_name:
            sample.update(Text(s.message, style="dim"))


def metrics_series(run_dir: Path, upto: int | None = None) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """(train, val) loss series of a run from its metrics file."""
    from minigpt_tui.core.checkpoint import read_metrics

    train, val = [], []
    for rec in read_metrics(run_dir):
        step = rec["step"]
        if upto is not None and step >= upto:
            continue
        if isinstance(rec.get("loss"), (int, float)):
            train.append((step, float(rec["loss"])))
        if isinstance(rec.get("val_loss"), (int, float)):
            val.append((step, float(rec["val_loss"])))
    return train, val
