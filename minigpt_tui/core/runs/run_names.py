"""Names of runs: what a run folder may be called, and the name a new run starts with.

A new run's folder is named after its recipe, and after its corpus too when that is not the
recipe's own (a kjv-char-transformer trained on tiny Shakespeare should not read as a Bible
model in the run list); a tokenizer or family the recipe's name says is replaced by the run's
own (kjv-char-transformer with data.tokenizer = "bpe" is a kjv-bpe-transformer).
"""

from __future__ import annotations

import re
from pathlib import Path

from minigpt_tui.core import paths
from minigpt_tui.core.config import RunConfig
from minigpt_tui.core.errors import ConfigError

# ---- names ---------------------------------------------------------------------------------------
MAX_NAME_CHARS = 120
MAX_NOTE_CHARS = 500


def run_name_problem(name: str) -> str:
    """Why `name` cannot name a run folder (one sentence), or "" when it can."""
    if not name:
        return "A run name cannot be empty."
    if any(c in name for c in "/\\") or any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "A run name cannot contain a slash, a backslash or control characters."
    if name.startswith("."):
        return "A run name cannot start with a dot (such folders are hidden from the run list)."
    if len(name) > MAX_NAME_CHARS:
        return f"A run name can be at most {MAX_NAME_CHARS} characters; this one has {len(name)}."
    return ""


# File names that say nothing about a corpus: its folder names it instead (tinyshakespeare/input.txt).
_GENERIC_CORPUS_NAMES = {"input", "train", "data", "text", "corpus", "all", "dataset", "full"}


def corpus_slug(corpus: str) -> str:
    """A corpus name or path as a short folder-name word: "tinyshakespeare/input.txt" ->
    "tinyshakespeare", "War and Peace.txt" -> "war-and-peace", "kjv" -> "kjv"."""
    path = Path(corpus.strip().rstrip("/\\"))
    stem = path.name
    for suffix in (".txt", ".tokens", ".raw", ".text", ".md"):
        if stem.lower().endswith(suffix) and len(stem) > len(suffix):
            stem = stem[: -len(suffix)]
            break
    if stem.lower() in _GENERIC_CORPUS_NAMES and path.parent.name:
        stem = path.parent.name
    return re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")[:24].strip("-")


def corpus_label(data_path: str) -> str:
    """The corpus name a data.path loads as (core.data.corpus's Corpus.name), without reading it."""
    if not data_path:
        return "kjv"  # the built-in Bible (corpus.load_corpus names it so)
    return Path(data_path).expanduser().name or "wikitext"


def recipe_corpus(recipe: str | Path) -> str:
    """The corpus a recipe (a name in models/ or a path) trains on as written, e.g. "kjv" for
    data.path = ""; "" when the recipe cannot be found or read."""
    try:
        return corpus_label(RunConfig.load(paths.find_recipe(str(recipe))).data.path)
    except (ConfigError, OSError, ValueError):
        return ""


# The words of recipe names that say a run's tokenizer and model family (kjv-char-transformer).
TOKENIZER_WORDS = ("char", "word", "bpe")
FAMILY_WORDS = ("transformer", "gru", "lstm", "cnn")


def says(name: str, words: tuple[str, ...], actual: str) -> str:
    """`name` with its one word of `words` (hyphen-separated) made `actual`: ("kjv-char-transformer",
    TOKENIZER_WORDS, "bpe") -> "kjv-bpe-transformer". Unchanged when `actual` is not one of
    `words` or the name has none of them, or more than one (nothing to tell which)."""
    parts = name.split("-")
    found = [i for i, part in enumerate(parts) if part in words]
    if actual not in words or len(found) != 1:
        return name
    parts[found[0]] = actual
    return "-".join(parts)


def run_stem(recipe_name: str, recipe_corpus: str, corpus_name: str, tokenizer: str = "", family: str = "") -> str:
    """The start of a new run's folder name: the recipe's name, saying the run's tokenizer and
    model family where the name says one (`tokenizer`, `family`: the run's; "" leaves the name
    as it is), and saying the corpus when it is not the recipe's own. `corpus_name` may be a path (data.path), which names corpora better than
    their file names do. kjv-char-transformer on tinyshakespeare/input.txt ->
    tinyshakespeare-char-transformer (a recipe named after its corpus gets the new one instead);
    kjv-char-gru on war-and-peace.txt -> war-and-peace-char-gru;
    tiny on notes.txt (recipe corpus kjv) -> tiny-notes; shakespeare-char-transformer on
    tinyshakespeare/input.txt -> unchanged (its name says the corpus already);
    kjv-char-transformer with the bpe tokenizer -> kjv-bpe-transformer."""
    recipe_name = says(says(recipe_name, TOKENIZER_WORDS, tokenizer), FAMILY_WORDS, family)
    corpus, own = corpus_slug(corpus_name), corpus_slug(recipe_corpus)
    if not corpus or not own or corpus == own:
        return recipe_name  # the recipe's own corpus, or one we cannot tell apart from it

    def squash(text: str) -> str:
        return re.sub(r"[^a-z0-9]", "", text.lower())

    head, _, rest = recipe_name.partition("-")
    h, c = squash(head), squash(corpus)
    if min(len(h), len(c)) >= 3 and (h in c or c in h):
        return recipe_name
    if rest and h == squash(own):
        return f"{corpus}-{rest}"
    return f"{recipe_name}-{corpus}"
