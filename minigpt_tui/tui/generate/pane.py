"""The Generate tab: a conversation with the loaded model, its sampling settings and its odds.

Each Enter adds a turn: the user's words, then the model's reply streaming beneath them.
The model reads the whole conversation through a chat session that keeps its state
between turns (core.generation.chat), so a turn costs the same however long the conversation is.
Replies stream through tui.generate.streaming (a thread worker, a ~30 Hz drain); the transcript,
versions of replies, undo and the conversation files are tui.generate.chat_actions; loading a run
is tui.generate.run_loading. Sampling
settings live in one object the sampler re-reads at every token, so the keys take effect
from the next token, even mid-reply. Torch is imported only by the worker that loads a run.

Focus rule: single keys act when the focus is not in the prompt; the prompt takes every
printable key. So no hint on screen names a single key while the prompt has the focus
without saying "Esc, then": the hints are redrawn when the focus moves.
"""

from __future__ import annotations

import logging
import random
import threading
from typing import Any, Callable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Static

from minigpt_tui.core.data.tokenizer import WikiTextJoins
from minigpt_tui.core.generation.conversation import MODE_NAMES
from minigpt_tui.core.generation.sampling_settings import SamplingSettings
from minigpt_tui.core.generation.session import SamplerControls, Session
from minigpt_tui.tui.generate.chat_actions import ChatActions
from minigpt_tui.tui.generate.run_choice import RunChoice
from minigpt_tui.tui.generate.run_loading import LoadedInfo, RunLoading, close_session  # noqa: F401 (LoadedInfo: the tab's API)
from minigpt_tui.tui.generate.streaming import Generation, GenerationStream
from minigpt_tui.tui.palette import colour
from minigpt_tui.tui.widgets.live_text import LiveText
from minigpt_tui.tui.widgets.odds_panel import OddsPanel
from minigpt_tui.tui.widgets.prompt_area import PromptArea, PromptHistory
from minigpt_tui.tui.widgets.stream_view import StreamView

log = logging.getLogger(__name__)

TOP_K_LADDER = [1, 2, 3, 5, 10, 20, 50, 100, 0]  # 0 (off) is the most permissive
LENGTH_LADDER = [50, 100, 200, 500, 1000, 2000, 5000, 10000]
NEWER_CHECK_S = 3.0  # how often the loaded run's checkpoint file is looked at (one stat)

TEMP = Binding.Group("Temp", compact=True)
TOPK = Binding.Group("top-k", compact=True)
TOPP = Binding.Group("top-p", compact=True)
LENGTH = Binding.Group("Length", compact=True)
VERSION = Binding.Group("Version", compact=True)


class GeneratePane(RunLoading, RunChoice, GenerationStream, ChatActions, Vertical):
    """Transcript, prompt, settings line and the top alternatives of the latest token."""

    BINDINGS = [
        Binding("escape", "stop", "Stop", id="generate.stop", tooltip="Stop the reply at once"),
        Binding("escape", "leave_prompt", "Leave prompt", id="generate.leave_prompt",
                tooltip="In the prompt (when not generating): move to the transcript so single keys act"),
        Binding("i", "focus_prompt", "Prompt", id="generate.prompt", tooltip="Back to the prompt, to type the next turn"),
        # (Enter too, away from the prompt; a key of its own so that the footer never shows "i" while
        # the prompt has the focus: there "i" is a letter)
        Binding("enter", "focus_prompt", "Prompt", show=False, id="generate.prompt_enter",
                tooltip="Away from the prompt: back to it"),
        Binding("left_square_bracket", "temperature(-0.1)", "Temp -0.1", key_display="[", group=TEMP,
                id="generate.temp_down", tooltip="Lower the temperature by 0.1 (0 is greedy)"),
        Binding("right_square_bracket", "temperature(0.1)", "Temp +0.1", key_display="]", group=TEMP,
                id="generate.temp_up", tooltip="Raise the temperature by 0.1"),
        Binding("r", "regenerate", "Regen", id="generate.regenerate",
                tooltip="A new version of the last reply (the old one is kept)"),
        Binding("left", "flip(-1)", "Prev version", key_display="←", group=VERSION, id="generate.prev_version",
                tooltip="Show the previous version of the last reply"),
        Binding("right", "flip(1)", "Next version", key_display="→", group=VERSION, id="generate.next_version",
                tooltip="Show the next version of the last reply"),
        Binding("u", "undo", "Undo", id="generate.undo",
                tooltip="Remove the last turn and its reply (your words go back into the prompt)"),
        Binding("n", "new_chat", "New chat", id="generate.new_chat",
                tooltip="Start a new conversation (the current one is saved)"),
        Binding("m", "mode", "Mode", id="generate.mode",
                tooltip="Switch between co-write (one document), dialogue (two speakers) and instruct "
                        "(the model's chat template)"),
        Binding("t", "template", "Template", show=False, id="generate.template",
                tooltip="Edit the dialogue template (speakers, tags, where a reply ends), or instruct's system prompt"),
        Binding("h", "saved", "Saved chats", show=False, id="generate.saved",
                tooltip="Reopen a saved conversation of this run"),
        Binding("e", "export", "Export", show=False, id="generate.export",
                tooltip="Export the conversation as Markdown or plain text"),
        Binding("s", "reseed", "Seed", id="generate.reseed", show=False,
                tooltip="Draw a new random seed (applies from the next token)"),
        Binding("a", "allow_unk", "Allow <unk>", id="generate.allow_unk", show=False,
                tooltip="Let the model write tokens its training text never held (a char model's <unk>); "
                        "off by default (applies from the next token)"),
        Binding("v", "confidence", "Colour", id="generate.confidence", show=False,
                tooltip="Colour each token by the model's probability for it"),
        Binding("c", "copy", "Copy", id="generate.copy", show=False, tooltip="Copy the conversation to the clipboard"),
        Binding("k", "top_k(-1)", "top-k down", key_display="k", group=TOPK, show=False,
                id="generate.top_k_down", tooltip="Keep fewer candidate tokens (top-k: 100 ... 1)"),
        Binding("K", "top_k(1)", "top-k up", key_display="K", group=TOPK, show=False,
                id="generate.top_k_up", tooltip="Keep more candidate tokens (up to off)"),
        Binding("p", "top_p(-0.05)", "top-p down", key_display="p", group=TOPP, show=False,
                id="generate.top_p_down", tooltip="Lower top-p by 0.05 (nucleus sampling)"),
        Binding("P", "top_p(0.05)", "top-p up", key_display="P", group=TOPP, show=False,
                id="generate.top_p_up", tooltip="Raise top-p by 0.05 (1.00 is off)"),
        Binding("minus", "length(-1)", "shorter", key_display="-", group=LENGTH, show=False,
                id="generate.shorter", tooltip="Generate fewer tokens per reply"),
        Binding("equals_sign,plus", "length(1)", "longer", key_display="+", group=LENGTH, show=False,
                id="generate.longer", tooltip="Generate more tokens per reply"),
        Binding("b", "toggle_checkpoint", "Best/last", show=False, id="generate.checkpoint",
                tooltip="Switch between the best and the last checkpoint"),
        Binding("l", "reload", "Reload", show=False, id="generate.reload",
                tooltip="Reload the checkpoint (picks up what a running training wrote; the conversation stays)"),
        Binding("o", "pick_run", "Open run", show=False, id="generate.open", tooltip="Choose another run"),
    ]

    class SettingsChanged(Message):
        """Sampling settings, the loaded run or the colour mode changed (the app saves them)."""

    def __init__(self, prefs: SamplingSettings | None = None, checkpoint: str = "best",
                 confidence: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.prefs = prefs or SamplingSettings()
        self.checkpoint_kind = checkpoint if checkpoint in ("best", "last") else "best"
        self._confidence = confidence
        self.sampler: SamplerControls | None = None
        self.session: Session | None = None  # a ChatSession, or its proxy in the sampler process
        self.chat: Any = None  # core.generation.chat.Chat: the conversation shown
        self.run_chat: Any = None  # core.generation.chat_template.RunChat: the run's template and speakers
        self.info: LoadedInfo | None = None
        self.loading: str = ""  # the run being loaded
        self.gen: Generation | None = None
        self.turn_pieces: dict[int, list] = {}  # reply turn id -> its pieces as drawn (confidence colours)
        self.last_tps: float | None = None
        self.last_count = 0
        self.last_unk = 0  # <unk> tokens in the last reply
        self.last_prompt: str | None = None
        self.stopped = False
        self.loaded_mtime: int | None = None  # of the checkpoint file loaded
        self.newer_step: int | None = None  # set when the run wrote a newer checkpoint since
        self._chat_lock = threading.Lock()  # one reply at a time touches the model state
        self._joins = WikiTextJoins()  # word-level runs: WikiText's joins, a marker held across tokens
        # Set by the loader with the run (see use_sampler): names the prompt's unknown symbols.
        self._prompt_check: Callable[[str], str | None] | None = None
        self._last_event = None
        self._panel_drawn = 0.0
        self._panel_draws = 0
        self._drain_timer = None  # a one-shot timer, re-armed after each drain (see _drain)

    def compose(self) -> ComposeResult:
        yield Static("", id="gen-header")
        # A grid rather than nested containers: fewer layers to paint under the streaming text.
        yield StreamView(id="output")
        yield OddsPanel(id="alternatives")
        yield LiveText("", id="gen-turn")
        yield PromptArea(history=PromptHistory(), id="prompt",
                         placeholder="Type a turn; Enter sends, ctrl+j a new line, ↑ earlier prompts")
        yield LiveText("", id="gen-status")

    def on_mount(self) -> None:
        self.output.confidence = self._confidence
        self._render_header()
        self._render_status()
        self._render_turn_bar()
        self._render_alternatives(None)
        self.app.theme_changed_signal.subscribe(self, self._theme_changed)
        self.set_interval(NEWER_CHECK_S, self.check_newer)

    def _theme_changed(self, _theme) -> None:
        self._render_status()  # (drawn in theme colours; the widgets redraw themselves)

    def on_unmount(self) -> None:
        if self.gen is not None:
            self.gen.stop.set()
        close_session(self.session)

    def on_descendant_focus(self, _event) -> None:
        self._focus_moved()

    def on_descendant_blur(self, _event) -> None:
        self._focus_moved()

    def _focus_moved(self) -> None:
        """Hints that name single keys depend on whether the prompt has the focus (the focus rule)."""
        self._render_header()
        self._render_turn_bar()

    @property
    def output(self) -> StreamView:
        return self.query_one("#output", StreamView)

    @property
    def prompt(self) -> PromptArea:
        return self.query_one("#prompt", PromptArea)

    @property
    def prompt_focused(self) -> bool:
        try:
            return self.app.focused is self.prompt
        except Exception:  # (not mounted yet or any more)
            return False

    @property
    def generating(self) -> bool:
        return self.gen is not None

    def keys(self, keys: str) -> str:
        """How to press `keys` from where the focus is: "Esc, then o" while the prompt takes keys."""
        return f"Esc, then {keys}" if self.prompt_focused else keys

    def no_run_hint(self) -> str:
        if self.prompt_focused:
            return "No run is loaded: Esc, then 1 to train one or o to open one."
        return "No run is loaded: 1 to train one, o to open one (or g on the Checkpoints tab)."

    # ---- sending -------------------------------------------------------------------------------------
    @on(PromptArea.Submitted, "#prompt")
    def _submitted(self, event: PromptArea.Submitted) -> None:
        event.stop()
        if self.sampler is not None and self.chat is not None:
            history = self.prompt.prompt_history
            error = history.add(event.value) if history is not None else None
            if error:
                self.app.notify(error, severity="warning")
            self.prompt.value = ""
        self.generate(event.value)

    # ---- actions -----------------------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        prompt_focused = self.prompt_focused
        has_chat = self.chat is not None
        if action == "stop":
            if self.generating:
                return True
            return False if prompt_focused else None
        if action == "leave_prompt":
            return prompt_focused and not self.generating
        if action == "regenerate":
            return True if has_chat and self.chat.last_reply is not None else None
        if action == "flip":
            return True if has_chat and self.chat.siblings()[1] > 1 else False
        if action in ("undo", "copy", "export", "new_chat"):
            return True if has_chat and self.chat.conversation.turns else None
        if action in ("mode", "template"):
            return True if has_chat else None
        if action in ("toggle_checkpoint", "reload", "saved"):
            return True if self.info is not None and self.info.run_dir is not None else None
        if action == "focus_prompt":
            return None if prompt_focused else True
        return True

    def action_stop(self) -> None:
        """Esc: the worker stops before its next token; the drain shows what it made and finishes."""
        if self.gen is not None:
            self.gen.stop.set()
            self._render_status()

    def action_leave_prompt(self) -> None:
        self.output.focus()

    def action_focus_prompt(self) -> None:
        self.prompt.focus()

    def _set(self, name: str, value) -> None:
        setattr(self.prefs, name, value)
        if self.sampler is not None:
            setattr(self.sampler.settings, name, value)
        self._render_status()
        self.post_message(GeneratePane.SettingsChanged())

    def action_temperature(self, delta: float) -> None:
        self._set("temperature", self.prefs.stepped("temperature", delta))  # within the settings' limits

    def action_top_k(self, direction: int) -> None:
        k = self.prefs.top_k
        ladder = TOP_K_LADDER
        if k in ladder:
            i = ladder.index(k)
        else:  # a hand-set value: step to its neighbour on the ladder
            i = next((j for j, v in enumerate(ladder) if v and v >= k), len(ladder) - 1)
            if direction > 0 and ladder[i] > k:
                i -= 1
        i = min(len(ladder) - 1, max(0, i + direction))
        self._set("top_k", ladder[i])

    def action_top_p(self, delta: float) -> None:
        self._set("top_p", self.prefs.stepped("top_p", delta))

    def action_length(self, direction: int) -> None:
        n = self.prefs.max_new_tokens
        if direction > 0:
            value = next((v for v in LENGTH_LADDER if v > n), LENGTH_LADDER[-1])
        else:
            value = next((v for v in reversed(LENGTH_LADDER) if v < n), LENGTH_LADDER[0])
        self._set("max_new_tokens", value)

    def action_reseed(self) -> None:
        seed = random.randrange(1, 2**31)
        self.prefs.seed = seed
        if self.sampler is not None:
            self.sampler.reseed(seed)
        self._render_status()
        self.post_message(GeneratePane.SettingsChanged())

    def action_allow_unk(self) -> None:
        self._set("allow_unk", not self.prefs.allow_unk)

    def action_regenerate(self) -> None:
        self.regenerate()

    def action_confidence(self) -> None:
        self._confidence = not self._confidence
        self.output.confidence = self._confidence
        self._render_status()
        self._render_alternatives(None, keep=True)
        self.post_message(GeneratePane.SettingsChanged())

    def action_toggle_checkpoint(self) -> None:
        if self.info is None or self.info.run_dir is None:
            return
        self.load(self.info.run_dir, "last" if self.checkpoint_kind == "best" else "best")

    def action_reload(self) -> None:
        if self.info is not None and self.info.run_dir is not None:
            self.load(self.info.run_dir)

    def focus_default(self) -> None:
        self.prompt.focus()

    # ---- display -----------------------------------------------------------------------------------------------
    @property
    def confidence(self) -> bool:
        return self._confidence

    def _render_header(self) -> None:
        header = self.query_one("#gen-header", Static)
        if self.loading:
            header.update(Text.assemble(("Loading ", "dim"), (self.loading, "bold"), (f" ({self.checkpoint_kind})…", "dim")))
        elif self.info is None:
            header.update(Text(self.no_run_hint(), style="dim"))
        else:
            i = self.info
            text = Text(no_wrap=True, overflow="ellipsis")
            if self.newer_step is not None:  # first: it is news, and the line may be cut on the right
                step = f" (step {self.newer_step:,})" if self.newer_step else ""
                text.append(f"Newer checkpoint{step}: {self.keys('l')} reloads  ", colour(self.app, "warn"))
            text.append(i.run_name, "bold")
            text.append(f"  {i.checkpoint} @ step {i.step:,}", "")
            if i.family:
                text.append(f"  {i.family}", "dim")
            if i.params:
                from minigpt_tui.tui.formatting import fmt_params

                text.append(f" {fmt_params(i.params)}", "dim")
            header.update(text)

    def status_text(self) -> str:
        """The settings line (tests read it): the mode first, then the sampling settings."""
        p = self.prefs
        mode = self.chat.template.mode if self.chat is not None else "cowrite"
        parts = [MODE_NAMES.get(mode, mode),
                 f"temp {p.temperature:.1f}" + (" (greedy)" if p.temperature == 0 else ""),
                 f"top-k {p.top_k or 'off'}",
                 f"top-p {p.top_p:.2f}" if p.top_p < 1 else "top-p off",
                 f"seed {p.seed}", f"max {p.max_new_tokens:,}"]
        if p.allow_unk:
            parts.append("<unk> allowed")
        if self.gen is not None:
            tps = float(getattr(self.session, "tokens_per_s", 0.0) or 0.0)
            parts.append(f"{tps:,.0f} tok/s…" if tps else "…")
        elif self.last_tps is not None:
            parts.append(f"{self.last_tps:,.0f} tok/s")
            if self.last_unk:  # (a word model whose text held <unk>, or allowed: how often it wrote one)
                parts.append(f"{self.last_unk:,} <unk>")
        return " │ ".join(parts)

    def _render_status(self) -> None:
        text = Text(self.status_text(), no_wrap=True, overflow="ellipsis")
        if self.gen is None and self.stopped:
            text.append(" │ stopped", colour(self.app, "warn"))
        elif self.gen is not None and self.gen.stop.is_set():
            text.append(" │ stopping", colour(self.app, "warn"))
        self.query_one("#gen-status", LiveText).update(text)

    def _render_alternatives(self, event, keep: bool = False) -> None:
        if keep:
            event = self._last_event
        self._last_event = event
        self.query_one("#alternatives", OddsPanel).show(event, self.output.confidence)
