"""A model's chat template (Jinja) rendered exactly as transformers' apply_chat_template renders it.

An instruct model ships a template that turns a list of messages into the text it was tuned
on (core/generation's instruct mode reads the conversation through it). transformers 5.x
(utils/chat_template_utils.py: _compile_jinja_template, render_jinja_template) compiles it in
an ImmutableSandboxedEnvironment with trim_blocks and lstrip_blocks, the loopcontrols extension
and a `{% generation %}` block tag, its own `tojson` filter (no HTML escaping, ensure_ascii off)
and the globals raise_exception, strftime_now, dict and namespace; it renders with `messages`,
`tools` and `documents` (None here), `add_generation_prompt`, and the tokenizer's special
tokens as strings (bos_token, eos_token, unk_token, ...: only those it has, so a template can
test `if bos_token is defined`). The same is done here: a conversation must read exactly as
the model saw conversations in tuning. Templates come from the hub, hence the sandbox.

Jinja2 is imported on the first render, never at start-up (the app must start fast).
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from typing import Any

# transformers' SPECIAL_TOKENS_ATTRIBUTES: the names a template may read the special tokens by
SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
# Two private-use characters that no template writes: they mark a message's content in a probe.
PROBE = "\ue000{}\ue001"


class ChatTemplateError(ValueError):
    """A chat template that cannot be rendered; str(err) is one sentence."""


def render(template: str, messages: list[dict], add_generation_prompt: bool = True,
           special_tokens: dict[str, str] | None = None) -> str:
    """The text of `messages` ([{"role", "content"}, ...]) under `template`, as
    apply_chat_template(messages, tokenize=False, add_generation_prompt=...) gives it."""
    import jinja2

    compiled = _compile(template)
    # (messages are copied into plain dicts, as transformers does: a template cannot touch ours)
    plain = [{str(k): v for k, v in m.items() if v is not None} for m in messages]
    try:
        return compiled.render(messages=plain, tools=None, documents=None,
                               add_generation_prompt=add_generation_prompt, **(special_tokens or {}))
    except jinja2.TemplateError as err:  # raise_exception(...) included, and sandbox refusals
        raise ChatTemplateError(f"The model's chat template refused this conversation: {_sentence(err)}") from None
    except Exception as err:  # a template bug (a None concatenated, a bad index): still one sentence
        raise ChatTemplateError(f"The model's chat template failed on this conversation "
                                f"({type(err).__name__}: {_sentence(err)})") from None


def _sentence(err: Exception) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if text.endswith((".", "!", "?", ")")) else text + "."


@lru_cache(maxsize=8)
def _compile(template: str):
    try:
        return _environment().from_string(template)
    except Exception as err:  # jinja2.TemplateSyntaxError, mostly
        line = getattr(err, "lineno", None)
        where = f" (line {line})" if line else ""
        raise ChatTemplateError(f"The model's chat template is not valid Jinja{where}: {_sentence(err)}") from None


@lru_cache(maxsize=1)
def _environment():
    """The environment transformers renders chat templates in (see the module docstring)."""
    import jinja2
    import jinja2.ext
    import jinja2.nodes
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationTag(jinja2.ext.Extension):
        # transformers' AssistantTracker: `{% generation %}...{% endgeneration %}` marks the
        # assistant's text for training masks; rendering, it is its body as is.
        tags = frozenset({"generation"})

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller):
            return caller()

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.now().strftime(format)

    class TemplateDict:
        # A `dict` without attribute access to the type (as transformers gives templates)
        def __call__(self, *args, **kwargs):
            return dict(*args, **kwargs)

        def fromkeys(self, *args, **kwargs):
            return dict.fromkeys(*args, **kwargs)

    class TemplateNamespace(jinja2.utils.Namespace):
        # A namespace that refuses underscore names (no way to CPython's internals)
        def __init__(*args, **kwargs):
            self, args = args[0], args[1:]
            attrs = dict(*args, **kwargs)
            for name in attrs:
                TemplateNamespace._check(name)
            jinja2.utils.Namespace.__init__(self, attrs)

        def __setitem__(self, name, value):
            TemplateNamespace._check(name)
            jinja2.utils.Namespace.__setitem__(self, name, value)

        @staticmethod
        def _check(name):
            if isinstance(name, str) and name.startswith("_"):
                raise jinja2.exceptions.SecurityError(f"a namespace cannot store the attribute {name!r}")

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationTag, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals.update(raise_exception=raise_exception, strftime_now=strftime_now, dict=TemplateDict(),
                       namespace=TemplateNamespace)
    return env


# ---- what a tokenizer brings to a render -----------------------------------------------------------


def special_tokens(tokenizer: Any) -> dict[str, str]:
    """The special tokens a template sees, as strings, from an hf tokenizer's settings (a token
    stored as an id is looked up); those it lacks are left out, as transformers leaves them."""
    out = {}
    for name in SPECIAL_TOKEN_NAMES:
        value = tokenizer.settings.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            value = tokenizer.hf.id_to_token(value)
        if isinstance(value, str):
            out[name] = value
    return out


def end_of_turn_ids(tokenizer: Any) -> set[int]:
    """The tokens the template closes an assistant message with (ChatML's <|im_end|>, Llama 3's
    <|eot_id|>, Gemma's <end_of_turn>, the eos token of Zephyr or Llama 2): found by rendering a
    probe exchange and reading the first special token after the reply's text. Empty when the
    template cannot render the probe (the eos token still ends a reply)."""
    template = tokenizer.chat_template
    if not template:
        return set()
    reply = PROBE.format("reply")
    probe = [{"role": "user", "content": PROBE.format("user")}, {"role": "assistant", "content": reply}]
    try:
        text = render(template, probe, add_generation_prompt=False, special_tokens=special_tokens(tokenizer))
    except ChatTemplateError:
        return set()
    at = text.rfind(reply)
    if at < 0:
        return set()
    special = {t["content"] for t in tokenizer.tokenizer_json.get("added_tokens", []) if t.get("special")}
    for token_id in tokenizer.encode(text[at + len(reply):]):
        token = tokenizer.hf.id_to_token(token_id)
        if token in special:
            return {token_id}
        if tokenizer.decode([token_id]).strip():  # text before any special token: no end marker
            return set()
    return set()
