"""Instruct mode: a conversation read through the model's own chat template.

Each turn the conversation (the system prompt if any, then the user and assistant messages of
the path shown) is rendered by the template with the generation prompt
(core.data.hf_chat_template, as transformers' apply_chat_template renders it) and tokenized,
the special tokens the template writes read as themselves. The BOS goes first where the model
wants one (tokenizer.bos_ids) and the rendering does not already start with it.

A reply ends at a token of tokenizer.end_ids (the eos token and the template's end of turn);
what the model wrote, without that token, is the assistant message of later renderings, while
the session has read the tokens the model wrote. A template need not render turn n+1 as an
extension of turn n (one may mark the last message, or drop earlier replies' reasoning), and
a reply re-tokenized need not give the tokens the model wrote: core.generation.chat compares
what is to be read with what the session has read and reads from where they part.

A user turn's `prefix` is the template text shown before the words (since the previous
message; the system prompt with the first), its `suffix` the text after them (the generation
prompt): found by rendering once more with markers in place of the messages' contents.
Torch-free, and Jinja2 is imported on the first rendering.
"""

from __future__ import annotations

from typing import Any

from minigpt_tui.core.data.hf_chat_template import PROBE, render, special_tokens
from minigpt_tui.core.generation.conversation import Turn


def messages(path: list[Turn], system: str = "") -> list[dict]:
    """The chat messages of a conversation's path, after the system prompt."""
    out = [{"role": "system", "content": system}] if system else []
    return out + [{"role": "user" if t.role == "user" else "assistant", "content": t.text} for t in path]


def rendering(tokenizer: Any, path: list[Turn], system: str = "") -> str:
    """The conversation as the template writes it, ready for the model's reply."""
    return render(tokenizer.chat_template, messages(path, system), add_generation_prompt=True,
                  special_tokens=special_tokens(tokenizer))


def rendered_ids(tokenizer: Any, text: str) -> list[int]:
    """A rendering's tokens, after the BOS the model wants unless the template wrote it."""
    bos = special_tokens(tokenizer).get("bos_token")
    lead = [] if bos and text.startswith(bos) else list(tokenizer.bos_ids)
    return lead + tokenizer.encode(text)


def read_ids(tokenizer: Any, path: list[Turn], system: str = "") -> list[int]:
    """What a session must have read at the end of `path`: the rendering up to its last user
    turn, then the tokens of the replies after it as the model wrote them (end token included)."""
    k = len(path)
    while k and path[k - 1].role == "model":
        k -= 1
    written = [i for t in path[k:] for i in t.ids]
    if k == 0:  # no user turn (a co-write conversation continued here): the replies alone
        return written
    return rendered_ids(tokenizer, rendering(tokenizer, path[:k], system)) + written


def turn_text(tokenizer: Any, path: list[Turn], system: str = "") -> tuple[str, str]:
    """(prefix, suffix) the template writes around the last turn of `path` (see the module
    docstring). The markers must stand for the contents as they are or stripped (Llama 3's
    template trims them); where they do not (a template that rewrites an earlier reply) only
    the last message is marked and the prefix is left out; where even that fails, ("", "").
    ChatTemplateError if the template cannot render the path."""
    msgs = messages(path, system)
    tokens = special_tokens(tokenizer)
    real = render(tokenizer.chat_template, msgs, add_generation_prompt=True, special_tokens=tokens)
    last = len(msgs) - 1
    for marked_ones in (range(len(msgs)), (last,)):
        shown = [dict(m, content=PROBE.format(k)) if k in marked_ones else m for k, m in enumerate(msgs)]
        try:
            marked = render(tokenizer.chat_template, shown, add_generation_prompt=True, special_tokens=tokens)
        except ValueError:  # (a template that checks contents)
            continue
        at = marked.find(PROBE.format(last))
        if at < 0 or marked.count(PROBE.format(last)) != 1:
            continue
        for strip in (False, True):
            if _fill(marked, msgs, marked_ones, strip) != real:
                continue
            end = at + len(PROBE.format(last))
            start = at  # (no prefix when the previous message is not marked)
            if len(path) == 1:
                start = 0
            elif last - 1 in marked_ones:  # from the end of the previous turn's text
                previous = marked.rfind(PROBE.format(last - 1), 0, at)
                start = previous + len(PROBE.format(last - 1)) if previous >= 0 else at
            return _fill(marked[start:at], msgs, marked_ones, strip), _fill(marked[end:], msgs, marked_ones, strip)
    return "", ""


def _fill(text: str, msgs: list[dict], marked: Any, strip: bool) -> str:
    """Rendered text with the markers it holds (a template may repeat a message) as the contents."""
    for k in marked:
        content = msgs[k]["content"]
        text = text.replace(PROBE.format(k), content.strip() if strip else content)
    return text
