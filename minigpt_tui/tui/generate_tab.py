"""The Generate tab: a prompt, the streamed output, the sampling settings and the model's odds.

Generation streams into the output through tui.generation (a thread worker, a ~30 Hz
drain; the StreamView never re-renders what it has). Sampling settings live in one
object the sampler re-reads at every token, so the keys take effect from the next
token, even mid-generation. Torch is imported only by the worker that loads a run.
"""

from __future__ import annotations

import logging
import random
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Input, Static
from textual.worker import get_current_worker

from minigpt_tui.core.sampling_settings import SamplingSettings
from minigpt_tui.core.tokenizer import WikiTextJoins
from minigpt_tui.tui.generation import Generation, GenerationStream
from minigpt_tui.tui.palette import colour
from minigpt_tui.tui.widgets.live_text import LiveText
from minigpt_tui.tui.widgets.odds_panel import OddsPanel
from minigpt_tui.tui.widgets.stream_view import StreamView

log = logging.getLogger(__name__)

TOP_K_LADDER = [1, 2, 3, 5, 10, 20, 50, 100, 0]  # 0 (off) is the most permissive
LENGTH_LADDER = [50, 100, 200, 500, 1000, 2000, 5000, 10000]

TEMP = Binding.Group("Temp", compact=True)
TOPK = Binding.Group("top-k", compact=True)
TOPP = Binding.Group("top-p", compact=True)
LENGTH = Binding.Group("Length", compact=True)


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


class GeneratePane(GenerationStream, Vertical):
    """Prompt, streaming output, settings line and the top alternatives of the latest token."""

    BINDINGS = [
        Binding("escape", "stop", "Stop", id="generate.stop", tooltip="Stop generating at once"),
        Binding("escape", "leave_prompt", "Leave prompt", id="generate.leave_prompt",
                tooltip="In the prompt (when not generating): move to the output so single keys act"),
        Binding("i", "focus_prompt", "Prompt", id="generate.prompt", tooltip="Back to the prompt"),
        Binding("left_square_bracket", "temperature(-0.1)", "Temp -0.1", key_display="[", group=TEMP,
                id="generate.temp_down", tooltip="Lower the temperature by 0.1 (0 is greedy)"),
        Binding("right_square_bracket", "temperature(0.1)", "Temp +0.1", key_display="]", group=TEMP,
                id="generate.temp_up", tooltip="Raise the temperature by 0.1"),
        Binding("r", "regenerate", "Regen", id="generate.regenerate",
                tooltip="Generate again from the same prompt (same seed and settings: same text)"),
        Binding("s", "reseed", "Seed", id="generate.reseed", show=False,
                tooltip="Draw a new random seed (applies from the next token)"),
        Binding("v", "confidence", "Colour", id="generate.confidence",
                tooltip="Colour each token by the model's probability for it"),
        Binding("c", "copy", "Copy", id="generate.copy", show=False, tooltip="Copy the output to the clipboard"),
        Binding("x", "clear", "Clear", id="generate.clear", show=False, tooltip="Clear the output"),
        Binding("k", "top_k(-1)", "top-k down", key_display="k", group=TOPK, show=False,
                id="generate.top_k_down", tooltip="Keep fewer candidate tokens (top-k: 100 ... 1)"),
        Binding("K", "top_k(1)", "top-k up", key_display="K", group=TOPK, show=False,
                id="generate.top_k_up", tooltip="Keep more candidate tokens (up to off)"),
        Binding("p", "top_p(-0.05)", "top-p down", key_display="p", group=TOPP, show=False,
                id="generate.top_p_down", tooltip="Lower top-p by 0.05 (nucleus sampling)"),
        Binding("P", "top_p(0.05)", "top-p up", key_display="P", group=TOPP, show=False,
                id="generate.top_p_up", tooltip="Raise top-p by 0.05 (1.00 is off)"),
        Binding("minus", "length(-1)", "shorter", key_display="-", group=LENGTH, show=False,
                id="generate.shorter", tooltip="Generate fewer tokens"),
        Binding("equals_sign,plus", "length(1)", "longer", key_display="+", group=LENGTH, show=False,
                id="generate.longer", tooltip="Generate more tokens"),
        Binding("b", "toggle_checkpoint", "Best/last", show=False, id="generate.checkpoint",
                tooltip="Switch between the best and the last checkpoint"),
        Binding("l", "reload", "Reload", show=False, id="generate.reload",
                tooltip="Reload the checkpoint (picks up what a running training wrote since)"),
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
        self.sampler: Any = None
        self.info: LoadedInfo | None = None
        self.loading: str = ""  # the run being loaded
        self.gen: Generation | None = None
        self.last_tps: float | None = None
        self.last_count = 0
        self.last_prompt: str | None = None
        self.stopped = False
        self._joins = WikiTextJoins()  # word-level runs: WikiText's joins, a marker held across tokens
        # Set by the loader with the run (see use_sampler): names the prompt's unknown symbols.
        self._prompt_check: Callable[[str], str | None] | None = None
        self._last_event = None
        self._panel_drawn = 0.0
        self._panel_draws = 0
        self._drain_timer = None  # a one-shot timer, re-armed after each drain (see _drain)

    def compose(self) -> ComposeResult:
        yield Static("", id="gen-header")
        yield Input(placeholder="Type a prompt, Enter generates (empty: start afresh)", id="prompt",
                    select_on_focus=False)
        # A grid rather than nested containers: fewer layers to paint under the streaming text.
        yield StreamView(id="output")
        yield OddsPanel(id="alternatives")
        yield LiveText("", id="gen-status")

    def on_mount(self) -> None:
        self.output.confidence = self._confidence
        self._render_header()
        self._render_status()
        self._render_alternatives(None)
        self.app.theme_changed_signal.subscribe(self, self._theme_changed)

    def _theme_changed(self, _theme) -> None:
        self._render_status()  # (drawn in theme colours; the widgets redraw themselves)

    def on_unmount(self) -> None:
        if self.gen is not None:
            self.gen.stop.set()

    @property
    def output(self) -> StreamView:
        return self.query_one("#output", StreamView)

    @property
    def generating(self) -> bool:
        return self.gen is not None

    # ---- loading a run --------------------------------------------------------------------------
    def load(self, run_dir: Path, checkpoint: str | None = None) -> None:
        """Load a run's checkpoint in a thread worker (torch is imported there)."""
        self.stop_generation()
        if checkpoint:
            self.checkpoint_kind = checkpoint
        self.loading = Path(run_dir).name
        self._render_header()
        self._load_worker(Path(run_dir), self.checkpoint_kind)

    @work(thread=True, exclusive=True, group="load-run", exit_on_error=False)
    def _load_worker(self, run_dir: Path, kind: str) -> None:
        from minigpt_tui.core.errors import USER_ERRORS

        try:
            from minigpt_tui.core.runs import RunDir, RunError
            from minigpt_tui.core.models import count_parameters
            from minigpt_tui.core.sampling import Sampler, SamplingSettings

            run = RunDir(run_dir).load(checkpoint=kind)
            settings = SamplingSettings(**asdict(self.prefs))
            sampler = Sampler(run.model, run.tokenizer, settings, use_cache=True)
            try:
                params = RunDir(run_dir).read_meta().params or count_parameters(run.model)
            except RunError:  # meta.json damaged: the weights are what counts here
                params = count_parameters(run.model)
            info = LoadedInfo(run_dir.name, run_dir, run.checkpoint.stem, run.step, run.config.model.family,
                              params, run.tokenizer.kind == "word")
        except USER_ERRORS as err:
            self._from_thread(self._load_failed, run_dir, str(err))
        except Exception as err:  # a bug or an odd file: say so in one sentence, keep running
            log.exception("loading run %s (%s checkpoint)", run_dir, kind)
            self._from_thread(self._load_failed, run_dir,
                              f"Could not load run {run_dir.name} ({type(err).__name__}: {err}).")
        else:
            # The prompt check comes with the run: core.sampling imports torch, which the UI
            # thread never imports itself.
            from minigpt_tui.core.sampling import prompt_warning

            self._from_thread(self.use_sampler, sampler, info, partial(prompt_warning, run.tokenizer))

    def _from_thread(self, callback, *args) -> None:
        """Hand a loaded run to the UI thread, unless a later load replaced this one or the app closed."""
        if get_current_worker().is_cancelled:
            return
        try:
            self.app.call_from_thread(callback, *args)
        except RuntimeError:  # the app is no longer running
            pass

    def _load_failed(self, run_dir: Path, message: str) -> None:
        self.loading = ""
        self.app.notify(message, severity="error", title="Generate")
        self._render_header()

    def use_sampler(self, sampler: Any, info: LoadedInfo,
                    prompt_check: Callable[[str], str | None] | None = None) -> None:
        """Make `sampler` the one Enter uses (the loader calls this; tests pass a fake).
        `prompt_check(prompt)` is a warning about the prompt (unknown symbols) or None."""
        self.stop_generation()
        self.loading = ""
        self.sampler = sampler
        self.info = info
        self._prompt_check = prompt_check
        # The sampler's settings follow the tab's: copy them over once, then keep them in step.
        for name, value in asdict(self.prefs).items():
            if hasattr(sampler.settings, name):
                setattr(sampler.settings, name, value)
        self._render_header()
        self._render_status()
        self.refresh_bindings()
        self.post_message(GeneratePane.SettingsChanged())

    def unload(self) -> None:
        self.stop_generation()
        self.sampler = None
        self.info = None
        self._prompt_check = None
        self._render_header()
        self.refresh_bindings()

    # ---- generating ------------------------------------------------------------------------------------
    @on(Input.Submitted, "#prompt")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.generate(event.value)

    # ---- actions -----------------------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        prompt_focused = self.app.focused is self.query_one("#prompt")
        if action == "stop":
            if self.generating:
                return True
            return False if prompt_focused else None
        if action == "leave_prompt":
            return prompt_focused and not self.generating
        if action in ("regenerate",):
            return True if self.sampler is not None and self.last_prompt is not None else None
        if action in ("copy", "clear"):
            return True if self.output.text else None
        if action in ("toggle_checkpoint", "reload"):
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
        self.query_one("#prompt", Input).focus()

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

    def action_regenerate(self) -> None:
        if self.last_prompt is None:
            self.app.notify("Nothing to regenerate yet; type a prompt and press Enter.", severity="warning")
            return
        self.generate(self.last_prompt)

    def action_clear(self) -> None:
        self.stop_generation()
        self.output.clear()
        self._render_alternatives(None)
        self.refresh_bindings()

    def action_copy(self) -> None:
        text = self.output.text
        if not text:
            self.app.notify("Nothing to copy yet.", severity="warning")
            return
        self.app.copy_to_clipboard(text)
        self.app.notify(f"Copied {len(text):,} characters to the clipboard.", timeout=2)

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

    def action_pick_run(self) -> None:
        self.app.action_pick_run()

    def focus_default(self) -> None:
        self.query_one("#prompt", Input).focus()

    # ---- display -----------------------------------------------------------------------------------------------
    @property
    def confidence(self) -> bool:
        return self._confidence

    def _render_header(self) -> None:
        header = self.query_one("#gen-header", Static)
        if self.loading:
            header.update(Text.assemble(("Loading ", "dim"), (self.loading, "bold"), (f" ({self.checkpoint_kind})…", "dim")))
        elif self.info is None:
            header.update(Text("No run loaded. Train one on the Train tab (1), or open one (o).", style="dim"))
        else:
            i = self.info
            text = Text(no_wrap=True, overflow="ellipsis")
            text.append(i.run_name, "bold")
            text.append(f"  {i.checkpoint} @ step {i.step:,}", "")
            if i.family:
                text.append(f"  {i.family}", "dim")
            if i.params:
                from minigpt_tui.tui.formatting import fmt_params

                text.append(f" {fmt_params(i.params)}", "dim")
            header.update(text)

    def status_text(self) -> str:
        """The settings line (tests read it)."""
        p = self.prefs
        parts = [f"temp {p.temperature:.1f}" + (" (greedy)" if p.temperature == 0 else ""),
                 f"top-k {p.top_k or 'off'}",
                 f"top-p {p.top_p:.2f}" if p.top_p < 1 else "top-p off",
                 f"seed {p.seed}", f"max {p.max_new_tokens:,}"]
        if self.gen is not None:
            tps = float(getattr(self.sampler, "tokens_per_s", 0.0) or 0.0)
            parts.append(f"{tps:,.0f} tok/s…" if tps else "…")
        elif self.last_tps is not None:
            parts.append(f"{self.last_tps:,.0f} tok/s")
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
