"""Model families behind one interface: forward(tokens, state) -> (logits, state)."""

from __future__ import annotations

import torch.nn as nn

from minigpt_tui.core.config import ModelConfig


def build_model(cfg: ModelConfig, vocab_size: int) -> nn.Module:
    if cfg.family == "transformer":
        from minigpt_tui.core.models.transformer import Transformer

        return Transformer(cfg, vocab_size)
    from minigpt_tui.core.models.rnn import RNNLanguageModel

    return RNNLanguageModel(cfg, vocab_size)


def count_parameters(model: nn.Module) -> int:
    """Distinct parameters (a tied embedding/head counts once)."""
    return sum(p.numel() for p in model.parameters())
