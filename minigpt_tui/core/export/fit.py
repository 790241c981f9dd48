"""Which export formats fit a run, read from its small files (config.toml, tokenizer.json) without
loading its weights or importing torch: what the app's Export dialog offers, with one line on
what it does not offer and why, and where an export goes by default.

Transformer runs leave as a transformers folder ("hf") and, with a byte-level BPE vocabulary,
as a GGUF file ("gguf"); GRU and LSTM runs as a safetensors bundle ("safetensors").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Collection

from minigpt_tui.core import paths
from minigpt_tui.core.runs.checkpoint import CHECKPOINT_KINDS
from minigpt_tui.core.runs.run_dir import RunDir

FORMATS = ("hf", "gguf", "safetensors")
# Each format's weight types, in the order --dtype's message lists them, and its default.
FORMAT_DTYPES = {"hf": ("f32", "f16", "bf16"), "gguf": ("f32", "f16", "bf16", "q8_0"), "safetensors": ("f32",)}
DEFAULT_DTYPE = {"hf": "f32", "gguf": "f16", "safetensors": "f32"}
FORMAT_WHAT = {
    "hf": "a folder transformers loads (AutoModelForCausalLM, AutoTokenizer)",
    "gguf": "one file for llama.cpp and Ollama",
    "safetensors": "weights, config, tokenizer and a PyTorch model file",
}


def gguf_vocabulary(tokenizer) -> tuple[dict | None, str]:
    """(the tokenizer.json spec, its shape for GGUF): "char" or "word" (no spec), "sentencepiece",
    "split" (a pre-tokenizer llama.cpp has no name for), or the name llama.cpp knows its byte-level
    split by: "gpt-2" or "smollm" (digits one by one, then GPT-2's split)."""
    if tokenizer.kind in ("char", "word"):
        return None, tokenizer.kind
    spec = json.loads(tokenizer.hf.to_str()) if tokenizer.kind == "bpe" else tokenizer.tokenizer_json
    pre = json.dumps(spec.get("pre_tokenizer"))
    if spec.get("model", {}).get("type") != "BPE" or "ByteLevel" not in pre:
        return spec, "sentencepiece"
    if '"Digits"' in pre:
        return spec, "smollm"
    if '"Split"' in pre or '"use_regex": false' in pre:
        return spec, "split"
    return spec, "gpt-2"


def gguf_problem(tokenizer) -> str:
    """Why a run with this tokenizer is not written as GGUF, in one line ("" when it can be)."""
    shape = gguf_vocabulary(tokenizer)[1]
    if shape in ("char", "word"):
        level = "character" if shape == "char" else "word"
        return f"gguf needs a byte-level BPE vocabulary; this run's is {level}-level."
    if shape == "sentencepiece":
        return ("gguf needs a byte-level BPE vocabulary; this run's is SentencePiece-style "
                "(llama.cpp's convert_hf_to_gguf.py converts the hf folder).")
    if shape == "split":
        return "gguf: this run's tokenizer splits text in a way this export cannot name for llama.cpp."
    return ""


@dataclass(frozen=True)
class ExportChoices:
    formats: tuple[str, ...]  # those that fit, the first the default
    why_not: str  # one line on the formats left out ("" when none is)
    checkpoints: tuple[str, ...]  # the checkpoints written ("best", "last")


def export_choices(run_dir: RunDir) -> ExportChoices:
    """What can be exported of a run; a RunError when its config or tokenizer cannot be read."""
    family = run_dir.config().model.family
    checkpoints = tuple(k for k in CHECKPOINT_KINDS if run_dir.checkpoint_path(k).is_file())
    if family != "transformer":
        return ExportChoices(("safetensors",), f"hf and gguf need a Transformer: a {family.upper()} has no "
                             "transformers or llama.cpp architecture.", checkpoints)
    problem = gguf_problem(run_dir.tokenizer())
    return ExportChoices(("hf",) if problem else ("hf", "gguf"), problem, checkpoints)


def default_out(run_name: str, fmt: str, folder: Path | None = None, taken: Collection[Path] = ()) -> Path:
    """A path that does not exist yet under the exports folder: RUN-hf/, RUN.gguf, RUN-safetensors/
    (then RUN-hf-2/, RUN-2.gguf, ...); `taken` are paths exports are writing now."""
    folder = Path(folder) if folder is not None else paths.exports_dir()
    for n in range(1, 1000):
        tail = "" if n == 1 else f"-{n}"
        path = folder / (f"{run_name}{tail}.gguf" if fmt == "gguf" else f"{run_name}-{fmt}{tail}")
        if not path.exists() and path not in taken:
            return path
    return folder / f"{run_name}-{fmt}-new"
