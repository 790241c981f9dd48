"""`--train --from RUN`: a new run that starts from another run's weights (fine-tuning).

The new run takes RUN's tokenizer and model shape as they are (the weights fit nothing else)
and its data and training fields from the recipe, or from RUN itself when no recipe is named
(an imported model's config holds fine-tuning defaults), with --set on top. A --set that would
change the model's shape is refused in one sentence. Two model fields may change, as they
leave every weight's shape alone: model.dropout, and model.context_length downwards (a rotary
model's window; a learned-position model keeps the first rows of its table, as nanoGPT's
crop_block_size does).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from minigpt_tui.core.config import RunConfig
from minigpt_tui.core.errors import CheckpointError, ConfigError
from minigpt_tui.core.runs.checkpoint import CHECKPOINT_KINDS, load_checkpoint

if TYPE_CHECKING:
    import torch.nn as nn

    from minigpt_tui.core.runs.run_dir import RunDir

FREE_MODEL_FIELDS = ("dropout", "context_length")


def start_from_config(source: RunDir, recipe: RunConfig | None, overrides: list[str]) -> RunConfig:
    """The new run's config (see the module docstring); ConfigError for a change it cannot take."""
    own = source.config()
    base = recipe if recipe is not None else own
    combined = RunConfig(data=dataclasses.replace(base.data, tokenizer=own.data.tokenizer,
                                                  vocab_size=own.data.vocab_size),
                         model=own.model, train=base.train)
    config = combined.with_overrides(overrides)
    if config.data.vocab_size != own.data.vocab_size:
        raise ConfigError(f"data.vocab_size cannot change when starting from {source.name}: the run keeps its "
                          f"vocabulary of {own.data.vocab_size or 'every'} tokens.", field="data.vocab_size")
    if config.data.tokenizer != own.data.tokenizer:
        raise ConfigError(f"data.tokenizer cannot change when starting from {source.name}: the run keeps its "
                          f"{own.data.tokenizer} tokenizer.", field="data.tokenizer")
    for f in dataclasses.fields(own.model):
        old, new = getattr(own.model, f.name), getattr(config.model, f.name)
        if old == new or f.name == "dropout":
            continue
        if f.name == "context_length" and new <= old:
            continue
        what = f"at most {old}" if f.name == "context_length" else f"{old!r}, as the run's weights have it"
        raise ConfigError(f"model.{f.name} must stay {what} when starting from {source.name}, got {new!r}.",
                          field=f"model.{f.name}")
    return config


def start_checkpoint(source: RunDir):
    """The checkpoint a new run starts from: best.pt (the weights that did best), else last.pt."""
    for kind in CHECKPOINT_KINDS:
        path = source.checkpoint_path(kind)
        if path.is_file():
            return path
    raise CheckpointError(f"Run {source.name} has no checkpoint yet, so nothing to start from.")


def load_start_weights(model: nn.Module, source: RunDir, device) -> str:
    """RUN's weights into `model` (built with the new run's config); "NAME (step N)" for the meta."""
    path = start_checkpoint(source)
    state = load_checkpoint(path, map_location=device)
    weights = dict(state["model"])
    table = getattr(model, "pos_embed", None)
    if table is not None and "pos_embed.weight" in weights:  # a shorter context keeps the first positions
        weights["pos_embed.weight"] = weights["pos_embed.weight"][: table.weight.size(0)]
    try:
        model.load_state_dict(weights)
    except (RuntimeError, KeyError, TypeError):
        raise CheckpointError(f"Checkpoint file {path} does not match run {source.name}'s config.") from None
    return f"{source.name} (step {int(state['step'])})"
