"""The models `--import list` suggests: small enough to download and run on a laptop, in the
two layouts the conversion reads (GPT-2 and Llama), from a plain base model to chat ones.

A list of well-known ids rather than a search of the hub: it needs no network, and these are
known to convert. Any other model of those layouts imports just as well; the last line of
format_suggested() says so. The figures are approximate (the hub's file sizes, rounded) and
are only there to tell a person what they are about to download.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class SuggestedModel:
    """One suggestion. `download` is the size of its *.safetensors weights (the bulk of what
    --import fetches); `chat` says whether it was tuned to chat and ships a chat template."""

    hub_id: str
    architecture: Literal["gpt2", "llama"]
    parameters: str
    download: str
    licence: str
    good_for: str
    chat: bool


SUGGESTED: tuple[SuggestedModel, ...] = (
    SuggestedModel("distilbert/distilgpt2", "gpt2", "82M", "~353 MB", "Apache-2.0",
                   "the smallest GPT-2: quick to import and fine-tune", False),
    SuggestedModel("gpt2", "gpt2", "124M", "~548 MB", "MIT",
                   "the classic base model; continues English text", False),
    SuggestedModel("gpt2-medium", "gpt2", "355M", "~1.5 GB", "MIT",
                   "a larger GPT-2, better text, slower on a CPU", False),
    SuggestedModel("HuggingFaceTB/SmolLM2-135M", "llama", "135M", "~270 MB", "Apache-2.0",
                   "a small modern base model to fine-tune", False),
    SuggestedModel("HuggingFaceTB/SmolLM2-135M-Instruct", "llama", "135M", "~270 MB", "Apache-2.0",
                   "the smallest that chats (simple answers)", True),
    SuggestedModel("HuggingFaceTB/SmolLM2-360M-Instruct", "llama", "360M", "~725 MB", "Apache-2.0",
                   "a better small chat model, still quick", True),
    SuggestedModel("TinyLlama/TinyLlama-1.1B-Chat-v1.0", "llama", "1.1B", "~2.2 GB", "Apache-2.0",
                   "the best chat here; wants a GPU or patience", True),
)

_HEADER = ("Model", "Arch", "Params", "Download", "Licence", "Chat", "Good for")


def format_suggested() -> str:
    """A plain-text table of SUGGESTED (columns aligned with spaces, so it reads in any
    terminal and in a pipe) and a line on how to import one, or any other."""
    rows = [_HEADER] + [(m.hub_id, m.architecture, m.parameters, m.download, m.licence,
                         "yes" if m.chat else "no", m.good_for) for m in SUGGESTED]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADER) - 1)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1] for row in rows]
    lines.append("")
    lines.append("Import one with `minigpt-tui --import ID [--name NAME]`; any other GPT-2 or Llama-layout model "
                 "on the Hugging Face hub works too, as does a local folder holding its config.json, "
                 "*.safetensors and tokenizer.json.")
    return "\n".join(lines)
