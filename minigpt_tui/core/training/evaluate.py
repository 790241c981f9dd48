"""Full-pass evaluation: every token of a split predicted exactly once, as papers count it.

The trainer's validation loss is an estimate from a few random windows; this module
scores a whole token stream, the number to compare with published results.

* Transformer: windows of context_length tokens, each starting `stride` tokens after the
  one before (the "sliding window" evaluation). The first window scores all its targets;
  every later window scores only its last `stride` targets, so each token is predicted
  once, with at least context_length - stride tokens before it (half a window at the
  default stride = context_length // 2). Windows are stacked into batches.
* RNN (GRU/LSTM): the hidden state is carried from window to window (non-overlapping
  windows of context_length, detached), so a token sees everything before it. To batch,
  the stream is cut into contiguous lanes, one state per lane; a lane after the first
  first reads the context_length tokens before its span without scoring them, so its
  first scored token has a window of context too. One lane is the exact sequential pass.
* CNN: like an RNN, its state (each layer's queue of past inputs) carried from window to
  window, which gives exactly the logits of one pass over the whole text: every token is
  predicted from its whole receptive field (R tokens, what the sampler gives it too), not
  from a window. A lane after the first reads the R - 1 tokens before its span, which makes
  the lanes exact as well: any batch size gives the single pass's figure, to float rounding.
  (Windows like the Transformer's would cut the receptive field at the window's start.)

Batching changes only the order of floating-point sums: the result equals scoring one
window (or one lane) at a time, which the tests check by doing exactly that.

`load_split` turns a run's data (or other text) into a split's tokens, mapped from the
token cache as training maps them, and its character count.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch
import torch.nn.functional as F

from minigpt_tui.core.config import RunConfig
from minigpt_tui.core.data import catalogue
from minigpt_tui.core.data.corpus import load_corpus
from minigpt_tui.core.data.token_cache import cached_tokens, split_tokens
from minigpt_tui.core.data.tokenizer import UNK, Tokenizer
from minigpt_tui.core.models import LanguageModel

if TYPE_CHECKING:
    import numpy as np

SPLITS = ("valid", "test")
WHOLE = "whole"  # the split name recorded for a plain file given with --data
# Logits of one batch are batch x context x vocabulary floats; batches are cut to hold at most this many.
MAX_LOGITS = 1 << 25

Progress = Callable[[int, int], None]  # (targets done, targets in all)


class EvaluationError(ValueError):
    """An evaluation that cannot run (no such split, too little text); str(err) is one sentence."""


# ---- the split ---------------------------------------------------------------------------------


def load_split(config: RunConfig, tokenizer: Tokenizer, split: str, data_path: str | None = None,
               progress: Callable[[str, float], None] | None = None) -> tuple[torch.Tensor, int]:
    """The tokens of a split (1-D, a view on the token cache's mapped file) and the number of
    characters of its text, or CorpusError/EvaluationError with one sentence.

    valid: the validation text the run trained against (a folder's own valid file,
    data.val_path, or the held-out end of a single file). test: a folder's own test file
    (wiki.test.* or test.txt); other corpora have none. With `data_path`, a folder (or a
    catalogue name) gives its own valid/test files, and a plain text file is evaluated whole
    (`split` is then ignored). Tokenized once into the cache, as training does.
    """
    if split not in SPLITS:
        raise EvaluationError(f"--split must be valid or test, got {split!r}.")
    if data_path is None:  # (a problem with the run's corpus is the sentence training would say)
        return split_tokens(config.data, tokenizer, split, progress)
    if not data_path.strip():
        raise EvaluationError("--data must name a text file, a folder of splits or a catalogue corpus.")
    other = dataclasses.replace(config.data, path=data_path, val_path="")
    if names_folder(data_path):
        return split_tokens(other, tokenizer, split, progress)
    whole = load_corpus(dataclasses.replace(other, val_fraction=0.0)).split("train")  # all of it
    cached = cached_tokens(whole, tokenizer, progress)
    return cached.tokens, cached.n_chars


def names_folder(data_path: str) -> bool:
    """Whether --data names a folder of splits (a path or a catalogue name), not one text file."""
    local = catalogue.resolve(data_path)
    return bool(local.strip()) and Path(local).expanduser().is_dir()


# ---- scoring -----------------------------------------------------------------------------------


def full_pass_loss(model: LanguageModel, tokens: "torch.Tensor | np.ndarray", *, context_length: int,
                   stride: int | None = None, batch_size: int = 32, device: str | torch.device = "cpu",
                   progress: Progress | None = None) -> tuple[float, int]:
    """(sum of -ln p over every predicted token, number of tokens predicted): tokens[1:],
    each once. A Transformer is scored with sliding windows (`stride`, default half the
    context); an RNN and a CNN with their state carried across windows, in up to `batch_size`
    lanes (see the module docstring)."""
    # A tensor or an array (a memory-mapped uint16 cache is read as is: only the batches
    # in hand are widened to int64).
    with warnings.catch_warnings():  # a read-only map: torch warns that writes would be undefined; none are made
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        tokens = torch.as_tensor(tokens).reshape(-1)
    if tokens.numel() < 2:
        raise EvaluationError(f"The text has {tokens.numel()} token(s); at least 2 are needed to predict one.")
    vocab = model.vocab_size
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            if carries_state(model):
                warm = context_length if model.receptive_field is None else model.receptive_field - 1
                return _rnn_pass(model, tokens, context_length, batch_size, device, progress, warm)
            stride = context_length // 2 if stride is None else stride
            if not 1 <= stride <= context_length:
                raise EvaluationError(f"The stride must be between 1 and the context length "
                                      f"{context_length}, got {stride}.")
            batch = max(1, min(batch_size, MAX_LOGITS // (context_length * vocab)))
            return _window_pass(model, tokens, context_length, stride, batch, device, progress)
    finally:
        model.train(was_training)


def carries_state(model: LanguageModel) -> bool:
    """Whether the full pass carries the model's state across windows (an RNN, whose state
    holds everything read; a CNN, whose state makes it exact) rather than sliding windows."""
    return model.receptive_field is None or model.family == "cnn"


def sliding_windows(n_targets: int, context_length: int, stride: int) -> list[tuple[int, int, int]]:
    """(first input, inputs, targets scored) of each window over n_targets = len(tokens) - 1
    predictions: the last `targets scored` of the window's targets are new. Every window
    holds context_length inputs unless the whole text is shorter."""
    windows = []
    done = 0
    while done < n_targets:
        end = min(context_length if not windows else done + stride, n_targets)
        begin = max(0, end - context_length)
        windows.append((begin, end - begin, end - done))
        done = end
    return windows


def _window_pass(model, tokens, W, stride, batch, device, progress) -> tuple[float, int]:
    n_targets = tokens.numel() - 1
    windows = sliding_windows(n_targets, W, stride)
    total = 0.0
    done = 0
    for i in range(0, len(windows), batch):
        group = windows[i : i + batch]
        width = group[0][1]  # every window has W inputs, or there is one shorter window
        starts = torch.tensor([w[0] for w in group])
        idx = tokens[starts[:, None] + torch.arange(width + 1)].long().to(device)  # (b, width + 1)
        nll = _nll(model, idx[:, :-1], idx[:, 1:])  # (b, width)
        keep = torch.arange(width, device=nll.device)[None, :] >= torch.tensor(
            [width - w[2] for w in group], device=nll.device)[:, None]
        total += float(nll[keep].double().sum())
        done += sum(w[2] for w in group)
        if progress is not None:
            progress(done, n_targets)
    return total, n_targets


def rnn_lanes(n_targets: int, context_length: int, lanes: int, warm: int | None = None) -> list[tuple[int, int, int]]:
    """(first input read, inputs read unscored first, targets scored) of each lane: contiguous
    spans of the n_targets predictions, none shorter than a window; a lane after the first
    first reads up to `warm` (default context_length) tokens before its span."""
    warm_up = context_length if warm is None else warm
    lanes = max(1, min(lanes, n_targets // max(1, context_length, warm_up)))
    bounds = [n_targets * k // lanes for k in range(lanes + 1)]
    out = []
    for a, b in zip(bounds, bounds[1:]):
        warm = min(a, warm_up)
        out.append((a - warm, warm, b - a))
    return out


def _rnn_pass(model, tokens, W, batch_size, device, progress, warm: int) -> tuple[float, int]:
    n_targets = tokens.numel() - 1
    lanes = rnn_lanes(n_targets, W, batch_size, warm)
    length = max(warm + n for _, warm, n in lanes)
    # (lanes, length + 1) tokens and a score mask; a shorter lane is padded at its end, where
    # what it reads no longer matters to anything scored.
    idx = torch.zeros(len(lanes), length + 1, dtype=torch.long)
    scored = torch.zeros(len(lanes), length, dtype=torch.bool)
    for k, (first, warm, n) in enumerate(lanes):
        idx[k, : warm + n + 1] = tokens[first : first + warm + n + 1]
        scored[k, warm : warm + n] = True
    idx, scored = idx.to(device), scored.to(device)
    state = model.new_state()
    total = 0.0
    done = 0
    for t in range(0, length, W):
        end = min(t + W, length)
        inputs, targets = idx[:, t:end], idx[:, t + 1 : end + 1]
        logits, state = model(inputs, state)
        state = _detach(state)
        nll = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none")
        keep = scored[:, t:end].flatten()
        total += float(nll[keep].double().sum())
        done += int(keep.sum())
        if progress is not None:
            progress(done, n_targets)
    return total, n_targets


def _nll(model, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """-ln p of each target (b, T), in float32 whatever the model computes in."""
    logits, _ = model(inputs)
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none").view(targets.shape)


def _detach(state):
    if isinstance(state, torch.Tensor):
        return state.detach()
    if isinstance(state, (list, tuple)):
        return type(state)(_detach(s) for s in state)
    return state


# ---- the numbers ----------------------------------------------------------------------------------


@dataclass
class Scores:
    """What an evaluation reports, from the summed loss and the counts."""

    nats: float  # total -ln p over the tokens scored
    tokens: int
    chars: int

    @property
    def loss(self) -> float:
        """Mean nats per token."""
        return self.nats / self.tokens

    @property
    def perplexity(self) -> float:
        return math.exp(min(self.loss, 700.0))

    @property
    def bits_per_token(self) -> float:
        return self.loss / math.log(2)

    @property
    def bits_per_char(self) -> float:
        """Total bits over the characters of the split's text: the one scale on which char,
        word and BPE models compare."""
        return self.nats / math.log(2) / self.chars if self.chars else float("nan")


def unk_note(tokens: torch.Tensor, tokenizer: Tokenizer, vocab_cap: int) -> tuple[float, str]:
    """(share of <unk> tokens, a sentence about comparability or ""). Only a vocabulary whose
    id 0 is <unk> (char, word) has one; a byte-level vocabulary has none."""
    itos = getattr(tokenizer, "itos", None)
    if not itos or itos[0] != UNK:
        return 0.0, ""
    n = max(1, tokens.numel())
    share = float((tokens == 0).sum()) / n
    if not share:
        return 0.0, ""
    capped = vocab_cap and tokenizer.vocab_size >= vocab_cap
    if capped:
        return share, (f"{share:.2%} of the tokens are <unk> because the vocabulary is capped at {vocab_cap:,} "
                       "(data.vocab_size), so this perplexity is not comparable with full-vocabulary results.")
    return share, (f"{share:.2%} of the tokens are <unk> (the text's own <unk>, or symbols the training text "
                   "lacks); each counts as one token, as published word-level results count it.")
