"""Issue 14 (data): corpora are read as a stream and tokenized once into a memory-mapped token
cache; later starts, resumes and evaluations map it instead of reading the corpus again."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

from minigpt_tui.core.config import DataConfig
from minigpt_tui.core.data import corpus as corpus_mod
from minigpt_tui.core.data import token_cache
from minigpt_tui.core.data.corpus import check_corpus, load_corpus, rechunk, split_text
from minigpt_tui.core.data.token_cache import cached_tokens, dtype_for, split_tokens
from minigpt_tui.core.data.tokenizer import WordTokenizer, build_tokenizer
from minigpt_tui.core.errors import CorpusError
from minigpt_tui.core.runs import events as ev
from minigpt_tui.core.runs.run_dir import RunDir
from minigpt_tui.core.training import training_data
from minigpt_tui.core.training.trainer import Trainer

from kit import TINY_TEXT, tiny_config, train_tiny_run, write_corpus


def _tokens(path, kind="char", vocab_size=256, split="train"):
    data = DataConfig(path=str(path), tokenizer=kind, vocab_size=vocab_size)
    corpus = load_corpus(data)
    tokenizer = token_cache.cached_tokenizer(kind, vocab_size, corpus.split("train"))
    return tokenizer, cached_tokens(corpus.split(split), tokenizer)


@pytest.mark.parametrize("kind", ["char", "word"])
def test_cached_tokens_equal_encoding_the_whole_text_as_before(kind, tmp_path):
    """Old vs new: the vocabulary and the ids are those of tokenizing the split strings whole,
    so a run started before the cache resumes on exactly the same batches."""
    path = write_corpus(tmp_path)
    train_text, val_text = split_text(TINY_TEXT, 0.1)
    old = build_tokenizer(kind, train_text, 256)
    tokenizer, train = _tokens(path, kind)
    assert tokenizer.itos == old.itos
    assert train.tokens.tolist() == old.encode(train_text) and train.n_chars == len(train_text)
    _, valid = _tokens(path, kind, split="valid")
    assert valid.tokens.tolist() == old.encode(val_text) and valid.n_chars == len(val_text)
    assert train.tokens.dtype == torch.uint8


@pytest.mark.parametrize("kind", ["char", "word"])
def test_a_file_larger_than_the_chunk_and_block_sizes_streams_to_the_same_tokens(kind, tmp_path, monkeypatch):
    """Tiny chunks and blocks: blocks cut multi-byte characters, chunks end at a newline or
    before a space (never inside a word), one long line included; a BOM is dropped."""
    words = ["île", "café", "naïve", "the", "cat", "日本語", "a", "b—c"]
    rng = random.Random(1)
    lines = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 12))) for _ in range(4000)]
    lines[100] = " ".join(rng.choice(words) for _ in range(3000))  # one line of many chunks
    text = "\n".join(lines) + "\n"
    path = tmp_path / "big.txt"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert len(text.encode()) > corpus_mod.PREFIX_BYTES
    monkeypatch.setattr(corpus_mod, "CHUNK_CHARS", 97)
    monkeypatch.setattr(corpus_mod, "BLOCK_BYTES", 1001)
    chunks = list(load_corpus(DataConfig(path=str(path), val_fraction=0.0)).split("train").chunks())
    assert "".join(chunks) == text and len(chunks) > 100
    assert all(len(c) < 97 * 5 for c in chunks)
    train_text, _ = split_text(text, 0.1)
    old = build_tokenizer(kind, train_text, 0)
    tokenizer, train = _tokens(path, kind, vocab_size=0)
    assert tokenizer.itos == old.itos
    assert train.tokens.tolist() == old.encode(train_text)


def test_rechunk_cuts_a_run_without_spaces_only_when_it_is_very_long():
    assert list(rechunk(["ab cd ef"], 4)) == ["ab", " cd", " ef"]
    waited = list(rechunk(["x" * 10, " y", " z" * 5], 4))  # waits for the long word's end
    assert "".join(waited) == "x" * 10 + " y" + " z" * 5 and waited[0].startswith("x" * 10)
    assert all(not (a[-1].strip() and b[0].strip()) for a, b in zip(waited, waited[1:]))  # no word cut
    run = "z" * 100
    chunks = list(rechunk([run], 4))
    assert "".join(chunks) == run and {len(c) for c in chunks[:-1]} == {4} and len(chunks[-1]) <= 16


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_a_second_start_maps_the_cache_without_reading_the_corpus(kind, tmp_path, monkeypatch):
    corpus = write_corpus(tmp_path)
    config = tiny_config(corpus, max_steps=4, eval_interval=2)
    if kind == "bpe":  # (its tokenizer JSON, the cache's key, must survive the run's tokenizer.json)
        config = config.with_overrides(["data.tokenizer=bpe", "data.vocab_size=300"])
    train_tiny_run(config, tmp_path / "runs")
    assert list(token_cache.tokens_dir().glob("*.bin")) and list(token_cache.tokenizers_dir().glob("*.json"))

    def fail(*args, **kwargs):
        raise AssertionError("the corpus was read or tokenized again")

    monkeypatch.setattr(corpus_mod, "_file_pieces", fail)
    monkeypatch.setattr(token_cache, "_build", fail)
    monkeypatch.setattr(token_cache, "build_tokenizer", fail)
    run = train_tiny_run(config, tmp_path / "runs")
    trainer = Trainer(config.with_overrides(["train.max_steps=6"]), lambda e: None, resume_dir=run)
    assert trainer.run().step == 6  # a resume maps it too


def test_a_changed_corpus_is_tokenized_again(tmp_path):
    path = write_corpus(tmp_path)
    _, before = _tokens(path)
    changed = TINY_TEXT.replace("cat", "cow")
    path.write_text(changed, encoding="utf-8")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # even within one clock tick
    tokenizer, after = _tokens(path)
    train_text, _ = split_text(changed, 0.1)
    assert after.path != before.path
    assert after.tokens.tolist() == tokenizer.encode(train_text) != before.tokens.tolist()


def test_a_build_that_dies_leaves_nothing_usable_and_the_next_start_builds_it(tmp_path, monkeypatch):
    path = write_corpus(tmp_path)
    monkeypatch.setattr(corpus_mod, "CHUNK_CHARS", 50)
    calls = []

    def dies_on_the_third_chunk(tokenizer):
        encode = real_encoder(tokenizer)

        def wrapped(text):
            calls.append(text)
            if len(calls) == 3:
                raise KeyboardInterrupt  # as a kill would, between two chunks
            return encode(text)

        return wrapped

    real_encoder = token_cache._encoder
    monkeypatch.setattr(token_cache, "_encoder", dies_on_the_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        _tokens(path)
    folder = token_cache.tokens_dir()
    assert not list(folder.glob("*.json")) and not list(folder.glob("*.bin")) and not list(folder.glob(".*"))

    monkeypatch.setattr(token_cache, "_encoder", real_encoder)
    tokenizer, built = _tokens(path)
    # A kill after the rename but before the meta, with a builder's temporary file left over:
    built.path.with_suffix(".json").unlink()
    built.path.write_bytes(b"\x01\x02")
    leftover = folder / f".{built.path.name}.x1y2.tmp"
    leftover.write_bytes(b"half")
    del built
    _, again = _tokens(path)
    assert again.tokens.tolist() == tokenizer.encode(split_text(TINY_TEXT, 0.1)[0])
    assert not leftover.exists()


@pytest.mark.parametrize("kind", ["char", "word"])
def test_a_single_line_corpus_of_over_a_million_characters_trains(kind, tmp_path, monkeypatch):
    monkeypatch.setattr(corpus_mod, "CHUNK_CHARS", 200_000)
    rng = random.Random(0)
    words = ["the", "cat", "sat", "on", "a", "mat", "dog", "log"]
    text = " ".join(rng.choice(words) for _ in range(300_000))  # ~1.2M characters, no newline
    assert len(text) > 1_000_000 and "\n" not in text
    path = write_corpus(tmp_path, text, "one-line.txt")
    assert check_corpus(str(path)).ok
    config = tiny_config(path, max_steps=3, eval_interval=3, eval_batches=1, sample_tokens=0)
    config.data.tokenizer = kind
    run = train_tiny_run(config, tmp_path / "runs")
    assert RunDir(run).read_meta().step == 3
    if kind == "word":  # the chunks cut the line between words only
        train_text, _ = split_text(text, 0.1)
        tokens, n_chars = split_tokens(config.data, RunDir(run).tokenizer(), "train")
        assert n_chars == len(train_text)
        assert torch.equal(tokens.long(), torch.tensor(WordTokenizer.train(train_text).encode(train_text)))


def test_the_token_type_is_the_smallest_that_holds_the_vocabulary(tmp_path):
    assert [dtype_for(n) for n in (2, 256, 257, 32_768, 32_769)] == [
        np.uint8, np.uint8, np.int16, np.int16, np.int32]
    text = " ".join(f"w{i}" for i in range(400)) + "\n"
    path = write_corpus(tmp_path, text * 3)
    tokenizer, train = _tokens(path, "word", vocab_size=0)
    assert tokenizer.vocab_size > 256 and train.tokens.dtype == torch.int16
    assert train.tokens.tolist() == tokenizer.encode(split_text(text * 3, 0.1)[0])


def test_a_folder_of_splits_has_a_test_split_and_a_file_says_it_has_none(tmp_path):
    folder = tmp_path / "text8"
    folder.mkdir()
    parts = {"train": TINY_TEXT, "valid": TINY_TEXT[:500], "test": TINY_TEXT[:300] + "zebra"}
    for split, text in parts.items():
        (folder / f"{split}.txt").write_text(text)
    assert check_corpus(str(folder)).ok
    data = DataConfig(path=str(folder))
    tokenizer = token_cache.cached_tokenizer("char", 256, load_corpus(data).split("train"))
    tokens, n_chars = split_tokens(data, tokenizer, "test")
    assert n_chars == len(parts["test"]) and tokens.tolist() == tokenizer.encode(parts["test"])
    with pytest.raises(CorpusError) as err:
        split_tokens(DataConfig(path=str(write_corpus(tmp_path))), tokenizer, "test")
    assert str(err.value) == ("Corpus tiny.txt has no test split; only a folder holding its own test file "
                              "(wiki.test.tokens, wiki.test.raw or test.txt) has one.")


def test_a_slow_first_start_reports_its_progress_before_it_starts(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(training_data, "PREPARING_QUIET_S", 0.0)
    monkeypatch.setattr(training_data, "PREPARING_EVERY_S", 0.0)
    monkeypatch.setattr(corpus_mod, "CHUNK_CHARS", 200)
    seen = []
    Trainer(tiny_config(write_corpus(tmp_path), max_steps=1), seen.append, runs_root=tmp_path / "runs").run()
    started = next(i for i, e in enumerate(seen) if isinstance(e, ev.Started))
    preparing = [e for e in seen[:started] if isinstance(e, ev.Preparing)]
    assert not any(isinstance(e, ev.Preparing) for e in seen[started:])
    jobs = list(dict.fromkeys(e.what for e in preparing))
    assert jobs == ["Checking the corpus", "Building the vocabulary", "Tokenizing the training text",
                    "Tokenizing the validation text"]
    assert preparing[-1].fraction == 1.0 and ev.decode(ev.encode(preparing[0])) == preparing[0]

    from minigpt_tui.cli.train import ProgressPrinter
    from minigpt_tui.tui.train.state import RunState, render_status

    printer = ProgressPrinter()
    printer(ev.Preparing("Tokenizing the training text", 0.45))
    assert "Tokenizing the training text… 45%" in capsys.readouterr().err
    state = RunState(status="starting")
    state.apply(ev.Preparing("Tokenizing the training text", 0.45))
    assert render_status(state, None).plain == "Tokenizing the training text… 45%"


def test_builders_at_the_same_moment_take_turns_and_build_once(tmp_path, monkeypatch):
    import threading
    import time

    path = write_corpus(tmp_path)
    data = DataConfig(path=str(path))
    corpus = load_corpus(data)
    tokenizer = token_cache.cached_tokenizer("char", 256, corpus.split("train"))
    builds, real_build = [], token_cache._build

    def slow_build(*args, **kwargs):
        builds.append(1)
        time.sleep(0.3)  # long enough for the other builder to arrive and wait
        return real_build(*args, **kwargs)

    monkeypatch.setattr(token_cache, "_build", slow_build)
    results = []
    workers = [threading.Thread(target=lambda: results.append(split_tokens(data, tokenizer, "train")))
               for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(20)
    assert len(builds) == 1 and len(results) == 2
    assert results[0][0].tolist() == results[1][0].tolist() == tokenizer.encode(split_text(TINY_TEXT, 0.1)[0])


def test_a_cache_that_cannot_be_written_is_one_sentence(tmp_path, monkeypatch):
    path = write_corpus(tmp_path)
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder would go\n")
    monkeypatch.setattr(token_cache, "tokens_dir", lambda: blocked / "tokens")
    monkeypatch.setattr(token_cache, "tokenizers_dir", lambda: blocked / "tokenizers")
    with pytest.raises(CorpusError) as caught:
        _tokens(path)
    assert str(caught.value).startswith(f"The token cache in {blocked / 'tokenizers'} cannot be written (")


def test_bpe_tokens_from_small_chunks_equal_encoding_the_whole_text(tmp_path):
    """Chunks are re-cut where the BPE pre-tokenizer always splits, so runs of spaces and
    newlines (WikiText's " \\n \\n = Heading = \\n") encode as they would whole."""
    text = "".join(f" = Part {i} = \n \n  The cat sat .  \n\n \n  It ran {i} times .\n" for i in range(60))
    path = write_corpus(tmp_path, text)
    data = DataConfig(path=str(path), tokenizer="bpe", vocab_size=300)
    corpus = load_corpus(data)
    tokenizer = token_cache.cached_tokenizer("bpe", 300, corpus.split("train"))
    cached = cached_tokens(corpus.split("train"), tokenizer, chunk_chars=40)
    assert cached.tokens.tolist() == tokenizer.encode(split_text(text, 0.1)[0])
