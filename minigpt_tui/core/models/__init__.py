"""Model families behind one interface, LanguageModel (protocol.py): forward(tokens, state) ->
(logits, state). Building one by its config, counting its parameters, and finding it under the
wrappers training puts around it."""

from __future__ import annotations

import torch.nn as nn

from minigpt_tui.core.config import ModelConfig
from minigpt_tui.core.models.protocol import LanguageModel

__all__ = ["LanguageModel", "build_model", "count_parameters", "unwrap"]


def build_model(cfg: ModelConfig, vocab_size: int) -> LanguageModel:
    if cfg.family == "transformer":
        from minigpt_tui.core.models.transformer import Transformer

        return Transformer(cfg, vocab_size)
    if cfg.family == "cnn":
        from minigpt_tui.core.models.cnn import ConvLanguageModel

        return ConvLanguageModel(cfg, vocab_size)
    from minigpt_tui.core.models.rnn import RNNLanguageModel

    return RNNLanguageModel(cfg, vocab_size)


def count_parameters(model: nn.Module | LanguageModel) -> int:
    """Distinct parameters (a tied embedding/head counts once)."""
    return sum(p.numel() for p in model.parameters())


def unwrap(model: nn.Module | LanguageModel) -> LanguageModel:
    """The plain model under DDP (`.module`) and torch.compile (`._orig_mod`) wrappers,
    in any nesting: what checkpoints save (so saved keys carry no prefixes) and what
    samplers call methods such as decode_step on. A plain model is returned as it is."""
    while True:
        inner = getattr(model, "_orig_mod", None)
        if inner is None:
            inner = getattr(model, "module", None)
        if not isinstance(inner, nn.Module):  # a model may have a non-module attribute by that name
            return model
        model = inner
