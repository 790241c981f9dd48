"""Stateful samplers that turn a trained model into a stream of token events.

One protocol for both model families: prime with the prompt (an RNN runs it once
and keeps its hidden state; a Transformer fills its KV cache), then decode one
token at a time, each step feeding only the newest token.

Filters, in this order (the order Hugging Face uses):
  1. repetition penalty: logits of tokens seen in the last `repetition_window`
     tokens are divided by the penalty when positive, multiplied when negative
     (the CTRL rule);
  2. temperature: logits / T; T = 0 means greedy (argmax, no division);
  3. top-k: keep the k most likely tokens;
  4. top-p: keep the smallest set of most likely tokens whose probabilities
     sum to at least p;
  5. min-p: drop tokens whose probability is below min_p x the top probability;
then draw from what is left with the sampler's own seeded torch.Generator.

Settings are read afresh at every token, so a caller (the app) may change them
while a generation runs; they take effect from the next token. A stop string
ends the generation right after the token that completes it (the stop string is
part of the output).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

from minigpt_tui.core.tokenizer import Tokenizer

TOP_ALTERNATIVES = 5


@dataclass
class SamplingSettings:
    temperature: float = 0.8
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1.0: off
    min_p: float = 0.0  # 0.0: off
    repetition_penalty: float = 1.0  # 1.0: off
    repetition_window: int = 64
    seed: int = 1337
    max_new_tokens: int = 500
    stop: list[str] = field(default_factory=list)

    def validate(self) -> None:
        checks = [
            (self.temperature >= 0, "--temperature must be >= 0"),
            (self.top_k >= 0, "--top-k must be >= 0 (0 turns it off)"),
            (0 < self.top_p <= 1, "--top-p must be in (0, 1]"),
            (0 <= self.min_p < 1, "--min-p must be in [0, 1)"),
            (self.repetition_penalty > 0, "--repetition-penalty must be > 0 (1 turns it off)"),
            (self.repetition_window >= 1, "the repetition window must be >= 1"),
            (self.max_new_tokens >= 0, "--max-new-tokens must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message + ".")


@dataclass
class TokenEvent:
    index: int  # 0 for the first generated token
    token_id: int
    text: str  # what this token adds to the output (incremental decoding)
    prob: float  # the model's probability of this token (softmax at temperature 1, unfiltered)
    top: list[tuple[str, float]]  # the model's 5 most likely tokens here, with probabilities

    def to_dict(self) -> dict:
        return {"index": self.index, "token_id": self.token_id, "text": self.text,
                "prob": self.prob, "top": [list(t) for t in self.top]}


def apply_filters(logits: torch.Tensor, s: SamplingSettings, recent: list[int] | None = None) -> torch.Tensor:
    """1-D logits -> filtered logits (removed tokens at -inf). Temperature must be > 0."""
    logits = logits.float().clone()
    if s.repetition_penalty != 1.0 and recent:
        seen = torch.tensor(sorted(set(recent[-s.repetition_window :])), dtype=torch.long, device=logits.device)
        vals = logits[seen]
        logits[seen] = torch.where(vals > 0, vals / s.repetition_penalty, vals * s.repetition_penalty)
    logits = logits / s.temperature
    if s.top_k and s.top_k < logits.numel():
        kth = torch.topk(logits, s.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if s.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        # Drop a token when the tokens before it already reach p (the first token always stays).
        drop_sorted = (cumulative - sorted_logits.softmax(-1)) >= s.top_p
        logits = logits.masked_fill(drop_sorted.scatter(0, order, drop_sorted), float("-inf"))
    if s.min_p > 0.0:
        probs = logits.softmax(-1)
        logits = logits.masked_fill(probs < s.min_p * probs.max(), float("-inf"))
    return logits


def choose(logits: torch.Tensor, s: SamplingSettings, recent: list[int], gen: torch.Generator) -> int:
    """Pick the next token id from 1-D logits under the settings."""
    if s.temperature == 0:
        if s.repetition_penalty != 1.0 and recent:
            logits = apply_filters(logits, replace(s, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0), recent)
        return int(torch.argmax(logits))
    probs = apply_filters(logits, s, recent).softmax(-1)
    return int(torch.multinomial(probs, 1, generator=gen))


def start_ids(tokenizer: Tokenizer) -> list[int]:
    """What an empty prompt starts from: a newline (a fresh line or paragraph), else <unk>."""
    return [tokenizer.stoi.get("\n", 0)]


def prompt_warning(tokenizer: Tokenizer, prompt: str) -> str | None:
    unknown = tokenizer.unknown_symbols(prompt)
    if not unknown:
        return None
    shown = ", ".join(repr(u) for u in unknown[:8]) + (" ..." if len(unknown) > 8 else "")
    what = "characters" if tokenizer.kind == "char" else "words"
    return f"The model's vocabulary lacks the {what} {shown}; they are read as <unk>."


class Sampler:
    """Streams tokens from a model; `use_cache=False` recomputes the context every token."""

    def __init__(self, model: torch.nn.Module, tokenizer: Tokenizer,
                 settings: SamplingSettings | None = None, use_cache: bool = True):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.settings = settings or SamplingSettings()
        self.use_cache = use_cache
        self.device = next(model.parameters()).device
        self.generator = torch.Generator(device="cpu")
        self.tokens_per_s = 0.0  # of the last generation, prompt excluded
        self._reseed_pending = True

    def reseed(self, seed: int | None = None) -> None:
        """Restart the random stream (from `seed`, or the settings' seed) at the next token."""
        if seed is not None:
            self.settings.seed = seed
        self._reseed_pending = True

    def _next_logits(self, ids: list[int], state, fresh: bool):
        """Logits for the token after `ids` (1-D, on CPU) and the new model state."""
        model = self.model
        if self.use_cache:
            feed = ids if fresh else ids[-1:]
            x = torch.tensor([feed], dtype=torch.long, device=self.device)
            logits, state = model(x, state)
        else:
            window = getattr(model, "receptive_field", None)
            ctx = ids[-window:] if window else ids  # an RNN re-reads everything
            logits, _ = model(torch.tensor([ctx], dtype=torch.long, device=self.device), None)
        return logits[0, -1].float().cpu(), state

    def generate(self, prompt: str, cancel: Callable[[], bool] | None = None) -> Iterator[TokenEvent]:
        """Yield one TokenEvent per new token until max_new_tokens, a stop string or cancel()."""
        tok = self.tokenizer
        ids = tok.encode(prompt) or start_ids(tok)
        state = self.model.new_state(1) if self.use_cache else None
        text = ""  # generated so far (for stop strings)
        prev = ids[-1] if prompt else None
        started = time.perf_counter()
        self._reseed_pending = True  # every generation starts from the seed: same settings, same text
        fresh = True
        index = 0
        while index < self.settings.max_new_tokens:
            if cancel is not None and cancel():
                break
            s = self.settings  # re-read: the app may have changed it
            if self._reseed_pending:
                self.generator.manual_seed(s.seed)
                self._reseed_pending = False
            with torch.inference_mode():
                logits, state = self._next_logits(ids, state, fresh)
                fresh = False
                next_id = choose(logits, s, ids, self.generator)
                probs = logits.softmax(-1)
                top_p, top_i = torch.topk(probs, min(TOP_ALTERNATIVES, probs.numel()))
            piece = tok.piece(next_id, prev)
            event = TokenEvent(index, next_id, piece, float(probs[next_id]),
                               [(tok.itos[i], float(p)) for p, i in zip(top_p.tolist(), top_i.tolist())])
            ids.append(next_id)
            prev = next_id
            text += piece
            index += 1
            elapsed = time.perf_counter() - started
            self.tokens_per_s = index / elapsed if elapsed > 0 else 0.0
            yield event
            if s.stop and any(stop and stop in text[-(len(stop) + len(piece)) :] for stop in s.stop):
                break
