"""`minigpt-tui --import SOURCE [--name NAME]`: a Hugging Face model (hub id or local folder) as a
run; `--import list`: the suggested models. The work is core/pretrained's; this prints."""

from __future__ import annotations

from minigpt_tui.cli.common import USER_ERROR


def cmd_import(args) -> int:
    from minigpt_tui.core.pretrained.importer import import_model
    from minigpt_tui.core.pretrained.suggested import format_suggested

    if args.import_source == "list":
        print(format_suggested())
        return 0
    if args.name is not None and not args.name.strip():
        print("minigpt-tui: --name cannot be empty.")
        return USER_ERROR
    run = import_model(args.import_source, args.name)
    meta, config = run.read_meta(), run.config()
    m = config.model
    layout = "Llama" if meta.recipe == "imported-llama" else "GPT-2"
    print(f"Imported {meta.imported_from} as run {run.name}: {layout} layout, {meta.params / 1e6:.1f}M parameters, "
          f"{m.n_layer} layers, context {m.context_length}, vocabulary {meta.vocab_size}.")
    print(f"Run folder: {run.path}")
    tokenizer = run.tokenizer()
    chat = f"minigpt-tui --chat {run.name}" + (" --mode instruct" if tokenizer.chat_template else "")
    print(f"Try: minigpt-tui --generate {run.name} --prompt 'Once upon a time'   or   {chat}")
    print(f"Fine-tune: minigpt-tui --train --from {run.name} --set data.path=/path/to/text.txt")
    return 0
