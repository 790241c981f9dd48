"""The trainer's data set-up: the tokenizer and the training and validation tokens.

The corpus is never read whole. A first start checks it, builds the vocabulary and tokenizes
each split into the token cache (core/data/token_cache.py), reporting Preparing events; later
starts and resumes map the cached ids, so they reach their first step at once. A resumed run
keeps its own tokenizer (the run's tokenizer.json).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch

from minigpt_tui.core.config import RunConfig
from minigpt_tui.core.data.corpus import Progress, load_corpus
from minigpt_tui.core.data.token_cache import cached_tokenizer, cached_tokens
from minigpt_tui.core.data.tokenizer import Tokenizer
from minigpt_tui.core.errors import USER_ERRORS, ConfigError, TrainingError
from minigpt_tui.core.runs import events as ev
from minigpt_tui.core.runs.run_dir import RunDir
from minigpt_tui.core.training.devices import Distributed

PREPARING_QUIET_S = 0.5  # Preparing events wait this long after the data set-up starts
PREPARING_EVERY_S = 0.5  # and come at most this often per job


@dataclass
class TrainingData:
    tokenizer: Tokenizer
    train_tokens: torch.Tensor  # 1-D, mapped from the token cache
    val_tokens: torch.Tensor
    corpus_name: str
    # Token ids the training text never holds (a char run's <unk>, BPE merges of text only in
    # the validation split): a sampler never picks them (see unseen_ids).
    unseen_ids: list[int]


def prepare_data(config: RunConfig, dist: Distributed, resume: RunDir | None,
                 emit: Callable[[ev.Event], None], start_from: RunDir | None = None) -> TrainingData:
    """The run's data, mapped from the token cache, which a first start fills. Under torchrun
    rank 0 fills it while the others wait; they then map what it built (or raise the error it
    met). `emit` takes the Preparing events (the trainer's: only rank 0 reports)."""
    if not dist.enabled:
        return _load_data(config, resume, emit, start_from)
    if dist.is_main:
        try:
            loaded = _load_data(config, resume, emit, start_from)
        except Exception as err:
            dist.broadcast(f"{type(err).__name__}\0{err}")
            raise
        dist.broadcast("")
        return loaded
    failure = dist.broadcast("")
    if failure:
        kind, message = failure.split("\0", 1)
        error = {e.__name__: e for e in USER_ERRORS}.get(kind, TrainingError)
        raise error(message)
    return _load_data(config, resume, emit, start_from)


def _load_data(config: RunConfig, resume: RunDir | None, emit: Callable[[ev.Event], None],
               start_from: RunDir | None = None) -> TrainingData:
    if config.data.tokenizer == "hf" and resume is None and start_from is None:
        raise ConfigError('data.tokenizer "hf" is an imported model\'s own tokenizer; train from one with '
                          "--train --from RUN.", field="data.tokenizer")
    progress = progress_reporter(emit)
    corpus = load_corpus(config.data, progress)
    train, valid = corpus.split("train"), corpus.split("valid")
    if resume:
        tokenizer = resume.tokenizer()
    elif start_from:  # its tokenizer as it is: the token cache keys on it, so it tokenizes once
        tokenizer = start_from.tokenizer()
    else:
        tokenizer = cached_tokenizer(config.data.tokenizer, config.data.vocab_size, train, progress)
    train_tokens = cached_tokens(train, tokenizer, progress).tokens
    unseen = unseen_ids(train_tokens, tokenizer.vocab_size)
    if start_from is not None or resume is not None:  # only what no run of its line has seen
        source = start_from or resume
        unseen = sorted(set(unseen) & set(source.read_meta().unseen_tokens))
    return TrainingData(tokenizer, train_tokens, cached_tokens(valid, tokenizer, progress).tokens, corpus.name,
                        unseen)


def unseen_ids(tokens: torch.Tensor, vocab_size: int, chunk: int = 1 << 24) -> list[int]:
    """The ids in 0..vocab_size-1 that `tokens` (a mapped uint16/int32 stream) never holds,
    counted a chunk at a time (a 100M-token corpus as int64 at once would be 800 MB)."""
    counts = torch.zeros(vocab_size, dtype=torch.long)
    for start in range(0, tokens.numel(), chunk):
        counts += torch.bincount(tokens[start : start + chunk].long(), minlength=vocab_size)[:vocab_size]
    return (counts == 0).nonzero().flatten().tolist()


def progress_reporter(emit: Callable[[ev.Event], None]) -> Progress:
    """A token_cache progress callback that emits Preparing events, none in the first
    PREPARING_QUIET_S (a small corpus is ready before anyone would read them) and then
    at most one per PREPARING_EVERY_S and job."""
    started = time.monotonic()
    last: dict[str, float] = {}

    def report(what: str, fraction: float) -> None:
        now = time.monotonic()
        if now - started < PREPARING_QUIET_S or now - last.get(what, -math.inf) < PREPARING_EVERY_S:
            return
        last[what] = now
        emit(ev.Preparing(what=what, fraction=fraction))

    return report
