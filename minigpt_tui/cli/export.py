"""`minigpt-tui --export RUN --format hf|gguf|safetensors --out PATH [--dtype D] [--checkpoint best|last]`:
a run as a transformers folder, a GGUF file for llama.cpp, or (GRU/LSTM) a safetensors bundle.
The work is core/export's; this prints what was written and how to use it."""

from __future__ import annotations

import sys

from minigpt_tui.cli.common import USER_ERROR, checkpoint_kind

FORMATS = ("hf", "gguf", "safetensors")


def add_arguments(parser, mode) -> None:
    mode.add_argument("--export", metavar="RUN",
                      help="write a run for other tools: --format hf (transformers), gguf (llama.cpp, Ollama) "
                           "or safetensors (GRU/LSTM runs)")
    e = parser.add_argument_group("export (with --export RUN; also --checkpoint)")
    e.add_argument("--format", dest="export_format", metavar="hf|gguf|safetensors", help="what to write")
    e.add_argument("--out", metavar="PATH", help="the folder (hf, safetensors) or file (gguf) to write; must not exist")
    e.add_argument("--dtype", metavar="f32|f16|bf16|q8_0",
                   help="weights' type (default: f32 for hf, f16 for gguf; q8_0 for gguf only)")


def cmd_export(args) -> int:
    from minigpt_tui.core.runs.run_dir import RunDir

    problem = _problem(args)
    if problem:
        print(f"minigpt-tui: {problem}", file=sys.stderr)
        return USER_ERROR
    run = RunDir.resolve(args.export)
    if args.export_format == "hf":
        from minigpt_tui.core.export.hf_folder import export_hf

        arch = export_hf(run, args.out, args.checkpoint, args.dtype or "f32")
        print(f"Wrote {args.out}: {run.name} as {arch} for transformers "
              "(AutoModelForCausalLM.from_pretrained and AutoTokenizer.from_pretrained load it).")
    elif args.export_format == "gguf":
        from minigpt_tui.core.export.gguf_file import export_gguf, run_instructions

        arch, path = export_gguf(run, args.out, args.checkpoint, args.dtype or "f16")
        print(f"Wrote {path}: {run.name} as llama.cpp's {arch} architecture, {args.dtype or 'f16'}.")
        print(run_instructions(path, run.name))
    else:
        from minigpt_tui.core.export.bundle import export_bundle

        export_bundle(run, args.out, args.checkpoint)
        print(f"Wrote {args.out}: {run.name}'s weights, config, tokenizer and modeling_rnn.py (see its README.md).")
    return 0


def _problem(args) -> str:
    if args.export_format not in FORMATS:
        return f"--export needs --format hf, gguf or safetensors, got {args.export_format!r}."
    if not args.out:
        return "--export needs --out PATH (a new folder, or a .gguf file for --format gguf)."
    try:
        checkpoint_kind(args.checkpoint)
    except ValueError as err:
        return str(err)
    allowed = {"hf": ("f32", "f16", "bf16"), "gguf": ("f32", "f16", "bf16", "q8_0"), "safetensors": ("f32",)}
    if args.dtype is not None and args.dtype not in allowed[args.export_format]:
        return f"--dtype for --format {args.export_format} is one of {', '.join(allowed[args.export_format])}, got {args.dtype!r}."
    return ""
