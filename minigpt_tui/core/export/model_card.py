"""The short README.md an exported model carries: what it is, how it was trained, how well it
does, and how to load it (with what differs from minigpt-tui past the context window)."""

from __future__ import annotations

from minigpt_tui.core.runs.evaluations import latest_by_split, read_evaluations
from minigpt_tui.core.runs.run_dir import LoadedRun, RunDir


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("minigpt-tui")
    except PackageNotFoundError:
        return "(development)"


def model_card(run_dir: RunDir, run: LoadedRun, architecture: str, fmt: str) -> str:
    meta, cfg, tok = run_dir.read_meta(), run.config.model, run.tokenizer
    loss = f"{meta.best_val_loss:.4f} nats per token" if meta.best_val_loss is not None else "not measured"
    evaluated = latest_by_split(read_evaluations(run_dir.path)).get("valid")
    bpc = (f"{evaluated['bits_per_char']:.4f} (full pass over the validation split)"
           if evaluated and isinstance(evaluated.get("bits_per_char"), (int, float)) else
           f"not measured yet (`minigpt-tui --evaluate {run_dir.name}`)")
    origin = f"imported from {meta.imported_from}" if meta.imported_from else f"trained on {meta.corpus}"
    if meta.started_from:
        origin += f", fine-tuned from {meta.started_from}"
    rows = [("architecture", f"{architecture} ({cfg.family}, {cfg.n_layer} layers, width {cfg.n_embd})"),
            ("recipe", meta.recipe or "-"), ("origin", origin),
            ("tokenizer", f"{tok.kind}, {tok.vocab_size} tokens"), ("parameters", f"{meta.params:,}"),
            ("steps", f"{run.step:,}"), ("validation loss", loss), ("bits per character", bpc),
            ("context", f"{cfg.context_length} tokens"), ("exported by", f"minigpt-tui {_version()}")]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    lines = [f"# {run_dir.name}", "", f"A small language model made with minigpt-tui, exported as {fmt}.", "",
             "| | |", "|---|---|", table, ""]
    if fmt == "hf":
        lines += ["```python", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
                  'model = AutoModelForCausalLM.from_pretrained("PATH")',
                  'tokenizer = AutoTokenizer.from_pretrained("PATH")', "```", ""]
    if cfg.family == "transformer" and cfg.positions == "rotary":
        lines += [f"Within {cfg.context_length} tokens the logits equal minigpt-tui's. Past that, minigpt-tui "
                  "slides its attention window while other tools attend to everything (max_position_embeddings "
                  f"is {cfg.context_length}): keep prompt and output within the context.", ""]
    return "\n".join(lines)
