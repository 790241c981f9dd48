"""The full-screen app: Train, Checkpoints and Generate tabs, and over them a bar that shows
every run being trained (live.py; hidden while none is).

Start-up imports no torch (the first frame comes fast); a model is loaded and sampled in a
process of its own (tui/generate/run_loading.py), training runs in a child process, and
anything that reads many files (listing runs) in a thread worker. The help screen and the
command palette are in commands.py, the settings file in settings.py.
"""

from __future__ import annotations

import logging
from functools import wraps
from pathlib import Path

from textual import on
from textual.app import App, ComposeResult, ScreenStackError
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Footer, TabbedContent, TabPane

from minigpt_tui.core.runs import events as ev
from minigpt_tui.tui.checkpoints.pane import CheckpointsPane
from minigpt_tui.tui.commands import NOT_IN_PALETTE, TAB_IDS, TAB_TITLES, HelpAndCommands  # noqa: F401 (tests)
from minigpt_tui.tui.debug_log import setup_debug_log
from minigpt_tui.tui.generate.pane import GeneratePane
from minigpt_tui.tui.live import LiveRuns, TrainingBar
from minigpt_tui.tui.screens import ConfirmScreen
from minigpt_tui.tui.settings import AppSettings, SettingsKeeper
from minigpt_tui.tui.train.pane import TrainPane

log = logging.getLogger(__name__)

TABS = Binding.Group("Tabs", compact=False)


def closing_safe(handler):
    """A message can arrive after the widgets it would touch are gone (the app is closing)."""

    @wraps(handler)
    def wrapper(self, *args, **kwargs):
        try:
            return handler(self, *args, **kwargs)
        except (NoMatches, ScreenStackError):
            if self.is_running and self.screen_stack and self.screen.is_mounted:
                raise

    return wrapper


class MainScreen(Screen):
    """The app's screen; lists the tab keys first in the Footer so they never scroll out of sight."""

    # Shown (and listed in the palette) only while another process trains a run; the bar says "w: watch".
    BINDINGS = [Binding("w", "app.watch_run", "Watch", id="app.watch",
                        tooltip="Watch a run another process trains (headless, torchrun) in the Train tab")]

    @property
    def active_bindings(self):
        bindings = super().active_bindings
        first = {k: v for k, v in bindings.items() if v.binding.group is TABS}
        return {**first, **{k: v for k, v in bindings.items() if k not in first}}


class MiniGPTApp(LiveRuns, HelpAndCommands, SettingsKeeper, App[int]):
    """Train a small language model, browse its checkpoints, play with it."""

    TITLE = "minigpt-tui"
    CSS_PATH = Path(__file__).parent / "app.tcss"
    # The screen gets the class -narrow below 80 columns; app.tcss stacks panes there.
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (80, "-normal")]
    BINDINGS = [
        Binding("1", "show_tab('train')", "Train", group=TABS, id="app.tab.train",
                tooltip="Show the Train tab"),
        Binding("2", "show_tab('checkpoints')", "Checkpoints", group=TABS, id="app.tab.checkpoints",
                tooltip="Show the Checkpoints tab"),
        Binding("3", "show_tab('generate')", "Generate", group=TABS, id="app.tab.generate",
                tooltip="Show the Generate tab"),
        Binding("question_mark", "help", "Help", id="app.help", tooltip="Every key of the app"),
        Binding("f1", "help", "Help", id="app.help_f1", tooltip="Every key of the app"),
        Binding("ctrl+q", "quit", "Quit", id="app.quit", priority=True, show=False,
                tooltip="Quit (asks first while a run is training)"),
    ]

    def __init__(self, run: Path | None = None, settings: AppSettings | None = None,
                 save: bool = True) -> None:
        super().__init__()
        self.keep_settings(settings, save)
        self.start_run = Path(run) if run else None

    # ---- layout -----------------------------------------------------------------------------
    def get_default_screen(self) -> Screen:
        return MainScreen(id="main")

    def compose(self) -> ComposeResult:
        initial = "generate" if self.start_run else "train"
        s = self.settings
        self._panes = {
            "train": TrainPane(recipe=s.recipe, id="train-pane"),
            "checkpoints": CheckpointsPane(id="checkpoints-pane"),
            "generate": GeneratePane(prefs=s.sampling, checkpoint=s.checkpoint, confidence=s.confidence,
                                     id="generate-pane"),
        }
        yield TrainingBar(id="training-bar")
        with TabbedContent(initial=initial, id="tabs"):
            for tab_id, key in zip(TAB_IDS, "123"):
                with TabPane(f"{key} {TAB_TITLES[tab_id]}", id=tab_id):
                    yield self._panes[tab_id]
        yield Footer(compact=True)

    def on_mount(self) -> None:
        if self.settings.keymap:
            try:
                self.set_keymap(self.settings.keymap)
            except (ValueError, TypeError, KeyError):  # (settings keeps only str values; belt and braces)
                log.exception("keymap %r not applied", self.settings.keymap)
                self.notify("The [keymap] in config.toml could not be applied; using the default keys.",
                            severity="warning")
        if self.settings_warning:
            self.notify(self.settings_warning, severity="warning")
        self._update_width(self.size.width)
        self.checkpoints.refresh_runs()
        self.start_live()
        if self.start_run is not None:
            self.generate.load(self.start_run)
        self.call_after_refresh(self._focus_active)

    def on_resize(self, event) -> None:
        self._update_width(event.size.width)

    def _update_width(self, width: int) -> None:
        """The stylesheet is written for 80 columns; from 100 the side panels get wider.
        (A class change restyles the whole screen, so it is only made when it changes.)"""
        wide = width >= 100
        if self.screen.has_class("-wide") != wide:
            self.screen.set_class(wide, "-wide")
            self.generate.set_class(wide, "-wide")

    @property
    def tabs(self) -> TabbedContent:
        return self.query_one("#tabs", TabbedContent)

    # The panes live as long as the app; holding them (rather than querying) keeps the
    # handlers of messages that arrive while the app shuts down from failing.
    @property
    def train(self) -> TrainPane:
        return self._panes["train"]

    @property
    def checkpoints(self) -> CheckpointsPane:
        return self._panes["checkpoints"]

    @property
    def generate(self) -> GeneratePane:
        return self._panes["generate"]

    def pane(self, tab: str):
        return {"train": self.train, "checkpoints": self.checkpoints, "generate": self.generate}[tab]

    # ---- tabs -----------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "watch_run":
            return bool(self.watchable_runs())
        if action == "show_tab" and parameters:
            try:
                return None if self.tabs.active == parameters[0] else True
            except NoMatches:  # asked before the tabs are composed or after they are gone
                return True
        return True

    def action_show_tab(self, tab: str) -> None:
        if tab not in TAB_IDS:
            return
        if self.tabs.active == tab:
            self._focus_active(force=True)
        else:
            self.tabs.active = tab

    @on(TabbedContent.TabActivated)
    @closing_safe
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self._focus_active()
        tab = self.tabs.active
        if tab == "checkpoints":
            self.checkpoints.refresh_runs()
        elif tab == "generate":
            self.generate.offer_run(self.settings.last_run)
        elif tab == "train":
            self.train.schedule_standby()  # a trainer that has done its imports before `s`
        self.refresh_bindings()

    def _focus_active(self, force: bool = False) -> None:
        """Focus the active tab's main widget, unless the focus is already inside that tab."""
        try:
            pane = self._panes.get(self.tabs.active)  # None while no tab is active yet
            focused = self.focused
            inside = focused is not None and (focused is pane or pane in focused.ancestors)
            if pane is not None and (force or not inside):
                pane.focus_default()
        except NoMatches:  # (called after a refresh) the app closed meanwhile: nothing to focus
            pass

    # ---- cross-tab events -------------------------------------------------------------------------
    @on(TrainPane.RunEvent)
    @closing_safe
    def _train_event(self, message: TrainPane.RunEvent) -> None:
        event = message.event
        if isinstance(event, (ev.Started, ev.Done)):
            self.checkpoints.refresh_runs()
        elif isinstance(event, ev.CheckpointSaved):
            if event.kind == "last":
                self.checkpoints.refresh_runs()
            self.generate.checkpoint_written()
            if self.tabs.active == "generate":
                self.generate.offer_run(self.settings.last_run)

    @on(TrainPane.Ended)
    @closing_safe
    def _train_ended(self, message: TrainPane.Ended) -> None:
        self.checkpoints.refresh_runs()
        self.refresh_bindings()
        # Its trainer lets go of the run as it exits: look again soon, or the bar would show the
        # run as trained by "another process" until the next look.
        self.training_bar.poll()
        self.set_timer(0.5, self.training_bar.poll)

    @on(TrainPane.RecipeChosen)
    @closing_safe
    def _recipe_chosen(self, message: TrainPane.RecipeChosen) -> None:
        self.settings.recipe = message.recipe
        self.schedule_save()

    @on(CheckpointsPane.OpenRun)
    @closing_safe
    def _open_run(self, message: CheckpointsPane.OpenRun) -> None:
        if message.action == "generate":
            self.generate.load(message.run_dir)
            self.tabs.active = "generate"
        elif message.action == "resume":
            self.resume(message.run_dir)
        elif message.action == "from":
            self.start_from(message.run_dir)

    def resume(self, run_dir: Path) -> None:
        from minigpt_tui.core.errors import RunError
        from minigpt_tui.core.runs.run_dir import RunDir

        if self.train.training:
            self.notify("A run is already training; stop it first.", severity="warning")
            return
        try:
            run = RunDir(run_dir)
            config, step = run.config(), run.read_meta().step
        except RunError as err:
            self.notify(str(err), severity="error")
            return
        self.tabs.active = "train"
        self.train.prepare_resume(run_dir, config, step)
        self.notify(f"Ready to resume {Path(run_dir).name} from step {step:,}: press s "
                    "(raise max_steps to train longer).", timeout=6)

    def start_from(self, run_dir: Path) -> None:
        """The Train tab, set up for a new run that starts from this run's weights (--from)."""
        from minigpt_tui.core.errors import ConfigError, RunError
        from minigpt_tui.core.runs.run_dir import RunDir
        from minigpt_tui.core.training.start_from import start_from_config

        if self.train.training:
            self.notify("A run is already training; stop it first.", severity="warning")
            return
        try:
            run = RunDir(run_dir)
            config, step = start_from_config(run, None, []), run.read_meta().step
        except (RunError, ConfigError) as err:
            self.notify(str(err), severity="error")
            return
        self.tabs.active = "train"
        self.train.prepare_start_from(run_dir, config, step)
        self.notify(f"Ready to fine-tune from {Path(run_dir).name} (step {step:,}): press s to train a new run "
                    "from its weights.", timeout=6)

    @on(CheckpointsPane.RunDeleted)
    @closing_safe
    def _run_deleted(self, message: CheckpointsPane.RunDeleted) -> None:
        gen = self.generate
        if gen.info is not None and gen.info.run_dir is not None and \
                Path(gen.info.run_dir).resolve() == Path(message.run_dir).resolve():
            gen.unload()
        if self.settings.last_run == Path(message.run_dir).name:
            self.settings.last_run = ""
            self.schedule_save()

    @on(CheckpointsPane.RunRenamed)
    @closing_safe
    def _run_renamed(self, message: CheckpointsPane.RunRenamed) -> None:
        """Whatever held the old folder follows it: Generate, the remembered last run, a resume form."""
        old, new = Path(message.old_dir), Path(message.new_dir)
        self.generate.run_moved(old, new)
        if self.settings.last_run == old.name:
            self.settings.last_run = new.name
            self.schedule_save()
        self.train.run_moved(old, new)

    @on(GeneratePane.SettingsChanged)
    @closing_safe
    def _generate_settings(self, message: GeneratePane.SettingsChanged) -> None:
        gen = self.generate  # (reads plain attributes only: this may arrive while the app closes)
        self.settings.sampling = gen.prefs
        self.settings.checkpoint = gen.checkpoint_kind
        self.settings.confidence = gen.confidence
        if gen.info is not None and gen.info.run_dir is not None:
            self.settings.last_run = gen.info.run_name
        self.schedule_save()

    def is_training(self) -> bool:
        return self.train.training

    def run_in_use(self, run_dir: Path) -> bool:
        """Is this run being trained right now (by this app, or by any process holding its lock)?"""
        from minigpt_tui.core.runs.run_dir import RunDir

        if RunDir(run_dir).is_training():
            return True
        state = self.train.state
        if not self.train.training:
            return False
        try:
            if state.run_dir and Path(state.run_dir).resolve() == Path(run_dir).resolve():
                return True
            resume = self.train.resume_dir
            return resume is not None and resume.resolve() == Path(run_dir).resolve()
        except OSError:
            return False

    # ---- quit ------------------------------------------------------------------------------------------
    async def action_quit(self) -> None:
        if self.train.training:
            def answer(yes: bool | None) -> None:
                if yes:
                    self.run_worker(self._stop_and_exit(), group="quit", exit_on_error=False)

            self.push_screen(ConfirmScreen(
                "A run is training. Stop it (the trainer saves a checkpoint first) and quit?",
                yes="Stop and quit", no="Keep training"), answer)
            return
        self.exit(0)

    async def _stop_and_exit(self) -> None:
        self.notify("Stopping the trainer; it saves a checkpoint first…", timeout=30)
        await self.train.stop_and_wait()
        self.exit(0)


def run_app(run: str | None) -> int:
    """`minigpt-tui [--run RUN]`: the full-screen app (a bad run name is an error before it opens)."""
    run_dir = None
    if run:
        from minigpt_tui.core.runs.run_dir import RunDir

        run_dir = RunDir.resolve(run).path  # RunError: the CLI prints its sentence
    setup_debug_log()  # (tests build MiniGPTApp directly and keep their logs to themselves)
    app = MiniGPTApp(run=run_dir)
    from minigpt_tui.tui.served import watch_server

    watch_server(app)  # (served as a web page: ends with its server)
    result = app.run()
    return int(result or app.return_code or 0)
