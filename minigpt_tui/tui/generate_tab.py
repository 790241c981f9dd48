"""The Generate tab: a prompt, the streamed output, the sampling settings and the model's odds.

Generation runs in a thread worker that checks for cancellation on every token and
pushes token events into a deque; a ~30 Hz timer drains the deque and appends only
the new text to the output (the StreamView never re-renders what it has). Sampling
settings live in one object the sampler re-reads at every token, so the keys take
effect from the next token, even mid-generation. Torch is imported only by the
worker that loads a run.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Input, Static
from textual.worker import get_current_worker

from minigpt_tui.tui.settings import SamplingPrefs
from minigpt_tui.tui.widgets.live_text import LiveText
from minigpt_tui.tui.widgets.stream_view import CONFIDENCE_LEVELS, StreamView, confidence_colour

TOP_K_LADDER = [1, 2, 3, 5, 10, 20, 50, 100, 0]  # 0 (off) is the most permissive
LENGTH_LADDER = [50, 100, 200, 500, 1000, 2000, 5000, 10000]
MAX_TEMPERATURE = 3.0
DRAIN_HZ = 30  # the output takes new tokens 30 times a second...
FAST_DRAIN_HZ = 15  # ...or 15 when they pour in (>= FAST_BATCH per drain: a blur to a reader either way),
FAST_BATCH = 8  # since every repaint costs the UI thread time that the generation worker then waits for
# While tokens stream, the odds panel repaints at most twice a second and the settings
# line (live tokens/s) once: every repaint costs the UI thread time, and the generation
# worker waits for the UI thread (the GIL) meanwhile. Both show the final state at the end.
PANEL_INTERVAL = 0.5
WORDPIECE_JOINS = (" @-@", " @.@", " @,@")  # WikiText's joined hyphens, decimal points and commas

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


@dataclass
class _Generation:
    prompt: str
    stop: threading.Event = field(default_factory=threading.Event)
    buffer: deque = field(default_factory=deque)
    done: bool = False
    error: str = ""
    count: int = 0
    drains: int = 0


def token_label(text: str) -> str:
    """A token as the side panel shows it (whitespace made visible)."""
    shown = text.replace("\n", "⏎").replace("\t", "⇥")
    if shown == " ":
        return "␣"
    if shown.startswith(" ") and len(shown) > 1:
        shown = shown[1:]
    return shown if len(shown) <= 12 else shown[:11] + "…"


def fraction_bar(fraction: float, width: int) -> str:
    """A bar of `width` cells filled to `fraction`, in eighths of a cell."""
    eighths = max(0, min(width * 8, round(fraction * width * 8)))
    full, part = divmod(eighths, 8)
    return "█" * full + (" ▏▎▍▌▋▊▉"[part] if part else "")


class GeneratePane(Vertical):
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

    def __init__(self, prefs: SamplingPrefs | None = None, checkpoint: str = "best",
                 confidence: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.prefs = prefs or SamplingPrefs()
        self.checkpoint_kind = checkpoint if checkpoint in ("best", "last") else "best"
        self._confidence = confidence
        self.sampler: Any = None
        self.info: LoadedInfo | None = None
        self.loading: str = ""  # the run being loaded
        self.gen: _Generation | None = None
        self.last_tps: float | None = None
        self.last_count = 0
        self.last_prompt: str | None = None
        self.stopped = False
        self._pending_join: str | None = None
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
        yield LiveText("", id="alternatives")
        yield LiveText("", id="gen-status")

    def on_mount(self) -> None:
        self.output.confidence = self._confidence
        self._render_header()
        self._render_status()
        self._render_alternatives(None)

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
            from minigpt_tui.core.checkpoint import load_run, read_meta
            from minigpt_tui.core.models import count_parameters
            from minigpt_tui.core.sampling import Sampler, SamplingSettings

            run = load_run(run_dir, checkpoint=kind)
            settings = SamplingSettings(**asdict(self.prefs))
            sampler = Sampler(run.model, run.tokenizer, settings, use_cache=True)
            try:
                params = int(read_meta(run_dir).get("params", 0)) or count_parameters(run.model)
            except Exception:
                params = 0
            info = LoadedInfo(run_dir.name, run_dir, run.checkpoint.stem, run.step, run.config.model.family,
                              params, run.tokenizer.kind == "word")
        except USER_ERRORS as err:
            self._from_thread(self._load_failed, run_dir, str(err))
        except Exception as err:  # a bug or an odd file: say so in one sentence, keep running
            self._from_thread(self._load_failed, run_dir,
                              f"Could not load run {run_dir.name} ({type(err).__name__}: {err}).")
        else:
            self._from_thread(self.use_sampler, sampler, info)

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

    def use_sampler(self, sampler: Any, info: LoadedInfo) -> None:
        """Make `sampler` the one Enter uses (the loader calls this; tests pass a fake)."""
        self.stop_generation()
        self.loading = ""
        self.sampler = sampler
        self.info = info
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
        self._render_header()
        self.refresh_bindings()

    # ---- generating ------------------------------------------------------------------------------------
    @on(Input.Submitted, "#prompt")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.generate(event.value)

    def generate(self, prompt: str) -> None:
        if self.sampler is None:
            what = f"Run {self.loading} is still loading." if self.loading else \
                "No run is loaded; train one (1) or open one (o, or g on the Checkpoints tab)."
            self.app.notify(what, severity="warning")
            return
        self.stop_generation()
        # (core.sampling is already imported by the worker that loaded the run; never import
        # torch on the UI thread just for this)
        sampling = sys.modules.get("minigpt_tui.core.sampling")
        try:
            warning = sampling.prompt_warning(self.sampler.tokenizer, prompt) if sampling else None
        except Exception:
            warning = None
        if warning:
            self.app.notify(warning, severity="warning", title="Prompt")
        self.output.clear()
        self.output.append(prompt, None)
        self.last_prompt = prompt
        self.stopped = False
        self._pending_join = None
        gen = _Generation(prompt)
        self.gen = gen
        self._render_alternatives(None)
        self._render_status()
        self._arm_drain(1 / DRAIN_HZ)
        if self.app.focused is self.output:
            self.refresh_bindings()  # (otherwise the focus change refreshes them: one footer rebuild, not two)
        else:
            self.output.focus()
        # The worker starts once the UI has repainted for the new state (the footer rebuild takes
        # a few tens of ms of the UI thread, which would otherwise hold back the first tokens).
        self.call_after_refresh(self._start_worker, self.sampler, gen)

    def _start_worker(self, sampler: Any, gen: _Generation) -> None:
        if self.gen is gen and not gen.stop.is_set():
            self._generate_worker(sampler, gen)
        elif self.gen is gen:  # stopped before it started
            gen.done = True

    @work(thread=True, exclusive=True, group="generate", exit_on_error=False)
    def _generate_worker(self, sampler: Any, gen: _Generation) -> None:
        buffer, stop = gen.buffer, gen.stop
        try:
            for event in sampler.generate(gen.prompt, cancel=stop.is_set):
                buffer.append(event)
        except Exception as err:  # surfaced as a notification by the drain
            gen.error = f"Generation failed ({type(err).__name__}: {err})."
        finally:
            gen.done = True

    def _arm_drain(self, delay: float) -> None:
        if self._drain_timer is not None:
            self._drain_timer.stop()
        self._drain_timer = self.set_timer(delay, self._drain)

    def _drain(self) -> None:
        """Move what the worker produced into the output (only the new text is appended)."""
        self._drain_timer = None
        gen = self.gen
        if gen is None:
            return
        buffer = gen.buffer
        n = len(buffer)
        if n:
            events = [buffer.popleft() for _ in range(n)]
            pieces = []
            for e in events:
                text = self._display(e.text)
                if text:
                    pieces.append((text, e.prob))
            self.output.append_many(pieces)
            gen.count += n
            gen.drains += 1
            now = time.monotonic()
            if now - self._panel_drawn >= PANEL_INTERVAL:  # nobody reads odds at 30 Hz
                self._panel_drawn = now
                self._render_alternatives(events[-1])
                self._panel_draws += 1
                if self._panel_draws % 2 == 1:
                    self._render_status()
            else:
                self._last_event = events[-1]
        if gen.done and not buffer:
            self._finish(gen)
        elif self.gen is gen:
            self._arm_drain(1 / (FAST_DRAIN_HZ if n >= FAST_BATCH else DRAIN_HZ))

    def _display(self, piece: str) -> str:
        """What a token adds on screen: WikiText's ' @-@ ' joins read back as '-' (as core prettify does)."""
        pending = self._pending_join
        if pending is not None:
            self._pending_join = None
            if piece.startswith(" "):
                return pending[2] + self._display(piece[1:])
            return pending + self._display(piece)
        if piece in WORDPIECE_JOINS and self.info is not None and self.info.word_level:
            self._pending_join = piece
            return ""
        return piece

    def _finish(self, gen: _Generation, announce: bool = True) -> None:
        if self._pending_join:
            self.output.append(self._pending_join, None)
            self._pending_join = None
        if self._drain_timer is not None:
            self._drain_timer.stop()
            self._drain_timer = None
        self.output.settle()
        if self._last_event is not None:
            self._render_alternatives(None, keep=True)
        self.gen = None
        self.last_count = gen.count
        self.stopped = gen.stop.is_set()
        if self.sampler is not None and gen.count:
            self.last_tps = float(getattr(self.sampler, "tokens_per_s", 0.0))
        if gen.error:
            self.app.notify(gen.error, severity="error", title="Generate")
        elif self.stopped and announce:
            self.app.notify(f"Stopped after {gen.count:,} tokens.", timeout=2)
        self._render_status()
        self.refresh_bindings()

    def stop_generation(self) -> None:
        """Stop now and detach from the worker (it sees the flag before its next token)."""
        gen = self.gen
        if gen is None:
            return
        gen.stop.set()
        if self._drain_timer is not None:
            self._drain_timer.stop()
            self._drain_timer = None
        self._drain()  # whatever is already buffered is still shown
        if self.gen is gen:
            self._finish(gen, announce=False)

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
        value = round(min(MAX_TEMPERATURE, max(0.0, self.prefs.temperature + delta)), 1)
        self._set("temperature", value)

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
        self._set("top_p", round(min(1.0, max(0.05, self.prefs.top_p + delta)), 2))

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
                from minigpt_tui.tui.checkpoints_tab import fmt_params

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
            text.append(" │ stopped", "yellow")
        elif self.gen is not None and self.gen.stop.is_set():
            text.append(" │ stopping", "yellow")
        self.query_one("#gen-status", LiveText).update(text)

    def _render_alternatives(self, event, keep: bool = False) -> None:
        if keep:
            event = self._last_event
        self._last_event = event
        panel = self.query_one("#alternatives", LiveText)
        out = Text(no_wrap=True, overflow="ellipsis")
        if event is None:
            out.append("Top alternatives\n", "bold")
            out.append("for the latest token\nappear here.\n", "dim")
        else:
            out.append("Latest ", "bold")
            out.append(token_label(event.text), "bold reverse")
            out.append(f" {event.prob:.0%}\n", "")
            for text, prob in event.top[:5]:
                bar = fraction_bar(prob, 8)
                out.append(f"{token_label(text):<8}", "bold" if text == event.text else "")
                out.append(f"{prob:4.0%} ", "")
                out.append(bar + "\n", confidence_colour(prob) if self.output.confidence else "#4aa8ff")
        if self.output.confidence:
            out.append("\nColour = probability\n", "bold")
            for _, colour, label in CONFIDENCE_LEVELS:
                out.append("■ ", colour)
                out.append(label + "\n", "")
        panel.update(out)
