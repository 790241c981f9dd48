"""Checkpoint files: weights (and the optimizer's state) saved atomically, loaded safely.

A run folder (see run_dir.py) keeps two: checkpoints/last.pt, written at every
evaluation and on stop (model, optimizer, step, RNG: what an exact resume needs),
and checkpoints/best.pt, the weights with the best validation loss so far.
Files are written through fsutil.atomic_write, so a kill at any instant leaves
the previous version readable. They load with torch.load(weights_only=True):
tensors and plain containers only, never arbitrary pickled objects.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minigpt_tui.core import fsutil
from minigpt_tui.core.errors import CheckpointError

if TYPE_CHECKING:  # imported lazily: listing runs must stay fast and light
    import torch

CHECKPOINT_KINDS = ("best", "last")
FORMAT_VERSION = 1


def save_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    """torch.save the state (tagged with the format version) atomically to `path`."""
    import torch

    fsutil.atomic_write(Path(path), lambda f: torch.save({"format": FORMAT_VERSION, **state}, f))
    return Path(path)


def checkpoint_problem(path: Path) -> str | None:
    """Why a checkpoint file cannot be a minigpt-tui checkpoint, from its size and its last
    bytes only (torch.save writes a zip, whose directory sits at the end); None if it may be."""
    path = Path(path)
    try:
        if not path.is_file():
            return f"Checkpoint file {path} does not exist."
        if path.stat().st_size == 0:
            return f"Checkpoint file {path} is empty; use the other checkpoint or retrain."
        if zipfile.is_zipfile(path):
            return None
        with open(path, "rb") as f:
            head = f.read(2)
    except OSError as err:
        return f"Checkpoint file {path} cannot be read ({err.strerror or err})."
    if head[:1] == b"\x80":  # a bare pickle: minigpt-tui never writes one, and it could run code
        return (f"Checkpoint file {path} is a bare pickle, not a minigpt-tui checkpoint, and was refused "
                "(loading it could run code); only load checkpoints written by minigpt-tui.")
    return f"Checkpoint file {path} is truncated or corrupt; use the other checkpoint or retrain."


def load_checkpoint(path: Path, map_location: "str | torch.device" = "cpu") -> dict[str, Any]:
    """Load a checkpoint without executing anything it might contain."""
    import torch

    path = Path(path)
    problem = checkpoint_problem(path)
    if problem:
        raise CheckpointError(problem)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes about pickle protocols are not for users
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"Checkpoint file {path} holds objects other than tensors (possibly code) and was refused; "
            "only load checkpoints written by minigpt-tui."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, UnicodeDecodeError):
        raise CheckpointError(f"Checkpoint file {path} is truncated or corrupt; use the other checkpoint or retrain.") from None
    except Exception as err:  # any other failure of the unpickler is still a bad file
        raise CheckpointError(f"Checkpoint file {path} cannot be loaded ({type(err).__name__}).") from None
    if (not isinstance(state, dict) or not isinstance(state.get("model"), dict)
            or not isinstance(state.get("step"), int) or isinstance(state.get("step"), bool)):
        raise CheckpointError(f"Checkpoint file {path} is not a minigpt-tui checkpoint.")
    return state
