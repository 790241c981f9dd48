"""Model families behind one interface, LanguageModel: forward(tokens, state) -> (logits, state)."""

from __future__ import annotations

from typing import Any, Protocol

import torch
import torch.nn as nn

from minigpt_tui.core.config import ModelConfig


class LanguageModel(Protocol):
    """What every model family implements (Transformer, RNNLanguageModel); the sampler
    relies on exactly this. Shape names: B batch, T time, V vocabulary.

    A state is the family's own object, opaque to callers: a Transformer's
    key/value cache, an RNN's hidden state. Pass back what the last call returned.
    """

    config: ModelConfig
    vocab_size: int
    family: str  # "transformer" | "gru" | "lstm"

    @property
    def receptive_field(self) -> int | None:
        """How many trailing tokens determine the next-token logits exactly (a
        Transformer's attention reaches back only so far), or None when the state
        carries everything read so far (an RNN)."""

    def new_state(self) -> Any:
        """The state before any token: the next forward reads a prompt from scratch."""

    def forward(self, idx: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        """idx (B, T) -> logits (B, T, V) and the state after the last token.
        state=None processes the sequence on its own (training)."""

    def decode_step(self, token: int, state: Any) -> tuple[torch.Tensor, Any]:
        """Feed one token of a single sequence -> logits (1, V), new state. The same
        logits as forward, written for speed: the sampler's hot path."""


def build_model(cfg: ModelConfig, vocab_size: int) -> nn.Module:
    if cfg.family == "transformer":
        from minigpt_tui.core.models.transformer import Transformer

        return Transformer(cfg, vocab_size)
    from minigpt_tui.core.models.rnn import RNNLanguageModel

    return RNNLanguageModel(cfg, vocab_size)


def count_parameters(model: nn.Module) -> int:
    """Distinct parameters (a tied embedding/head counts once)."""
    return sum(p.numel() for p in model.parameters())


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model under DDP (`.module`) and torch.compile (`._orig_mod`) wrappers,
    in any nesting: what checkpoints save (so saved keys carry no prefixes) and what
    samplers call methods such as decode_step on."""
    while True:
        inner = getattr(model, "_orig_mod", None)
        if inner is None:
            inner = getattr(model, "module", None)
        if not isinstance(inner, nn.Module):  # a model may have a non-module attribute by that name
            return model
        model = inner
