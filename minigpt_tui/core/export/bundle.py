"""`--export RUN --format safetensors --out DIR`: an RNN run as a portable bundle.

GRU and LSTM language models have no architecture in transformers or llama.cpp, so the bundle
carries what any PyTorch user needs instead: model.safetensors (our parameter names; a tied
head is stored once, as embed.weight), config.json (the model section, the vocabulary size and
the tokenizer kind), tokenizer.json (+ tokenizer_config.json) for the `tokenizers` library,
modeling_rnn.py (the model in plain PyTorch, rnn_model_file.py) and a README.md.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from minigpt_tui.core.errors import ExportError
from minigpt_tui.core.export.hf_folder import finish_out, prepare_out
from minigpt_tui.core.export.model_card import model_card
from minigpt_tui.core.export.tokenizer_files import tokenizer_config, tokenizer_json
from minigpt_tui.core.runs.run_dir import RunDir

USAGE = """```python
import torch
from modeling_rnn import load          # this folder on sys.path
from tokenizers import Tokenizer

model = load(".")
tokenizer = Tokenizer.from_file("tokenizer.json")
ids = torch.tensor([tokenizer.encode("In the beginning").ids])
logits, state = model(ids)             # feed state back in to go on token by token
```
"""


def export_bundle(run_dir: RunDir, out: Path, checkpoint: str = "best") -> None:
    from safetensors.torch import save_file

    run = run_dir.load(checkpoint)
    cfg = run.config.model
    if cfg.family == "cnn":
        raise ExportError(f"Run {run_dir.name} is a CNN, which no export format takes yet (the safetensors "
                          "bundle's model file is for GRU and LSTM runs); use it here, with --generate or --chat.")
    if cfg.family not in ("gru", "lstm"):
        raise ExportError(f"Run {run_dir.name} is a Transformer: export it with --format hf (a transformers folder) "
                          "or --format gguf; the safetensors bundle is for GRU and LSTM runs.")
    state = {k: v.detach().float().cpu().contiguous().clone() for k, v in run.model.state_dict().items()
             if not (cfg.tie_weights and k == "head.weight")}
    config = {**dataclasses.asdict(cfg), "vocab_size": run.tokenizer.vocab_size,
              "tokenizer": run.tokenizer.kind, "format": "minigpt-tui rnn bundle 1"}
    tmp = prepare_out(out)
    try:
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        (tmp / "tokenizer.json").write_text(tokenizer_json(run.tokenizer), encoding="utf-8")
        (tmp / "tokenizer_config.json").write_text(
            json.dumps(tokenizer_config(run.tokenizer, cfg.context_length), indent=2) + "\n", encoding="utf-8")
        shutil.copyfile(Path(__file__).with_name("rnn_model_file.py"), tmp / "modeling_rnn.py")
        card = model_card(run_dir, run, cfg.family.upper(), "a safetensors bundle") + "\n" + USAGE
        (tmp / "README.md").write_text(card, encoding="utf-8")
        finish_out(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
