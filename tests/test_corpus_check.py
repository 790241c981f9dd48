"""Issue 13, defect 4: the Train form's corpus check and the trainer's are one function.

Each bad corpus gets the same sentence from check_corpus (the cheap check the form runs as the
user types), from the form's check_form (what Start is refused with) and from load_corpus (what
the trainer raises); a good one is accepted by all three.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from minigpt_tui.core.config import DataConfig, RunConfig
from minigpt_tui.core.data.corpus import PREFIX_BYTES, check_corpus, load_corpus
from minigpt_tui.core.errors import CorpusError
from minigpt_tui.tui.formatting import clip, fmt_bytes
from minigpt_tui.tui.train.form import check_form, describe_corpus
from minigpt_tui.tui.train.process import TrainerProcess

TEXT = "In the beginning God created the heaven and the earth.\n" * 40


def _form(path_text: str):
    return check_form(RunConfig(), {"data.path": path_text}, "")


def _trainer_says(path_text: str) -> str | None:
    """The trainer's CorpusError sentence for this data.path, or None when it loads."""
    try:
        load_corpus(DataConfig(path=path_text))
    except CorpusError as err:
        return str(err)
    return None


def _bad(kind: str, tmp_path: Path) -> tuple[str, str, str]:
    """(data.path, words the sentence must hold, words the hint must hold) for a bad corpus."""
    if kind == "bin-ls":
        if not Path("/bin/ls").is_file():
            pytest.skip("no /bin/ls here")
        return "/bin/ls", "looks like a binary file", "binary"
    if kind == "binary":
        path = tmp_path / "blob.txt"
        path.write_bytes(bytes(range(256)) * 16)
        return str(path), "looks like a binary file", "binary"
    if kind == "dev-zero":
        return "/dev/zero", "is not a regular file", "not a regular file"
    if kind == "fifo":
        path = tmp_path / "pipe.txt"
        os.mkfifo(path)
        return str(path), "is not a regular file", "not a regular file"
    if kind == "empty":
        path = tmp_path / "empty.txt"
        path.write_bytes(b"")
        return str(path), "is empty", "empty"
    if kind == "whitespace-only":
        path = tmp_path / "blank.txt"
        path.write_text(" \n\n\t \n")
        return str(path), "is empty", "empty"
    if kind == "missing":
        return str(tmp_path / "nowhere" / "corpus.txt"), "does not exist", "no such file"
    if kind == "folder-without-wikitext":
        folder = tmp_path / "stuff"
        folder.mkdir()
        (folder / "notes.md").write_text("hello")
        return str(folder), "no usable corpus", "wiki.train.tokens"
    if kind == "wikitext-with-empty-train":
        folder = tmp_path / "wikitext"
        folder.mkdir()
        (folder / "wiki.train.tokens").write_text("")
        (folder / "wiki.valid.tokens").write_text(TEXT)
        return str(folder), "is empty", "wiki.train.tokens"
    if kind == "latin-1":
        path = tmp_path / "latin1.txt"
        path.write_bytes("café crème brûlée, déjà vu\n".encode("latin-1") * 50)
        return str(path), "is not UTF-8 text (bad byte at offset 3)", "UTF-8"
    raise ValueError(kind)


BAD = ["bin-ls", "binary", "dev-zero", "fifo", "empty", "whitespace-only", "missing", "folder-without-wikitext",
       "wikitext-with-empty-train", "latin-1"]


@pytest.mark.parametrize("kind", BAD)
def test_the_form_and_the_trainer_refuse_a_bad_corpus_with_one_sentence(kind, tmp_path):
    path_text, sentence_words, hint_words = _bad(kind, tmp_path)
    check = check_corpus(path_text)
    assert not check.ok
    assert sentence_words in check.problem and path_text in check.problem and check.problem.endswith(".")
    assert hint_words in check.summary
    form = _form(path_text)
    assert not form.corpus_ok and form.config is None
    assert hint_words in form.corpus_hint
    assert form.errors["data.path"] == check.problem  # what Start is refused with
    assert _trainer_says(path_text) == check.problem  # what the trainer raises


def test_a_device_is_not_a_regular_file_not_a_missing_one():
    ok, hint = describe_corpus("/dev/zero")
    assert not ok and hint == "not a regular file"
    assert "no such file" not in _form("/dev/zero").errors["data.path"]


def test_a_named_pipe_is_refused_without_opening_it(tmp_path):
    """Opening a FIFO with no writer blocks forever; the check must not get that far."""
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    result = []
    worker = threading.Thread(target=lambda: result.append(check_corpus(str(pipe))), daemon=True)
    worker.start()
    worker.join(5)
    assert result and not result[0].ok and "not a regular file" in result[0].problem


def test_a_text_file_is_accepted_by_both(tmp_path):
    path = tmp_path / "input.txt"
    path.write_text(TEXT)
    check = check_corpus(str(path))
    assert check.ok and check.problem == "" and check.summary == "text file" and check.size == len(TEXT)
    assert describe_corpus(str(path)) == (True, f"text file, {fmt_bytes(len(TEXT))}")
    assert _form(str(path)).corpus_ok and "data.path" not in _form(str(path)).errors
    assert _trainer_says(str(path)) is None


def test_a_wikitext_folder_and_the_builtin_bible_are_accepted(tmp_path):
    folder = tmp_path / "wt"
    folder.mkdir()
    (folder / "wiki.train.tokens").write_text(TEXT)
    (folder / "wiki.valid.tokens").write_text(TEXT)
    assert describe_corpus(str(folder)) == (True, "WikiText folder (.tokens)")
    assert _trainer_says(str(folder)) is None
    assert describe_corpus("") == (True, "built-in KJV Bible")
    assert describe_corpus("   ") == (True, "built-in KJV Bible")
    assert load_corpus(DataConfig(path="   ")).name == "kjv"  # as the form says: blank means built-in


def test_the_check_reads_a_bounded_prefix(tmp_path):
    """As-you-type checking reads at most PREFIX_BYTES: a 4 GiB (sparse) file is checked at once.
    A bad byte past the prefix is the trainer's to find, in the sentence the check would give."""
    big = tmp_path / "big.txt"
    with big.open("wb") as f:
        f.write(b"a" * (PREFIX_BYTES + 10) + "\u00e9\n".encode("latin-1"))
    assert _trainer_says(str(big)) == (f"Corpus file {big} is not UTF-8 text (bad byte at offset {PREFIX_BYTES + 10}); "
                                       "convert it, e.g. with iconv -t utf-8.")
    with big.open("r+b") as f:
        f.truncate(4 << 30)
    started = time.monotonic()
    check = check_corpus(str(big))
    assert check.ok and check.size == 4 << 30
    assert time.monotonic() - started < 2


def test_a_multibyte_character_cut_by_the_prefix_is_not_an_error(tmp_path):
    path = tmp_path / "accents.txt"
    path.write_bytes(b"a" * (PREFIX_BYTES - 1) + "é and more\n".encode("utf-8"))
    assert check_corpus(str(path)).ok and _trainer_says(str(path)) is None


# ---- long messages are cut with an ellipsis --------------------------------------------------------


def test_clip_ends_cut_text_with_an_ellipsis():
    assert clip("short", 10) == "short"
    assert clip("x" * 300, 200) == "x" * 199 + "…" and len(clip("x" * 300, 200)) == 200


def test_a_long_stderr_line_in_a_crash_message_ends_with_an_ellipsis():
    trainer = TrainerProcess(["--train", "x.toml"])
    trainer.returncode, trainer.stderr_lines = 1, ["RuntimeError: " + "very long " * 50]
    message = trainer.crash_message()
    assert message.startswith("The trainer exited with status 1: RuntimeError: very long")
    assert message.endswith("…")
