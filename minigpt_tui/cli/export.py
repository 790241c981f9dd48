"""`minigpt-tui --export RUN --format hf|gguf|safetensors --out PATH [--dtype D] [--checkpoint best|last]`:
a run as a transformers folder, a GGUF file for llama.cpp, or (GRU/LSTM) a safetensors bundle.
The work is core/export's; this prints what was written and how to use it."""

from __future__ import annotations

import sys

from minigpt_tui.cli.common import USER_ERROR, checkpoint_kind


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
    from minigpt_tui.core.export.exporter import export_run

    run = RunDir.resolve(args.export)
    exported = export_run(run, args.export_format, args.out, args.checkpoint, args.dtype)
    print(exported.summary)
    if exported.instructions:
        print(exported.instructions)
    return 0


def _problem(args) -> str:
    from minigpt_tui.core.export.fit import FORMAT_DTYPES as allowed
    from minigpt_tui.core.export.fit import FORMATS

    if args.export_format not in FORMATS:
        return f"--export needs --format hf, gguf or safetensors, got {args.export_format!r}."
    if not args.out:
        return "--export needs --out PATH (a new folder, or a .gguf file for --format gguf)."
    try:
        checkpoint_kind(args.checkpoint)
    except ValueError as err:
        return str(err)
    if args.dtype is not None and args.dtype not in allowed[args.export_format]:
        return f"--dtype for --format {args.export_format} is one of {', '.join(allowed[args.export_format])}, got {args.dtype!r}."
    return ""
