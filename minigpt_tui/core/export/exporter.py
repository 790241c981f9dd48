"""One entry to every export format: write the run, say what was written and how to use it.
The command line (cli/export.py) prints what this returns; the app's Export dialog shows it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from minigpt_tui.core.errors import ExportError
from minigpt_tui.core.export.fit import DEFAULT_DTYPE, FORMAT_DTYPES, FORMATS
from minigpt_tui.core.runs.run_dir import RunDir


@dataclass(frozen=True)
class Exported:
    path: Path  # the folder or file written
    summary: str  # one sentence: what was written
    instructions: str = ""  # how to run it (gguf: llama.cpp and Ollama), else ""


def export_run(run_dir: RunDir, fmt: str, out: Path, checkpoint: str = "best", dtype: str | None = None) -> Exported:
    """Write `run_dir` as `fmt` ("hf", "gguf", "safetensors") to `out`, which must not exist (an
    empty folder will do for the folder formats). Errors a user can act on are core.errors' USER_ERRORS."""
    if fmt not in FORMATS:
        raise ExportError(f"The export format is one of {', '.join(FORMATS)}, got {fmt!r}.")
    dtype = dtype or DEFAULT_DTYPE[fmt]
    if dtype not in FORMAT_DTYPES[fmt]:
        raise ExportError(f"A {fmt} export's weights are one of {', '.join(FORMAT_DTYPES[fmt])}, got {dtype!r}.")
    out = Path(out).expanduser()
    if fmt == "hf":
        from minigpt_tui.core.export.hf_folder import export_hf

        arch = export_hf(run_dir, out, checkpoint, dtype)
        return Exported(out, f"Wrote {out}: {run_dir.name} as {arch} for transformers "
                             "(AutoModelForCausalLM.from_pretrained and AutoTokenizer.from_pretrained load it).")
    if fmt == "gguf":
        from minigpt_tui.core.export.gguf_file import export_gguf, run_instructions

        arch, path, has_end = export_gguf(run_dir, out, checkpoint, dtype)
        return Exported(path, f"Wrote {path}: {run_dir.name} as llama.cpp's {arch} architecture, {dtype}.",
                        run_instructions(path, run_dir.name, has_end))
    from minigpt_tui.core.export.bundle import export_bundle

    export_bundle(run_dir, out, checkpoint)
    return Exported(out, f"Wrote {out}: {run_dir.name}'s weights, config, tokenizer and modeling_rnn.py "
                         "(see its README.md).")
