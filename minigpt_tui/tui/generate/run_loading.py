"""Loading a run into the Generate tab: RunLoading, a part of GeneratePane.

A run loads in a thread worker, never on the UI thread: it reads the run's small files (config,
tokenizer, meta.json for the parameter count) and its chat template and speakers
(core.generation.chat_template.RunChat), then starts the sampler process
(core.generation.sampler_process), which loads the weights, once, and holds the Sampler and
the ChatSession that keeps the model's state between turns; there, sampling never waits for
the UI thread's share of the GIL. MINIGPT_TUI_SAMPLER=thread (the tests), or a process that
cannot start, loads them in this process instead (torch is imported by the worker). The UI
thread then makes the session the one Enter uses; reloading the run already shown (new
weights from a training still running) keeps the conversation, which the new weights read
once at the next reply. Shares the pane's state (see GeneratePane.__init__).
"""
from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Callable

from textual import work
from textual.worker import get_current_worker

from minigpt_tui.core.generation.session import SamplerControls, Session

log = logging.getLogger(__name__)


def sampler_in_process() -> bool:
    """Whether replies are sampled in a child process (the default) rather than a thread here."""
    return os.environ.get("MINIGPT_TUI_SAMPLER", "process").strip().lower() != "thread"


@dataclass
class LoadedInfo:
    """What the header says about the loaded run."""

    run_name: str
    run_dir: Path | None
    checkpoint: str  # "best" | "last"
    step: int
    family: str = ""
    params: int = 0
    word_level: bool = False


class RunLoading:
    """Load, use and unload a run (mixed into GeneratePane, a textual widget)."""

    def load(self, run_dir: Path, checkpoint: str | None = None) -> None:
        """Load a run's checkpoint in a thread worker (torch is imported there)."""
        self.stop_generation()
        self.offered = True  # a run was asked for: opening the tab offers no other (run_choice)
        if checkpoint:
            self.checkpoint_kind = checkpoint
        self.loading = Path(run_dir).name
        self._render_header()
        self._load_worker(Path(run_dir), self.checkpoint_kind)

    @work(thread=True, exclusive=True, group="load-run", exit_on_error=False)
    def _load_worker(self, run_dir: Path, kind: str) -> None:
        """The weights are loaded once: by the sampler process, or (thread mode, or a process that
        cannot start) here. What the header shows comes from the run's small files."""
        from minigpt_tui.core.errors import USER_ERRORS

        try:
            from minigpt_tui.core.errors import RunError
            from minigpt_tui.core.generation.chat_template import RunChat
            from minigpt_tui.core.runs.run_dir import RunDir

            run = RunDir(run_dir)
            config, tokenizer = run.config(), run.tokenizer()
            run.require_checkpoint(kind)  # (before a process starts for nothing)
            try:
                params = run.read_meta().params  # (counting them would need the weights here)
            except RunError:  # an unreadable meta.json: the checkpoints can still be used
                params = 0
            run_chat = RunChat(run_dir, tokenizer)  # the template; speakers from the corpus's start
            if run_chat.instruct:
                tokenizer.end_ids  # noqa: B018 (renders the chat template once: Jinja loads here, not on the UI thread)
            # Settings objects of their own (use_sampler copies the tab's settings into them).
            process = self._start_sampler_process(run_dir, kind, tokenizer) if sampler_in_process() else None
            if process is not None:
                if get_current_worker().is_cancelled:  # a later load replaced this one meanwhile
                    process.close()
                    return
                sampler, session, loaded = process.sampler, process.session, process.loaded
            else:
                sampler, session, loaded = self._load_here(run, kind)
            info = LoadedInfo(run_dir.name, run_dir, loaded.checkpoint.stem, loaded.step, config.model.family,
                              params or loaded.params, tokenizer.kind == "word")
        except USER_ERRORS as err:
            self._from_thread(self._load_failed, run_dir, str(err))
        except Exception as err:  # a bug or an odd file: say so in one sentence, keep running
            log.exception("loading run %s (%s checkpoint)", run_dir, kind)
            self._from_thread(self._load_failed, run_dir,
                              f"Could not load run {run_dir.name} ({type(err).__name__}: {err}).")
        else:
            # The prompt check comes with the run: core.generation.sampling imports torch, which
            # the UI thread never imports itself.
            from minigpt_tui.core.generation.sampling import prompt_warning

            if not self._from_thread(self.use_sampler, sampler, info, partial(prompt_warning, tokenizer),
                                     session, run_chat, loaded.mtime_ns):
                close_session(session)

    @staticmethod
    def _load_here(run: Any, kind: str) -> tuple[Any, Any, Any]:
        """The run's weights in this process: its Sampler, a ChatSession on it, what was loaded."""
        from minigpt_tui.core.generation.chat_session import ChatSession
        from minigpt_tui.core.generation.sampler_process import Loaded
        from minigpt_tui.core.generation.sampling import Sampler

        loaded = run.load(checkpoint=kind)
        sampler = Sampler(loaded.model, loaded.tokenizer, use_cache=True, banned=loaded.unseen)
        return sampler, ChatSession(sampler), Loaded.of(loaded)

    def _start_sampler_process(self, run_dir: Path, kind: str, tokenizer: Any) -> Any:
        """The run's sampler process, or None (logged) if one cannot start here: the reply is
        then sampled by a thread of the app, slower while the screen is busy but the same text."""
        from minigpt_tui.core.generation.sampler_process import SamplerProcess, SamplerProcessError

        try:
            return SamplerProcess(run_dir, kind, tokenizer)
        except SamplerProcessError:
            log.exception("starting the sampler process for %s; sampling in a thread instead", run_dir)
            return None

    def _from_thread(self, callback, *args, **kwargs) -> bool:
        """Hand a loaded run to the UI thread, unless a later load replaced this one or the app
        closed; whether it was handed over."""
        if get_current_worker().is_cancelled:
            return False
        try:
            self.app.call_from_thread(callback, *args, **kwargs)
        except RuntimeError:  # the app is no longer running
            return False
        return True

    def _load_failed(self, run_dir: Path, message: str) -> None:
        self.loading = ""
        self.app.notify(message, severity="error", title="Generate")
        self._render_header()

    def use_sampler(self, sampler: SamplerControls, info: LoadedInfo,
                    prompt_check: Callable[[str], str | None], session: Session, run_chat: Any = None,
                    mtime: int | None = None) -> None:
        """Make `sampler` the one Enter uses, through `session` (a ChatSession on it, or the sampler
        process's proxy of one), which keeps the model's state between turns (the loader calls
        this). Reloading the run shown keeps the conversation."""
        from minigpt_tui.core.generation.chat import Chat
        from minigpt_tui.core.generation.chat_template import ChatTemplate

        self.stop_generation()
        same_run = self.chat is not None and self.info is not None and info.run_dir is not None \
            and self.info.run_dir == info.run_dir
        self.loading = ""
        if self.session is not None and self.session is not session:
            close_session(self.session)
        self.sampler = sampler
        self.session = session
        self.run_chat = run_chat
        template = run_chat.template if run_chat is not None else ChatTemplate()
        if same_run:
            self.chat = Chat(self.session, template, self.chat.conversation)  # read again at the next reply
        else:
            self.autosave()
            self.chat = Chat(self.session, template, run=info.run_name)
            self.turn_pieces.clear()
        self.info = info
        self.loaded_mtime, self.newer_step = mtime, None
        self._prompt_check = prompt_check
        # The sampler's settings follow the tab's: copy them over once, then keep them in step.
        for name, value in asdict(self.prefs).items():
            if hasattr(sampler.settings, name):
                setattr(sampler.settings, name, value)
        self.render_transcript()
        self._render_header()
        self._render_status()
        self._render_turn_bar()
        self.refresh_bindings()
        self.post_message(self.SettingsChanged())

    def run_moved(self, old_dir: Path, new_dir: Path) -> None:
        """The loaded run's folder was renamed: follow it, so saves and reloads go to the new one."""
        info = self.info
        if info is None or info.run_dir is None or Path(info.run_dir) != Path(old_dir):
            return
        self.info = replace(info, run_name=Path(new_dir).name, run_dir=Path(new_dir))
        if self.run_chat is not None:
            self.run_chat.run_dir = Path(new_dir)
        self._render_header()

    def unload(self) -> None:
        self.stop_generation()
        close_session(self.session)
        self.sampler = self.session = self.chat = self.run_chat = None
        self.info = None
        self._prompt_check = None
        self.output.clear()
        self._render_header()
        self._render_turn_bar()
        self.refresh_bindings()


def close_session(session: Session | None) -> None:
    """End a session's sampler process, if it has one (a thread's session has nothing to end)."""
    close = getattr(session, "close", None)
    if close is not None:
        try:
            close()
        except Exception:  # the process may be gone already; nothing is lost
            log.exception("closing the sampler process")
