"""Run names and tidying in the core: the stem a new run's folder starts with (saying the corpus
when it is not the recipe's own), rename, notes, and one metric series."""

from __future__ import annotations

import json

import pytest

from minigpt_tui.core.errors import RunError
from minigpt_tui.core.runs.run_dir import RunDir, list_runs
from minigpt_tui.core.runs.run_meta import RunMeta
from minigpt_tui.core.runs.run_names import corpus_label, corpus_slug, recipe_corpus, run_stem

from kit import make_fake_run


@pytest.mark.parametrize("recipe, own, corpus, stem", [
    ("kjv-char-transformer", "kjv", "kjv", "kjv-char-transformer"),  # the recipe's own corpus
    ("kjv-char-transformer", "kjv", "/data/tinyshakespeare/input.txt", "tinyshakespeare-char-transformer"),
    ("kjv-char-transformer", "kjv", "input.txt", "input-char-transformer"),  # a bare generic name: all we have
    ("kjv-char-gru", "kjv", "War and Peace.txt", "war-and-peace-char-gru"),
    ("shakespeare-char-transformer", "kjv", "/data/tinyshakespeare/input.txt", "shakespeare-char-transformer"),
    ("wikitext2-word-lstm", "kjv", "/data/wikitext-2", "wikitext2-word-lstm"),  # its name says it already
    ("tiny", "kjv", "notes.txt", "tiny-notes"),  # a recipe not named after a corpus gets it appended
    ("tiny", "", "notes.txt", "tiny"),  # the recipe's own corpus is unknown: no guessing
    ("kjv-char-gru", "kjv", "", "kjv-char-gru"),
])
def test_run_stem_says_the_corpus_when_it_is_not_the_recipes_own(recipe, own, corpus, stem):
    assert run_stem(recipe, own, corpus) == stem


@pytest.mark.parametrize("recipe, corpus, tokenizer, family, stem", [
    ("kjv-char-transformer", "", "bpe", "transformer", "kjv-bpe-transformer"),  # a bpe run from a char recipe
    ("kjv-char-transformer", "/data/sonnets.txt", "bpe", "transformer", "sonnets-bpe-transformer"),
    ("kjv-char-transformer", "", "char", "gru", "kjv-char-gru"),
    ("kjv-char-cnn", "", "char", "lstm", "kjv-char-lstm"),  # a cnn recipe trained as an LSTM
    ("shakespeare-char-transformer", "", "char", "cnn", "shakespeare-char-cnn"),
    ("wikitext2-word-lstm", "/data/wikitext-2", "char", "lstm", "wikitext2-char-lstm"),
    ("kjv-bpe-transformer", "", "bpe", "transformer", "kjv-bpe-transformer"),  # already says it
    ("tiny", "", "bpe", "gru", "tiny"),  # says neither: nothing to correct
    ("kjv-char-transformer", "", "hf", "transformer", "kjv-char-transformer"),  # (not a word names use)
])
def test_run_stem_says_the_runs_own_tokenizer_and_family(recipe, corpus, tokenizer, family, stem):
    assert run_stem(recipe, "kjv", corpus, tokenizer=tokenizer, family=family) == stem


def test_corpus_names_and_recipes():
    assert corpus_slug("tinyshakespeare/input.txt") == "tinyshakespeare"
    assert corpus_slug("Crime & Punishment.txt") == "crime-punishment"
    assert corpus_slug("wiki.train.tokens") == "wiki-train"
    assert len(corpus_slug("x" * 100)) <= 24
    assert corpus_label("") == "kjv" and corpus_label("~/books/a.txt") == "a.txt"
    assert recipe_corpus("kjv-char-transformer") == "kjv"  # a built-in recipe, by name
    assert recipe_corpus("no-such-recipe") == ""


def test_rename_moves_the_folder_and_the_meta_name(tmp_path):
    run = make_fake_run(tmp_path, "old-name")
    make_fake_run(tmp_path, "taken")
    renamed = RunDir(run).rename("  new name  ")
    assert renamed.path == tmp_path / "runs" / "new name" and not run.exists()
    assert renamed.read_meta().name == "new name"
    assert {r.name for r in list_runs(tmp_path / "runs")} == {"new name", "taken"}
    with pytest.raises(RunError, match="A run named taken already exists"):
        renamed.rename("taken")
    for bad, why in (("", "empty"), ("a/b", "slash"), (".hidden", "dot"), ("x" * 200, "at most")):
        with pytest.raises(RunError, match=why):
            renamed.rename(bad)
    assert renamed.path.is_dir()


def test_rename_and_note_are_refused_while_the_run_trains(tmp_path):
    run = RunDir(make_fake_run(tmp_path, "busy"))
    trainer = RunDir(run.path)
    trainer.lock()  # as a trainer holds it
    try:
        with pytest.raises(RunError, match="is being trained; stop it before you rename it"):
            run.rename("elsewhere")
        with pytest.raises(RunError, match="is being trained"):
            run.set_note("hello")
    finally:
        trainer.release()
    assert run.path.is_dir() and run.read_meta().note == ""


def test_a_note_is_kept_in_meta_json(tmp_path):
    run = RunDir(make_fake_run(tmp_path, "noted"))
    run.set_note("  lr 3e-3 diverged at step 900  ")
    raw = json.loads((run.path / "meta.json").read_text())
    assert raw["note"] == "lr 3e-3 diverged at step 900"
    assert RunMeta.from_dict(raw, run.path / "meta.json").note == raw["note"]
    with pytest.raises(RunError, match="at most"):
        run.set_note("x" * 1000)
    assert run.read_meta().note == raw["note"]  # unchanged by the refused one


def test_series_reads_the_fields_asked_for_in_one_pass(tmp_path, monkeypatch):
    run = RunDir(make_fake_run(tmp_path, "m", step=100, seconds_per_step=0.5))
    reads = []
    read_metrics = RunDir.read_metrics
    monkeypatch.setattr(RunDir, "read_metrics", lambda self: reads.append(1) or read_metrics(self))
    curves = run.series("lr", "val_loss", "no-such-field")
    assert len(reads) == 1
    lr = curves["lr"]
    assert len(lr) == 11 and lr[0][0] == 0 and lr[-1] == (100, pytest.approx(1e-3))
    assert [s for s, _ in curves["val_loss"]] == [0, 100]
    assert curves["no-such-field"] == []
    assert run.series("time", upto=50)["time"][-1] == (40, 20.0)
