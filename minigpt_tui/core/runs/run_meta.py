"""meta.json's content, RunMeta: the small facts a listing shows about a run without opening
anything bigger. Read and written by RunDir (run_dir.py: read_meta, write_meta)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from minigpt_tui.core.errors import RunError


@dataclass
class RunMeta:
    """meta.json: what a listing shows without opening anything bigger."""

    name: str = ""
    recipe: str = ""
    family: str = "?"
    tokenizer: str = "?"
    corpus: str = "?"
    vocab_size: int = 0
    params: int = 0
    created: float = 0.0  # unix time
    updated: float = 0.0
    status: str = ""  # training | finished | stopped | failed ("interrupted" is derived, see RunDir.info)
    max_steps: int = 0
    step: int = 0  # of the last checkpoint written
    best_val_loss: float | None = None
    device: str = ""
    precision: str = ""
    precision_note: str = ""  # how train.precision "auto" chose it (e.g. the measured bf16 speed-up)
    world_size: int = 1
    error: str = ""  # the sentence a failed run ended with
    note: str = ""  # the user's own words about the run (the Checkpoints tab's n)
    imported_from: str = ""  # a model made elsewhere: its hub id or folder (core/pretrained)
    revision: str = ""  # the hub commit it was downloaded at
    started_from: str = ""  # --train --from: the run (and step) whose weights it started from
    # Token ids its training text never held (none for an imported model: it saw more than we
    # know): samplers never pick them, so a char model never writes <unk>.
    unseen_tokens: list[int] = field(default_factory=list)
    # Tokens that determine a prediction exactly (the model's receptive_field: a CNN's, a
    # Transformer's); 0 for an RNN (unbounded) and in a meta.json from before it was kept.
    receptive_field: int = 0

    # Keys this version does not know (written by a newer one), kept as they were on rewrite.
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def to_json(self) -> str:
        known = asdict(self)
        del known["extra"]
        return json.dumps({**self.extra, **known}, indent=1)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: Path) -> "RunMeta":
        """Known keys are type-checked (ints are fine for floats); unknown keys are kept in .extra."""
        names = {f.name for f in fields(cls)} - {"extra"}
        meta = cls(extra={k: v for k, v in raw.items() if k not in names})
        try:
            for f in fields(cls):
                if f.name == "extra":
                    continue
                if f.name not in raw or (raw[f.name] is None and f.name == "best_val_loss"):
                    continue
                value = raw[f.name]
                kind = type(getattr(meta, f.name)) if f.name != "best_val_loss" else float
                if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else kind):
                    raise TypeError
                if kind is list and not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
                    raise TypeError
                setattr(meta, f.name, kind(value))
        except (TypeError, ValueError, OverflowError):
            raise RunError(f"Run file {source} holds values of the wrong type.") from None
        return meta
