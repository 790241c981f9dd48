"""`--import`: a Hugging Face model folder turned into a run like any other.

What a folder must hold: config.json (GPT-2 or Llama layout, see architectures.py), the weights
as safetensors (one file, or shards with model.safetensors.index.json; never a pickle:
pytorch_model.bin alone is refused), tokenizer.json, and optionally tokenizer_config.json,
generation_config.json, special_tokens_map.json and chat_template.jinja.

Everything is checked and converted in memory first (sizes against this machine's memory
before anything is allocated, every tensor's name and shape against the config), so a refusal
leaves no run folder behind. The run then appears at once, with:

  config.toml       the model section from config.json, data/train sections for fine-tuning;
  tokenizer.json    kind "hf": the model's tokenizer.json and the settings around it;
  meta.json         status "imported", corpus "imported from SOURCE", the source and revision;
  checkpoints/best.pt  the weights in float32 (our checkpoint format, as every run's).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from minigpt_tui.core.config import DataConfig, RunConfig, TrainConfig
from minigpt_tui.core.errors import ImportModelError, RunError, TokenizerError
from minigpt_tui.core.pretrained.architectures import architecture_of
from minigpt_tui.core.runs.run_meta import RunMeta
from minigpt_tui.core.runs.run_names import run_name_problem

# A fine-tuning start (nanoGPT's GPT-2 fine-tune uses 3e-5 and a few steps): small steps, no decay.
FINETUNE_TRAIN = TrainConfig(max_steps=200, batch_size=4, learning_rate=3e-5, min_lr=3e-6, warmup_steps=10,
                             weight_decay=0.0, eval_interval=50, eval_batches=10, sample_tokens=100)
MEMORY_FRACTION = 0.8  # refuse a model whose float32 weights (read and converted) exceed this much RAM


@dataclass
class ModelFolder:
    path: Path
    hf_config: dict
    weight_files: list[Path]
    tokenizer_json: dict
    tokenizer_settings: dict


def _read_json(path: Path, what: str) -> dict:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ImportModelError(f"The model folder {path.parent} has no {path.name} ({what}).") from None
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ImportModelError(f"{path} cannot be read as JSON ({err}).") from None
    if not isinstance(raw, dict):
        raise ImportModelError(f"{path} is not a JSON object.")
    return raw


def read_folder(path: Path) -> ModelFolder:
    """The folder's files, checked for presence and form (not yet the weights themselves)."""
    path = Path(path)
    hf = _read_json(path / "config.json", "the model's architecture and sizes")
    index = path / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(_read_json(index, "the shard index").get("weight_map", {}).values()))
        weights = [path / name for name in shards]
        missing = [w.name for w in weights if not w.is_file()]
        if missing or not weights:
            raise ImportModelError(f"The model folder {path} lacks the weight shard {missing[0] if missing else '?'} "
                                   "that model.safetensors.index.json lists.")
    else:
        weights = sorted(path.glob("*.safetensors"))
    if not weights:
        if any((path / name).exists() for name in ("pytorch_model.bin", "model.pt", "pytorch_model.bin.index.json")):
            raise ImportModelError(f"The model folder {path} has its weights only as pytorch_model.bin, a pickle that "
                                   "could run code when loaded; import a folder with .safetensors weights.")
        raise ImportModelError(f"The model folder {path} has no .safetensors weights.")
    tokenizer_json = _read_json(path / "tokenizer.json", "the tokenizer")
    return ModelFolder(path, hf, weights, tokenizer_json, tokenizer_settings(path, hf))


def tokenizer_settings(path: Path, hf: dict) -> dict:
    """BOS, EOS, whether a prompt starts with BOS, the end-of-turn tokens and the chat template,
    from tokenizer_config.json, generation_config.json and chat_template.jinja where present."""
    def token(value):
        return value.get("content") if isinstance(value, dict) else value

    conf = _read_json(path / "tokenizer_config.json", "") if (path / "tokenizer_config.json").is_file() else {}
    gen = _read_json(path / "generation_config.json", "") if (path / "generation_config.json").is_file() else {}
    special = _read_json(path / "special_tokens_map.json", "") if (path / "special_tokens_map.json").is_file() else {}
    template = conf.get("chat_template")
    if isinstance(template, list):  # named templates: the default one
        template = next((t.get("template") for t in template if t.get("name") == "default"), None)
    if (path / "chat_template.jinja").is_file():
        template = (path / "chat_template.jinja").read_text(encoding="utf-8")
    ends = gen.get("eos_token_id", hf.get("eos_token_id"))
    ends = ends if isinstance(ends, list) else [ends] if isinstance(ends, int) else []
    bos = token(conf.get("bos_token", special.get("bos_token")))
    eos = token(conf.get("eos_token", special.get("eos_token")))
    # GPT-2's tokenizer has no bos/eos in a tokenizer_config.json of its own: <|endoftext|> is both.
    if bos is None and isinstance(hf.get("bos_token_id"), int):
        bos = hf["bos_token_id"]
    if eos is None and isinstance(hf.get("eos_token_id"), int):
        eos = hf["eos_token_id"]
    add_bos = conf.get("add_bos_token")
    if add_bos is None:  # unsaid: as the tokenizer.json's post-processor does
        add_bos = _post_processor_adds_bos(path / "tokenizer.json", bos)
    # The other special tokens, for a chat template that names them (core.data.hf_chat_template).
    others = {name: token(conf.get(name, special.get(name))) for name in ("unk_token", "sep_token", "pad_token",
                                                                          "cls_token", "mask_token")}
    return {"bos_token": bos, "eos_token": eos, "add_bos": bool(add_bos), "end_tokens": ends,
            "chat_template": template, "vocab_size": hf.get("vocab_size") or 0,
            **{name: value for name, value in others.items() if isinstance(value, str)}}


def _post_processor_adds_bos(tokenizer_file: Path, bos) -> bool:
    """Whether encoding with special tokens (what transformers does by default) puts BOS first."""
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_file(str(tokenizer_file))
    except Exception:  # (a bare Exception for malformed files: read_folder's reading reports those)
        return False
    bos_id = bos if isinstance(bos, int) else tok.token_to_id(bos) if isinstance(bos, str) else None
    with_special = tok.encode("a", add_special_tokens=True).ids
    return bos_id is not None and len(with_special) > len(tok.encode("a", add_special_tokens=False).ids) \
        and with_special[0] == bos_id


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def convert(folder: ModelFolder):
    """(RunConfig, tokenizer, our state dict in float32, architecture name, parameter count), or
    ImportModelError (one sentence) for anything that cannot be imported exactly."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import safe_open

    from minigpt_tui.core.data.pretrained_tokenizer import PretrainedTokenizer

    arch = architecture_of(folder.hf_config)
    model_cfg = arch.model_config(folder.hf_config)
    try:
        tokenizer = PretrainedTokenizer(folder.tokenizer_json, folder.tokenizer_settings)
    except TokenizerError as err:
        raise ImportModelError(f"The model's tokenizer cannot be used: {err}.") from None
    vocab = folder.hf_config.get("vocab_size") or tokenizer.vocab_size
    if not isinstance(vocab, int) or vocab < tokenizer.vocab_size:
        raise ImportModelError(f"config.json's vocab_size ({vocab}) is smaller than the tokenizer's "
                               f"({tokenizer.vocab_size}).")
    expected = _expected_shapes(model_cfg, vocab)
    params = sum(math.prod(shape) for name, shape in expected.items() if not _tied_copy(name, model_cfg))
    memory = _memory_bytes()
    if memory and params * 4 * 2 > memory * MEMORY_FRACTION:
        raise ImportModelError(f"This model has {params / 1e9:.1f} billion parameters; in float32 (read and "
                               f"converted) that needs about {params * 8 / 2**30:.0f} GiB, more than this machine's "
                               f"{memory / 2**30:.0f} GiB of memory allows.")
    tensors: dict[str, torch.Tensor] = {}
    try:
        for file in folder.weight_files:
            with safe_open(str(file), framework="pt") as f:
                for name in f.keys():
                    tensors[name] = f.get_tensor(name)
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise ImportModelError(f"The weights file {file.name} is not a readable safetensors file ({err}).") from None

    def get(name: str) -> torch.Tensor:
        for candidate in (name, name.removeprefix("transformer."), name.removeprefix("model.")):
            if candidate in tensors:
                tensor = tensors[candidate]
                if not tensor.is_floating_point():
                    raise ImportModelError(f"The weight {name} is stored as {tensor.dtype}, not as floating point "
                                           "(a quantized model); it cannot be imported.")
                return tensor.float()
        raise ImportModelError(f"The weights lack {name}, which a {arch.name} model of this config has.")

    state = {k: v.contiguous() for k, v in arch.weights(folder.hf_config, model_cfg, get).items()}
    for name, shape in expected.items():
        if tuple(state[name].shape) != shape:
            raise ImportModelError(f"The weight for {name} has shape {tuple(state[name].shape)}, but config.json "
                                   f"makes it {shape}; the weights do not belong to this config.")
    config = RunConfig(data=DataConfig(path="", tokenizer="hf", vocab_size=0), model=model_cfg,
                       train=TrainConfig(**vars(FINETUNE_TRAIN)))
    return config, tokenizer, state, arch.name, params


def _expected_shapes(cfg, vocab: int) -> dict[str, tuple[int, ...]]:
    """Our parameters' names and shapes for this config (built on the meta device: nothing allocated)."""
    import torch

    from minigpt_tui.core.models import build_model

    with torch.device("meta"):
        model = build_model(cfg, vocab)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _tied_copy(name: str, cfg) -> bool:
    return name == "head.weight" and cfg.tie_weights


def default_name(source: str) -> str:
    """A run name from a source: the last part of a hub id or folder ("HuggingFaceTB/SmolLM2-135M" ->
    "SmolLM2-135M")."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(source.rstrip("/\\")).name).strip("-.")
    return name or "imported"


def import_model(source: str, name: str | None = None, runs_root: Path | None = None,
                 progress: bool = True, fetch=None):
    """Fetch (core.pretrained.hub) and convert `source`, then write the run; its RunDir. `fetch`
    replaces hub.fetch_model (tests). Nothing is written before everything has been checked."""
    from minigpt_tui.core import paths
    from minigpt_tui.core.runs.checkpoint import save_checkpoint
    from minigpt_tui.core.runs.run_dir import CONFIG_NAME, META_NAME, TOKENIZER_NAME, RunDir

    root = Path(runs_root) if runs_root is not None else paths.runs_dir()
    if name is not None:
        problem = run_name_problem(name)
        if problem:
            raise RunError(problem)
        if (root / name).exists():
            raise RunError(f"A run named {name} already exists; choose another name with --name.")
    if fetch is None:
        from minigpt_tui.core.pretrained.hub import fetch_model as fetch
    fetched = fetch(source, progress=progress)
    config, tokenizer, state, arch, params = convert(read_folder(fetched.path))
    meta = RunMeta(recipe=f"imported-{arch}", family="transformer", tokenizer="hf",
                   corpus=f"imported from {fetched.source}", vocab_size=tokenizer.vocab_size, params=params,
                   status="imported", imported_from=fetched.source, revision=fetched.revision or "",
                   created=time.time())
    stem = name or default_name(fetched.source)
    run = RunDir.create(stem, root, {CONFIG_NAME: config.to_run_toml(), TOKENIZER_NAME: tokenizer.to_json(),
                                     META_NAME: meta.to_json()})
    try:
        save_checkpoint(run.checkpoint_path("best"), {"model": state, "step": 0, "best_val_loss": None})
        meta.name = run.name
        run.write_meta(meta)
        run.release()
        if not (root / stem).exists():  # the plain name where it is free (else the dated one stays)
            run = run.rename(stem)
    except BaseException:
        run.release()
        shutil.rmtree(run.path, ignore_errors=True)
        raise
    return run
