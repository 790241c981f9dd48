"""Stateful samplers that turn a trained model into a stream of token events.

One protocol for every model family (core.models.LanguageModel): prime with
the prompt (an RNN runs it once and keeps its hidden state; a Transformer fills
its KV cache; a CNN its layers' queues of past inputs), then decode one token at
a time, each step feeding only the newest token. `use_cache=False` is the naive
path kept for comparison and teaching: every token re-runs the model over the
whole context that can still matter (for the Transformer and the CNN, the last
`model.receptive_field` tokens, which gives exactly the cached logits; for an
RNN, its last RNN_CONTEXT_WINDOWS x context_length tokens).

An RNN is primed with at most RNN_CONTEXT_WINDOWS x context_length prompt tokens:
it was trained from a zero state on windows of context_length tokens, so text
further back only costs time (a 100 KB pasted prompt would take half a minute).

Filters, in this order (the order Hugging Face uses):
  1. repetition penalty: logits of tokens seen in the last `repetition_window`
     tokens (prompt included) are divided by the penalty when positive,
     multiplied when negative (the CTRL rule);
  2. temperature: logits / T; T = 0 means greedy (argmax, no division; any
     T below 1e-5 counts as 0);
  3. top-k: keep the k most likely tokens (ties at the k-th value stay);
  4. top-p: keep the smallest set of most likely tokens whose probabilities
     (after top-k, renormalised) sum to at least p;
  5. min-p: drop tokens whose probability is below min_p x the top probability;
then draw from what is left with the Gumbel-max trick, from noise made in blocks
by the sampler's own seeded torch.Generator (GumbelNoise), so the same settings
and seed give the same text on the same machine.

Settings are read afresh at every token, so a caller (the app) may change them
while a generation runs; they take effect from the next token. A stop string
ends the generation right after the token that completes it (the stop string is
part of the output; only generated text is searched, not the prompt). Cancel
with the `cancel` callable (checked before every token) or by closing the
iterator.

Speed: a token costs one small forward step, so what counts is the number of
torch calls, not the flops. The models' `decode_step` is written for that, the
picking here skips filters that are off (and, with no filter on, is one call of
the C kernels of core/native.py where a compiler built them), and each step runs under
torch.inference_mode on one CPU thread for small models (at batch 1 their
matrix-vector products are too small to split; on a busy machine a second
thread mostly waits). The thread count is restored between tokens, so the
caller's torch settings are untouched while it holds an event.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import torch

from minigpt_tui.core import native
from minigpt_tui.core.data.tokenizer import StreamDecoder, Tokenizer
from minigpt_tui.core.generation.sampling_settings import (
    SamplingSettings,  # torch-free, for the app; also importable from here
)
from minigpt_tui.core.models import LanguageModel, unwrap

TOP_ALTERNATIVES = 5
RNN_CONTEXT_WINDOWS = 8  # an RNN reads at most this many context_length windows of prompt
GREEDY_BELOW = 1e-5  # temperatures below this are treated as 0 (greedy)
SINGLE_THREAD_BELOW = 20_000_000  # parameters: smaller models sample on one CPU thread


@dataclass
class TokenEvent:
    index: int  # 0 for the first generated token
    token_id: int
    text: str  # what this token adds to the output (incremental decoding: "" while a character is incomplete)
    prob: float  # the model's probability of this token (softmax at temperature 1, unfiltered)
    top: list[tuple[str, float]]  # the model's 5 most likely tokens here, with probabilities

    def to_dict(self) -> dict:
        return {"index": self.index, "token_id": self.token_id, "text": self.text,
                "prob": self.prob, "top": [list(t) for t in self.top]}


def apply_filters(logits: torch.Tensor, s: SamplingSettings, recent: list[int] | None = None) -> torch.Tensor:
    """1-D logits -> filtered logits (removed tokens at -inf), in the documented order.

    The temperature must be > 0 here (greedy never divides). The input is not modified.
    """
    logits = logits.float()
    if s.repetition_penalty != 1.0 and recent:
        logits = penalize(logits, recent[-s.repetition_window :], s.repetition_penalty)
    logits = logits / s.temperature  # a new tensor: the masks below never touch the caller's
    if s.top_k and s.top_k < logits.numel():
        kth = torch.topk(logits, s.top_k).values[-1]
        logits.masked_fill_(logits < kth, float("-inf"))
    if s.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        sorted_probs = sorted_logits.softmax(-1)
        # Drop a token when the tokens before it already reach p (the first token always stays).
        drop_sorted = (sorted_probs.cumsum(-1) - sorted_probs) >= s.top_p
        logits.masked_fill_(drop_sorted.scatter(0, order, drop_sorted), float("-inf"))
    if s.min_p > 0.0:
        probs = logits.softmax(-1)
        logits.masked_fill_(probs < s.min_p * probs.max(), float("-inf"))
    return logits


def penalize(logits: torch.Tensor, recent: list[int], penalty: float) -> torch.Tensor:
    """CTRL-style repetition penalty on a copy of 1-D logits for the ids in `recent`."""
    logits = logits.clone()
    seen = torch.tensor(sorted(set(recent)), dtype=torch.long, device=logits.device)
    vals = logits[seen]
    logits[seen] = torch.where(vals > 0, vals / penalty, vals * penalty)
    return logits


def is_greedy(s: SamplingSettings) -> bool:
    return s.temperature < GREEDY_BELOW


def no_filters(s: SamplingSettings, recent: list[int]) -> bool:
    """Whether the settings leave the logits as they are (before the temperature): no repetition
    penalty at work, no top-k, top-p or min-p."""
    return (s.repetition_penalty == 1.0 or not recent) and not s.top_k and s.top_p >= 1.0 and s.min_p <= 0


def choose(logits: torch.Tensor, s: SamplingSettings, recent: list[int], noise: GumbelNoise) -> int:
    """Pick the next token id from 1-D logits under the settings, with noise's next row."""
    if is_greedy(s):
        if s.repetition_penalty != 1.0 and recent:
            logits = penalize(logits, recent[-s.repetition_window :], s.repetition_penalty)
        return int(torch.argmax(logits))
    if no_filters(s, recent):
        return draw(logits, s.temperature, noise.row(logits.numel()))
    return draw(apply_filters(logits, s, recent), 1.0, noise.row(logits.numel()))  # (already divided by T)


def draw(logits: torch.Tensor, temperature: float, gumbel: torch.Tensor) -> int:
    """One token from 1-D logits at a temperature, given a row of Gumbel(0, 1) noise g:
    argmax(logits / T + g) is token i with probability softmax(logits / T)_i (the Gumbel-max
    trick), and so is argmax(logits + T g), one call. Filtered tokens (-inf) are never drawn:
    the noise is finite (GumbelNoise)."""
    return int(torch.add(logits, gumbel, alpha=temperature).argmax())


class GumbelNoise:
    """The sampler's randomness: rows of Gumbel(0, 1) noise, one per drawn token, made BLOCK values
    at a time from a seeded generator. A draw is then three torch calls (draw's add, argmax and
    item) where drawing from probabilities, with its own random numbers, took seven: at one
    token per step of a small model, 16 µs a token. Each drawn token takes the next row (a greedy
    one takes none), so the same seed and settings give the same text."""

    BLOCK = 1 << 16  # values per block: 1,008 rows of a character vocabulary, one of a 65K one

    def __init__(self):
        self.generator = torch.Generator(device="cpu")
        self._rows: tuple[torch.Tensor, ...] = ()
        self._next = 0

    def seed(self, seed: int) -> None:
        """Start again from `seed` (the rows made from the old one are dropped)."""
        self.generator.manual_seed(seed)
        self._rows, self._next = (), 0

    def row(self, size: int) -> torch.Tensor:
        """The next row of `size` values."""
        i = self._next
        if i >= len(self._rows) or self._rows[i].numel() != size:
            e = torch.empty(max(1, self.BLOCK // size), size).exponential_(generator=self.generator)
            # -log E is Gumbel(0, 1) for E ~ Exp(1); E is kept above 0 so that no value is infinite
            self._rows, i = e.clamp_min_(torch.finfo(e.dtype).tiny).log_().neg_().unbind(0), 0
        self._next = i + 1
        return self._rows[i]


def start_ids(tokenizer: Tokenizer) -> list[int]:
    """What an empty prompt starts from: a newline (a fresh line or paragraph), else <unk>; an
    imported model's own start (its BOS or end-of-text token)."""
    if tokenizer.kind == "hf":
        return tokenizer.start_ids()  # type: ignore[attr-defined]
    return [tokenizer.stoi.get("\n", 0)]


def prompt_ids(tokenizer: Tokenizer, prompt: str) -> list[int]:
    """A prompt's tokens, after the BOS its model wants (none for our own models)."""
    encoded = tokenizer.encode(prompt)
    return [*tokenizer.bos_ids, *encoded] if encoded else []


def prompt_warning(tokenizer: Tokenizer, prompt: str) -> str | None:
    """One line naming the prompt's symbols the vocabulary lacks, or None."""
    unknown = tokenizer.unknown_symbols(prompt)
    if not unknown:
        return None
    shown = ", ".join(repr(u) for u in unknown[:8]) + (" ..." if len(unknown) > 8 else "")
    what = "characters" if tokenizer.kind == "char" else "words"
    return f"The model's vocabulary lacks the {what} {shown}; they are read as <unk>."


@dataclass
class GenerationStats:
    prompt_tokens: int = 0  # tokens the model read before the first new one
    new_tokens: int = 0
    prefill_s: float = 0.0  # reading the prompt and computing the first token's logits
    decode_s: float = 0.0  # every later token (the sampler's own time, not the caller's)
    finish_reason: str = ""  # "length", "stop", "cancelled" or "closed" (the caller stopped iterating)

    @property
    def tokens_per_s(self) -> float:
        elapsed = self.prefill_s + self.decode_s
        return self.new_tokens / elapsed if elapsed > 0 else 0.0


class ReplyText:
    """A reply's text as its tokens arrive, shared by Sampler.generate and ChatSession.reply:
    each token's display piece (held back while it ends inside a character; the rest flushed
    into the last event, so the events' text is exactly decode() of the new ids), the stop
    string it completes, and the compute time into `stats`."""

    def __init__(self, decoder: StreamDecoder, stats: GenerationStats, end_ids: frozenset[int] = frozenset()):
        self.decoder, self.stats, self.text, self.end_ids = decoder, stats, "", end_ids

    def event(self, token_id: int, prob: float, top: list, elapsed: float, stops, last: bool) -> tuple[TokenEvent, bool]:
        """The event of the next token, and whether it completed one of `stops`. `last`: the
        length ends the reply with this token."""
        stats = self.stats
        if stats.new_tokens == 0:
            stats.prefill_s = elapsed
        else:
            stats.decode_s += elapsed
        stats.new_tokens += 1
        if token_id in self.end_ids:  # the model's own end of text (or turn): ends it, shows nothing
            return TokenEvent(stats.new_tokens - 1, token_id, self.decoder.flush(), prob, top), True
        piece = self.decoder.feed(token_id)
        before = len(self.text)
        self.text += piece
        # A stop string completed by this token ends inside `piece`.
        stopped = any(stop and self.text.find(stop, max(0, before - len(stop) + 1)) >= 0 for stop in stops)
        if stopped or last:
            piece += self.decoder.flush()
        return TokenEvent(stats.new_tokens - 1, token_id, piece, prob, top), stopped


class Computing:
    """Sampler.compute()'s context: inference mode and `threads` torch threads (0: as they are)
    while a token is computed, the caller's thread count back afterwards. A class rather than a
    @contextmanager generator: entered twice per token, it made a token of a small Transformer
    1.05x faster (16 alternations of 1,000 tokens, IQR 1.03-1.09; CPU with native bf16 and AMX)."""

    __slots__ = ("threads", "saved", "mode")

    def __init__(self, threads: int):
        self.threads = threads

    def __enter__(self) -> None:
        self.saved = torch.get_num_threads()
        if self.threads and self.threads != self.saved:
            torch.set_num_threads(self.threads)
        self.mode = torch.inference_mode()
        self.mode.__enter__()

    def __exit__(self, *exc) -> None:
        try:
            self.mode.__exit__(*exc)
        finally:
            if torch.get_num_threads() != self.saved:
                torch.set_num_threads(self.saved)


class Sampler:
    """Streams tokens from a model; `use_cache=False` recomputes the context every token.

    `threads`: torch CPU threads while computing a token; 0 (the default) picks
    one thread for models under SINGLE_THREAD_BELOW parameters and leaves torch's
    setting alone for bigger ones.
    """

    def __init__(self, model: LanguageModel, tokenizer: Tokenizer,
                 settings: SamplingSettings | None = None, use_cache: bool = True, threads: int = 0,
                 banned: Iterable[int] = ()):
        # (unwrap: a model still inside a DDP or torch.compile wrapper is sampled as itself,
        # whose methods, such as decode_step, are called directly)
        self.model: LanguageModel = unwrap(model).eval()
        self.tokenizer = tokenizer
        self.settings = settings or SamplingSettings()
        self.use_cache = use_cache
        self.device = next(self.model.parameters()).device
        self.noise = GumbelNoise()
        small = sum(p.numel() for p in self.model.parameters()) < SINGLE_THREAD_BELOW
        self.threads = threads or (1 if small and self.device.type == "cpu" else 0)
        self.stats = GenerationStats()
        self._reseed_pending = True
        # Tokens the run never saw in training (its <unk>, say): their logits are -inf before
        # anything else, so they are never picked and show no probability (unless the settings'
        # allow_unk, read at every token like the rest, says otherwise).
        banned = sorted(set(banned))
        self.banned = torch.tensor(banned, dtype=torch.long) if banned else None
        lib = native.library() if native.enabled() else None
        self.native = native.NativePick(lib, TOP_ALTERNATIVES) if lib is not None else None

    @property
    def tokens_per_s(self) -> float:
        """Of the last (or current) generation: new tokens per second of the sampler's time."""
        return self.stats.tokens_per_s

    def reseed(self, seed: int | None = None) -> None:
        """Restart the random stream (from `seed`, or the settings' seed) at the next token."""
        if seed is not None:
            self.settings.seed = seed
        self._reseed_pending = True

    # ---- the model side -----------------------------------------------------------------------
    def _prompt_context(self, ids: list[int]) -> list[int]:
        """The trailing prompt tokens the model reads (see the module docstring)."""
        window = self.model.receptive_field
        if window is None:  # an RNN: everything could matter, but it was trained on short windows
            window = RNN_CONTEXT_WINDOWS * self.model.config.context_length
        return ids[-window:]

    def _context(self, ids: list[int]) -> list[int]:
        """What the uncached path re-reads: a Transformer's or CNN's receptive field, or everything an
        RNN has read since its (cropped) prompt, which gives exactly the stateful logits."""
        window = self.model.receptive_field
        return ids[-window:] if window is not None else ids

    def _prefill(self, ids: list[int]):
        """Logits (V,) for the token after `ids`, and the model state to continue from."""
        model = self.model
        if not self.use_cache:
            return self._recompute(ids), None
        state = model.new_state()
        logits, state = model(torch.tensor([self._context(ids)], dtype=torch.long, device=self.device), state,
                              last=True)
        return logits[0, -1], state

    def _recompute(self, ids: list[int]) -> torch.Tensor:
        logits, _ = self.model(torch.tensor([self._context(ids)], dtype=torch.long, device=self.device), None,
                               last=True)
        return logits[0, -1]

    def _step(self, ids: list[int], state):
        """Logits (V,) after feeding the newest token of `ids`, and the new state."""
        if not self.use_cache:
            return self._recompute(ids), None
        logits, state = self.model.decode_step(ids[-1], state)
        return logits[0], state

    # ---- picking a token (shared with core.generation.chat's conversations) -------------------------------
    def compute(self) -> Computing:
        """Run one token's torch work: inference mode, on the sampler's thread count, which is
        put back afterwards (the caller's torch settings are untouched while it holds an event)."""
        return Computing(self.threads)

    def pick(self, logits: torch.Tensor, recent: list[int]) -> tuple[int, float, list[tuple[str, float]]]:
        """The next token under the current settings from logits (V,): its id, its probability
        (softmax at temperature 1, unfiltered) and the top alternatives. Call inside compute()."""
        s = self.settings
        if self._reseed_pending:
            self.noise.seed(s.seed)
            self._reseed_pending = False
        if logits.dtype != torch.float32:
            logits = logits.float()
        if logits.device.type != "cpu":
            logits = logits.cpu()
        if self.banned is not None and not s.allow_unk:
            logits = logits.index_fill(0, self.banned, float("-inf"))
        itos = self.tokenizer.itos
        if self.native is not None and no_filters(s, recent) and logits.is_contiguous():
            # one call where a C compiler built the kernels (core/native.py): the same draw, the same
            # probabilities to float rounding
            greedy = is_greedy(s)
            next_id, prob, top_ids, top_probs = self.native(
                logits, None if greedy else self.noise.row(logits.numel()), s.temperature, TOP_ALTERNATIVES)
            return next_id, prob, [(itos[i], p) for i, p in zip(top_ids, top_probs)]
        probs = logits.softmax(-1)
        next_id = choose(logits, s, recent, self.noise)
        top_p, top_i = torch.topk(probs, min(TOP_ALTERNATIVES, probs.numel()))
        top_ids, top_probs = top_i.tolist(), top_p.tolist()
        prob = top_probs[top_ids.index(next_id)] if next_id in top_ids else float(probs[next_id])
        return next_id, prob, [(itos[i], p) for i, p in zip(top_ids, top_probs)]

    # ---- the loop -------------------------------------------------------------------------------
    def generate(self, prompt: str, cancel: Callable[[], bool] | None = None) -> Iterator[TokenEvent]:
        """Yield one TokenEvent per new token until max_new_tokens, a stop string or cancel()."""
        tok = self.tokenizer
        encoded = prompt_ids(tok, prompt)
        ids = self._prompt_context(encoded or start_ids(tok))
        # The start token is context, not text. Text is shown as it becomes whole (a byte-level
        # token may end inside a character); a generation that ends itself (length, stop) flushes
        # the rest into its last event, so the events' text is exactly decode() of the new ids.
        decoder = tok.stream_decoder(ids[-1] if encoded else None)
        stats = self.stats = GenerationStats(prompt_tokens=len(ids))
        self._reseed_pending = True  # every generation starts from the seed: same settings, same text
        reply = ReplyText(decoder, stats, tok.end_ids)
        state = None
        logits = None
        try:
            while stats.new_tokens < self.settings.max_new_tokens:
                if cancel is not None and cancel():
                    stats.finish_reason = "cancelled"
                    return
                s = self.settings  # re-read: the app may have changed it
                started = time.perf_counter()
                with self.compute():
                    if logits is None:
                        logits, state = self._prefill(ids)
                    else:
                        logits, state = self._step(ids, state)
                    next_id, prob, top = self.pick(logits, ids)
                ids.append(next_id)
                event, stopped = reply.event(next_id, prob, top, time.perf_counter() - started, s.stop,
                                             last=stats.new_tokens + 1 >= s.max_new_tokens)
                if stopped:
                    stats.finish_reason = "stop"
                    yield event
                    return
                yield event
            stats.finish_reason = "length"
        except GeneratorExit:
            stats.finish_reason = stats.finish_reason or "closed"
            raise
