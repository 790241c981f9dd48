"""`--export RUN --format hf --out DIR`: a folder transformers loads with
AutoModelForCausalLM.from_pretrained(DIR) and AutoTokenizer.from_pretrained(DIR), no remote code.

The architecture follows the run's layout: a run imported as GPT-2 or Llama goes back to that
architecture, bit for bit (core/pretrained/architectures.py holds both directions); our own
Transformer becomes GPT-NeoX (neox.py). An RNN has no transformers architecture (bundle.py).

The folder is written under a temporary name beside DIR and renamed into place when complete,
so an interrupted export never leaves a folder that looks whole.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from minigpt_tui.core.errors import ExportError
from minigpt_tui.core.export.model_card import model_card
from minigpt_tui.core.export.neox import is_neox_layout, neox_export
from minigpt_tui.core.export.tokenizer_files import tokenizer_config, tokenizer_json
from minigpt_tui.core.pretrained.architectures import gpt2_export, is_gpt2_layout, is_llama_layout, llama_export
from minigpt_tui.core.runs.run_dir import LoadedRun, RunDir

DTYPES = ("f32", "f16", "bf16")


def hf_layout(run: LoadedRun) -> tuple[str, dict, dict]:
    """(architecture name, config.json, tensors in float32) for a run's model."""
    cfg = run.config.model
    if cfg.family == "cnn":
        raise ExportError(f"Run {run.run_dir.name} is a CNN, which no export format takes yet (transformers and "
                          "llama.cpp have no such architecture); use it here, with --generate or --chat.")
    if cfg.family != "transformer":
        raise ExportError(f"Run {run.run_dir.name} is a {cfg.family.upper()}, which has no transformers or llama.cpp "
                          "architecture; export it with --format safetensors (weights, config, tokenizer and a "
                          "model file for PyTorch).")
    state = {k: v.detach().float().cpu() for k, v in run.model.state_dict().items()}
    if is_gpt2_layout(cfg):
        name, (config, tensors) = "GPT-2", gpt2_export(cfg, state)
    elif is_llama_layout(cfg):
        name, (config, tensors) = "Llama", llama_export(cfg, state)
    elif is_neox_layout(cfg):
        name, (config, tensors) = "GPT-NeoX", neox_export(cfg, state)
    else:
        raise ExportError(f"Run {run.run_dir.name}'s Transformer mixes options no transformers architecture has "
                          f"(norm {cfg.norm}, activation {cfg.activation}, positions {cfg.positions}); "
                          "our own layout exports as GPT-NeoX, imported ones as GPT-2 or Llama.")
    tok = run.tokenizer
    config.update({"vocab_size": tok.vocab_size, "torch_dtype": "float32",
                   "bos_token_id": getattr(tok, "bos_id", None), "eos_token_id": getattr(tok, "eos_id", None)})
    return name, config, tensors


def _cast(tensors: dict, dtype: str) -> dict:
    import torch

    target = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[dtype]
    # safetensors refuses tensors that share memory (a tied head) or are views: each its own copy
    return {k: v.to(target).contiguous().clone() for k, v in tensors.items()}


def prepare_out(out: Path) -> Path:
    """A temporary folder beside `out` to write into; refused when `out` exists and is not empty."""
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out} already exists and is not an empty folder; give a new --out path.")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out.name}-", suffix=".partial", dir=out.parent))
    except OSError as err:
        raise ExportError(f"Cannot write to {out.parent} ({err.strerror or err}).") from None


def finish_out(tmp: Path, out: Path) -> None:
    out = Path(out).expanduser()
    if out.is_dir():
        out.rmdir()  # empty (prepare_out checked)
    tmp.rename(out)


def export_hf(run_dir: RunDir, out: Path, checkpoint: str = "best", dtype: str = "f32") -> str:
    """Write the folder (see the module docstring); the architecture's name."""
    from safetensors.torch import save_file

    run = run_dir.load(checkpoint)
    name, config, tensors = hf_layout(run)
    config["torch_dtype"] = {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}[dtype]
    tmp = prepare_out(out)
    try:
        tok = run.tokenizer
        save_file(_cast(tensors, dtype), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        (tmp / "tokenizer.json").write_text(tokenizer_json(tok), encoding="utf-8")
        tconf = tokenizer_config(tok, run.config.model.context_length)
        (tmp / "tokenizer_config.json").write_text(json.dumps(tconf, indent=2, ensure_ascii=False) + "\n",
                                                   encoding="utf-8")
        generation = {k: config[k] for k in ("bos_token_id", "eos_token_id") if config.get(k) is not None}
        (tmp / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n", encoding="utf-8")
        (tmp / "README.md").write_text(model_card(run_dir, run, name, "hf"), encoding="utf-8")
        finish_out(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return name
