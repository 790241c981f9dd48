"""What the trainer tells whoever listens: event dataclasses and their JSON-lines codec.

The headless CLI prints these (as a progress bar, or as JSON lines with
`--events jsonl`); the Textual app runs the trainer as a child process and reads
the JSON lines back with `decode`. Each event is one JSON object with a "type".
The trainer also appends the same lines to its run's events.jsonl (EventLog), so a
run can be followed from disk by a process that is not its parent (see follow.py).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path


@dataclass
class Preparing:
    """Before Started, while the corpus is read or tokenized into the token cache (first starts
    only; sent at most a few times a second, and not at all for a quick job)."""

    what: str  # "Tokenizing the training text"
    fraction: float  # of that job done, 0 to 1
    type: str = "preparing"


@dataclass
class Started:
    run_name: str
    run_dir: str
    family: str
    tokenizer: str
    corpus: str
    vocab_size: int
    ln_vocab: float  # ln(V): the loss of a model that knows nothing
    params: int
    start_step: int  # > 0 when resuming
    max_steps: int
    tokens_per_step: int
    device: str
    dtype: str
    precision_note: str = ""  # how train.precision "auto" chose dtype (measured speed-up), "" when named
    compiled: bool = False  # torch.compile'd (its first steps compile)
    compile_note: str = ""  # whether the model is compiled and, under train.compile "auto", why (compile_choice.py)
    started_from: str = ""  # --from: "RUN (step N)" whose weights it started from
    # Tokens that determine a prediction exactly (a CNN's, a Transformer's); 0: unbounded (an RNN)
    receptive_field: int = 0
    # train.time_budget in seconds (0: none) and what earlier sessions of the run had used of it
    time_budget_s: float = 0.0
    time_budget_used_s: float = 0.0
    type: str = "started"


@dataclass
class Step:
    step: int  # optimizer steps done so far; step 0 is the untrained model
    loss: float
    lr: float
    tokens_per_s: float
    elapsed_s: float
    eta_s: float
    type: str = "step"
    max_steps: int = 0  # the run's max_steps now (a time budget re-sizes it as the run goes); 0: unknown


@dataclass
class Eval:
    step: int
    train_loss: float
    val_loss: float
    best_val_loss: float | None  # None until a trained model (step > 0) was evaluated
    type: str = "eval"


@dataclass
class Sample:
    step: int
    text: str
    type: str = "sample"


@dataclass
class CheckpointSaved:
    step: int
    path: str
    kind: str  # "last" | "best"
    type: str = "checkpoint"


@dataclass
class Done:
    step: int
    run_dir: str
    reason: str  # "finished" | "stopped"
    best_val_loss: float | None
    elapsed_s: float
    type: str = "done"


@dataclass
class Error:
    message: str  # one sentence, for a person
    run_dir: str = ""
    type: str = "error"


Event = Preparing | Started | Step | Eval | Sample | CheckpointSaved | Done | Error
EVENT_TYPES: dict[str, type] = {
    cls.__dataclass_fields__["type"].default: cls
    for cls in (Preparing, Started, Step, Eval, Sample, CheckpointSaved, Done, Error)
}


def encode(event: Event) -> str:
    """One line of JSON (no newline inside: strings are escaped)."""
    return json.dumps(asdict(event), ensure_ascii=False, allow_nan=True)


def decode(line: str) -> Event:
    """Parse one JSON line back into its event; ValueError for anything else."""
    raw = json.loads(line)
    if not isinstance(raw, dict) or raw.get("type") not in EVENT_TYPES:
        raise ValueError(f"not a minigpt-tui event: {line[:80]!r}")
    cls = EVENT_TYPES[raw["type"]]
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in raw.items() if k in known})


class EventLog:
    """A run's events.jsonl: the events of its latest training session, one per line.

    Each session starts a new file (written aside and renamed over the old one, so a
    follower of the last session sees a different file rather than a mix of two), and
    every event is flushed as it is written: steps come at log steps only, so this is
    one small write per log step. A kill can tear the last line; readers skip it.
    Best effort: a run never fails because its event log cannot be written."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.file = None

    def start(self, first: Event) -> None:
        """Begin a new session's file with its first event (Started)."""
        self.close()
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(encode(first) + "\n")
            os.replace(tmp, self.path)
            self.file = open(self.path, "a", encoding="utf-8")
        except OSError:
            self.file = None

    def write(self, event: Event) -> None:
        if self.file is None:
            return
        try:
            self.file.write(encode(event) + "\n")
            self.file.flush()
        except OSError:  # a full disk: training goes on, the log stops here
            self.close()

    def close(self) -> None:
        if self.file is not None:
            try:
                self.file.close()
            except OSError:
                pass
            self.file = None
