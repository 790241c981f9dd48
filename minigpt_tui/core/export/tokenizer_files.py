"""A run's tokenizer as the files transformers' AutoTokenizer reads: tokenizer.json (a
`tokenizers` model) and tokenizer_config.json, giving our ids for every kind:

char   a WordLevel vocabulary of single characters; the pre-tokenizer cuts the text into its
       characters (any character, newlines too), unknown ones become <unk>; decoding joins them.
word   a WordLevel vocabulary of words and "\n", cut where ours cuts (runs of whitespace
       other than newlines are dropped, each newline is a token); decoding puts a space
       between words but none around a newline, as ours does.
bpe    our byte-level BPE is a `tokenizers` model already: written as it is.
hf     an imported model's own tokenizer.json, with its BOS/EOS and chat template.
"""

from __future__ import annotations

import json

from minigpt_tui.core.data.tokenizer import UNK, Tokenizer


def tokenizer_json(tokenizer: Tokenizer) -> str:
    """The tokenizer.json text for `tokenizer`."""
    from tokenizers import Regex, decoders, models, pre_tokenizers
    from tokenizers import Tokenizer as HFTokenizer

    if tokenizer.kind == "bpe":
        return tokenizer.hf.to_str()  # type: ignore[attr-defined]
    if tokenizer.kind == "hf":
        return json.dumps(tokenizer.tokenizer_json, ensure_ascii=False)  # type: ignore[attr-defined]
    vocab = {token: i for i, token in enumerate(tokenizer.itos)}
    hf = HFTokenizer(models.WordLevel(vocab, unk_token=UNK))
    if tokenizer.kind == "char":
        hf.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
        hf.decoder = decoders.Fuse()
    else:
        hf.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(r"[^\S\n]+"), behavior="removed"),
            pre_tokenizers.Split("\n", behavior="isolated"),
        ])
        # Each word gets a space after it, then, on the joined text, the spaces next to a newline
        # go and so does the last one: "a", "\n", "b", "c" -> "a \n b c " -> "a\nb c".
        hf.decoder = decoders.Sequence([
            decoders.Replace(Regex(r"\z"), " "), decoders.Fuse(),
            decoders.Replace(" \n", "\n"), decoders.Replace("\n ", "\n"), decoders.Strip(" ", 0, 1),
        ])
    return hf.to_str()


def tokenizer_config(tokenizer: Tokenizer, context_length: int) -> dict:
    """tokenizer_config.json: the fast tokenizer class, the special tokens, the chat template."""
    config: dict = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": context_length,
                    "clean_up_tokenization_spaces": False}
    if tokenizer.kind in ("char", "word"):
        config["unk_token"] = UNK
    if tokenizer.kind == "hf":
        settings = tokenizer.settings  # type: ignore[attr-defined]
        for key in ("bos_token", "eos_token"):
            value = settings.get(key)
            if isinstance(value, int):
                value = tokenizer.itos[value]
            if value:
                config[key] = value
        config["add_bos_token"] = bool(settings.get("add_bos"))
        if settings.get("chat_template"):
            config["chat_template"] = settings["chat_template"]
    return config
