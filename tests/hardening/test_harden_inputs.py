"""Every bad input is answered: bad corpora, bad configs and bad flags each end in one
sentence (naming the file or the field, saying what to do), a non-zero exit status, no
traceback, and nothing written to the data home.

These call cli.main in-process (the exact code `minigpt-tui` runs); a few are repeated
in a fresh interpreter at the end, to prove the process as a whole behaves the same.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from harden import one_sentence, run_cli, run_process
from kit import TINY_TEXT as TEXT
from kit import write_corpus, write_recipe

SMALL = ["--set", "model.n_layer=1", "--set", "model.n_embd=16", "--set", "model.n_head=2",
         "--set", "model.context_length=16", "--set", "train.max_steps=2", "--set", "train.threads=1",
         "--set", "train.device=cpu", "--set", "train.eval_batches=1", "--set", "train.batch_size=2"]


def train_on(path: Path | str, *extra: str):
    return run_cli("--train", "--set", f"data.path={path}", *SMALL, *extra)


def assert_refused(result, *must_name: str, home: Path) -> str:
    """Non-zero exit, one sentence naming `must_name`, and nothing in the data home (a good
    corpus refused for a setting may have filled the token cache, which is not the data home:
    it lives in its cache/ folder only because the tests point every home at one folder)."""
    assert result.returncode != 0, result
    message = one_sentence(result.stderr)
    for name in must_name:
        assert name in message, message
    assert message.endswith("."), message
    written = [p for p in home.rglob("*") if p.relative_to(home).parts[0] != "cache"] if home.exists() else []
    assert not written, written  # not even a folder
    return message


# ---- corpora ---------------------------------------------------------------------------------------


def _corpus(kind: str, folder: Path) -> tuple[Path, str]:
    """A bad corpus of this kind and a word its message must contain."""
    path = folder / f"{kind}.txt"
    if kind == "empty":
        path.write_bytes(b"")
        return path, "empty"
    if kind == "whitespace-only":
        path.write_text(" \n\n\t \n")
        return path, "empty"
    if kind == "binary":
        path.write_bytes(bytes(range(256)) * 64)
        return path, "binary"
    if kind == "random-bytes":
        path.write_bytes(random.Random(3).randbytes(4096).replace(b"\x00", b"\x01"))
        return path, "UTF-8"
    if kind == "latin-1":
        path.write_bytes("café crème brûlée, déjà vu\n".encode("latin-1") * 50)
        return path, "UTF-8"
    if kind == "utf-16":
        path.write_bytes(TEXT.encode("utf-16"))
        return path, "binary"
    if kind == "shorter-than-a-sequence":
        path.write_text("the cat sat on the mat.\n")
        return path, "context_length"
    if kind == "validation-part-too-short":
        path.write_text("the cat sat on the mat and the dog sat on the log.\n" * 3)  # 10% is < 17 chars
        return path, "validation"
    if kind == "does-not-exist":
        return folder / "nowhere" / "corpus.txt", "does not exist"
    if kind == "folder-with-nothing-usable":
        folder = folder / "stuff"
        folder.mkdir()
        (folder / "notes.md").write_text("hello")
        return folder, "no usable corpus"
    if kind == "wikitext-folder-with-empty-train":
        folder = folder / "wikitext"
        folder.mkdir()
        (folder / "wiki.train.tokens").write_text("")
        (folder / "wiki.valid.tokens").write_text(TEXT)
        return folder, "empty"
    if kind == "a-named-pipe":
        os.mkfifo(path)
        return path, "not a regular file"
    if kind == "a-device":
        return Path("/dev/zero"), "not a regular file"
    raise ValueError(kind)


CORPORA = ["empty", "whitespace-only", "binary", "random-bytes", "latin-1", "utf-16", "shorter-than-a-sequence",
           "validation-part-too-short", "does-not-exist", "folder-with-nothing-usable",
           "wikitext-folder-with-empty-train", "a-named-pipe", "a-device"]


@pytest.mark.parametrize("kind", CORPORA)
def test_a_bad_corpus_is_one_sentence_and_writes_nothing(kind, tmp_path, data_home):
    path, word = _corpus(kind, tmp_path)
    message = assert_refused(train_on(path), word, home=data_home)
    if kind not in ("shorter-than-a-sequence", "validation-part-too-short"):
        assert str(path) in message  # names the file
    # the app reads the same failure as one JSON error event on stdout
    jsonl = train_on(path, "--events", "jsonl")
    assert jsonl.returncode != 0 and jsonl.stderr == ""
    (event,) = jsonl.events
    assert event["type"] == "error" and event["message"] == message


def test_a_bad_validation_file_is_named(tmp_path, data_home):
    corpus = write_corpus(tmp_path)
    bad = tmp_path / "valid.txt"
    bad.write_bytes(b"\xff\xfe\x00\x00" * 10)
    assert_refused(train_on(corpus, "--set", f"data.val_path={bad}"), str(bad), home=data_home)


# ---- configs and flags ----------------------------------------------------------------------------

BAD_SETTINGS = [
    # (--set override, the field the sentence must name)
    ("train.colour=blue", "train.colour"),
    ("optim.lr=1", "optim"),
    ("model.n_layers=2", "model.n_layers"),
    ("train.max_steps=many", "train.max_steps"),
    ("train.max_steps=1.5", "train.max_steps"),
    ("train.max_steps=true", "train.max_steps"),
    ("model.tie_weights=1", "model.tie_weights"),
    ("data.tokenizer=3", "data.tokenizer"),
    ("model.n_layer=0", "model.n_layer"),
    ("model.n_embd=-16", "model.n_embd"),
    ("model.context_length=0", "model.context_length"),
    ("model.n_head=0", "model.n_head"),
    ("train.batch_size=0", "train.batch_size"),
    ("train.max_steps=-5", "train.max_steps"),
    ("train.grad_accum=0", "train.grad_accum"),
    ("train.eval_interval=0", "train.eval_interval"),
    ("train.warmup_steps=-1", "train.warmup_steps"),
    ("data.vocab_size=1", "data.vocab_size"),
    ("data.val_fraction=0", "data.val_fraction"),
    ("model.dropout=-0.1", "model.dropout"),
    ("model.n_head=3", "model.n_head"),  # does not divide n_embd = 16
    ("train.learning_rate=fast", "train.learning_rate"),
    ("train.learning_rate=nan", "train.learning_rate"),
    ("train.learning_rate=inf", "train.learning_rate"),
    ("train.learning_rate=-0.001", "train.learning_rate"),
    ("train.learning_rate=0", "train.learning_rate"),
    ('train.learning_rate="0.001"', "train.learning_rate"),
    ("train.min_lr=1", "train.min_lr"),
    ("train.device=tpu", "train.device"),
    ("model.family=mamba", "model.family"),
    ("train.max_steps", "section.key=value"),
]


@pytest.mark.parametrize("override, field", BAD_SETTINGS, ids=[s for s, _ in BAD_SETTINGS])
def test_a_bad_setting_is_one_sentence_naming_the_field(override, field, tmp_path, data_home):
    corpus = write_corpus(tmp_path)
    assert_refused(train_on(corpus, "--set", override), field, home=data_home)


def test_a_context_longer_than_the_corpus_names_the_field(tmp_path, data_home):
    corpus = tmp_path / "short.txt"
    corpus.write_text("the cat sat on the mat.\n" * 20)  # 480 characters
    message = assert_refused(train_on(corpus, "--set", "model.context_length=1024", "--set", "model.n_head=2"),
                             "model.context_length", home=data_home)
    assert "1,025" in message or "1025" in message


BAD_RECIPES = [
    ("[train]\ncolour = 'blue'\n", "train.colour"),
    ("[optimizer]\nlr = 1\n", "optimizer"),
    ("[model]\nn_layer = 'four'\n", "model.n_layer"),
    ("[model]\nn_embd = 0\n", "model.n_embd"),
    ("[model]\nn_embd = 30\nn_head = 4\n", "model.n_head"),
    ("[train]\nlearning_rate = 'fast'\n", "train.learning_rate"),
    ("[train]\nlearning_rate = nan\n", "train.learning_rate"),
    ("[train\nmax_steps = 3\n", "not valid TOML"),
    ("model = 3\n", "[model]"),
    ("", "empty"),
]


@pytest.mark.parametrize("text, field", BAD_RECIPES)
def test_a_bad_recipe_file_is_one_sentence_naming_the_file_and_field(text, field, tmp_path, data_home):
    recipe = tmp_path / "bad.toml"
    recipe.write_text(text)
    assert_refused(run_cli("--train", str(recipe)), str(recipe), field, home=data_home)


def test_a_recipe_that_is_not_text_is_named(tmp_path, data_home):
    recipe = tmp_path / "weights.toml"
    recipe.write_bytes(random.Random(5).randbytes(512))
    assert_refused(run_cli("--train", str(recipe)), str(recipe), home=data_home)


BAD_FLAGS = [
    (["--train", "no-such-recipe"], "no-such-recipe"),
    (["--train", "--bogus"], "--bogus"),
    (["--train", "--events", "xml"], "--events"),
    (["--train", "--device", "tpu"], "train.device"),
    (["--train", "--generate", "x"], "--generate"),
    (["--generate", "some-run", "--temperature", "hot"], "--temperature"),
    (["--generate", "some-run", "--max-new-tokens", "many"], "--max-new-tokens"),
    (["--generate", "some-run", "--checkpoint", "middle"], "--checkpoint"),
    (["--generate", "no-such-run"], "no-such-run"),
    (["--train", "--resume", "no-such-run"], "no-such-run"),
    (["--train", "--resume", ".."], ".."),
]


@pytest.mark.parametrize("args, name", BAD_FLAGS, ids=[" ".join(a) for a, _ in BAD_FLAGS])
def test_a_bad_flag_is_one_sentence_naming_it(args, name, data_home):
    assert_refused(run_cli(*args), name, home=data_home)


def test_a_run_under_the_data_home_cannot_be_escaped_by_name(tmp_path, data_home):
    """--resume and --generate take run names; a name that walks out of the runs folder is refused."""
    (data_home / "runs").mkdir(parents=True)
    result = run_cli("--generate", "../..")
    assert result.returncode != 0 and "No run named" in one_sentence(result.stderr)


# ---- the same, in a fresh interpreter ---------------------------------------------------------------


def test_end_to_end_a_binary_corpus_and_a_bad_field_in_a_real_process(tmp_path, data_home):
    binary = tmp_path / "blob.bin"
    binary.write_bytes(bytes(range(256)) * 16)
    recipe = write_recipe(tmp_path, binary)
    result = run_process("--train", str(recipe), home=data_home)
    assert_refused(result, str(binary), "binary", home=data_home)
    result = run_process("--train", str(recipe), "--set", "model.n_head=3", "--events", "jsonl", home=data_home)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    (line,) = result.stdout.splitlines()
    assert '"type": "error"' in line and "model.n_head" in line
