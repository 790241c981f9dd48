"""--evaluate: a full pass over a split, every token predicted once, checked against the
slow obvious computation; what it reports, where it keeps it, and its errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from minigpt_tui.cli import main
from minigpt_tui.core.data.corpus import split_text
from minigpt_tui.core.data.tokenizer import WordTokenizer
from minigpt_tui.core.models import build_model
from minigpt_tui.core.runs.evaluations import read_evaluations
from minigpt_tui.core.runs.run_dir import RunDir
from minigpt_tui.core.training.evaluate import full_pass_loss, load_split, rnn_lanes

from kit import TINY_TEXT, tiny_config, train_tiny_run, write_corpus

W = 16  # tiny_config's context_length


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny trained Transformer and GRU on TINY_TEXT (a few steps: the weights only need to be
    the trained kind, not good)."""
    root = tmp_path_factory.mktemp("eval")
    corpus = write_corpus(root)
    return {family: train_tiny_run(tiny_config(corpus, family, max_steps=3, eval_interval=3), root / "runs")
            for family in ("transformer", "gru")}


def valid_tokens(run_path: Path) -> tuple[torch.Tensor, int, object]:
    run = RunDir(run_path).load()
    tokens, chars = load_split(run.config, run.tokenizer, "valid")  # a view on the cache's small ints
    assert tokens.dtype == torch.uint8
    return tokens.long(), chars, run


@torch.no_grad()
def log_prob(model, context: torch.Tensor, target: int) -> float:
    logits, _ = model(context[None])
    return float(F.log_softmax(logits[0, -1].double(), -1)[target])


def slow_window_nats(model, tokens: torch.Tensor, stride: int) -> float:
    """Each token on its own: the window that scores it ends at W, W + stride, W + 2 stride, ...
    (or the end of the text); it sees that window's tokens before it, and nothing else."""
    n_targets = tokens.numel() - 1
    total = 0.0
    for j in range(1, n_targets + 1):  # predict tokens[j]
        end = W if j <= W else min(W + math.ceil((j - W) / stride) * stride, n_targets)
        total -= log_prob(model, tokens[max(0, end - W) : j], int(tokens[j]))
    return total


def slow_sequential_nats(model, tokens: torch.Tensor, first: int, warm: int, n: int) -> float:
    """Feed tokens one by one from `first`, carrying the state; score the `n` targets after `warm` reads."""
    state, total = model.new_state(), 0.0
    for k in range(warm + n):
        logits, state = model(tokens[first + k : first + k + 1][None], state)
        if k >= warm:
            total -= float(F.log_softmax(logits[0, -1].double(), -1)[tokens[first + k + 1]])
    return total


@torch.no_grad()
def test_transformer_full_pass_equals_scoring_each_token_in_its_window(runs):
    tokens, _, run = valid_tokens(runs["transformer"])
    tokens = tokens[:100]  # several windows, and a last one that scores fewer than the stride
    for stride in (5, 8):
        expected = slow_window_nats(run.model, tokens, stride)
        for batch in (1, 4):
            nats, n = full_pass_loss(run.model, tokens, context_length=W, stride=stride, batch_size=batch)
            assert n == tokens.numel() - 1
            assert nats == pytest.approx(expected, rel=1e-5)
    # stride = context_length: plain non-overlapping windows, which score less well than overlapping ones
    disjoint, _ = full_pass_loss(run.model, tokens, context_length=W, stride=W)
    assert disjoint == pytest.approx(slow_window_nats(run.model, tokens, W), rel=1e-5)


@torch.no_grad()
def test_transformer_text_shorter_than_a_window_is_one_window(runs):
    tokens, _, run = valid_tokens(runs["transformer"])
    short = tokens[:10]
    nats, n = full_pass_loss(run.model, short, context_length=W, stride=8)
    assert n == 9 and nats == pytest.approx(slow_window_nats(run.model, short, 8), rel=1e-5)


@torch.no_grad()
@pytest.mark.parametrize("family", ["gru", "lstm"])
def test_rnn_full_pass_carries_the_state_and_lanes_equal_their_sequential_pass(runs, family):
    if family == "gru":
        tokens, _, run = valid_tokens(runs["gru"])
        model = run.model
    else:  # an untrained LSTM: the state handling is what is checked
        torch.manual_seed(0)
        tokens, _, run = valid_tokens(runs["gru"])
        model = build_model(tiny_config(Path("x"), "lstm").model, run.tokenizer.vocab_size).eval()
    n_targets = tokens.numel() - 1
    # One lane is the plain sequential pass over the whole text, token by token.
    nats, n = full_pass_loss(model, tokens, context_length=W, batch_size=1)
    assert n == n_targets
    assert nats == pytest.approx(slow_sequential_nats(model, tokens, 0, 0, n_targets), rel=1e-5)
    # Lanes: each is its own sequential pass, warmed on the window before its span; together
    # they score every token once.
    lanes = rnn_lanes(n_targets, W, 5)
    assert len(lanes) == 5 and sum(n for _, _, n in lanes) == n_targets
    assert [first + warm for first, warm, _ in lanes][1:] == [sum(n for *_, n in lanes[:k]) for k in range(1, 5)]
    expected = sum(slow_sequential_nats(model, tokens, *lane) for lane in lanes)
    batched, n = full_pass_loss(model, tokens, context_length=W, batch_size=5)
    assert n == n_targets and batched == pytest.approx(expected, rel=1e-5)
    assert batched == pytest.approx(nats, rel=0.02)  # and close to the single pass


@torch.no_grad()
def test_cnn_full_pass_is_one_pass_over_the_whole_text_in_any_lanes(runs):
    """The CNN carries its queues across windows: exactly one pass over the text (each token sees
    its whole receptive field), and lanes warmed on R - 1 tokens change nothing but rounding."""
    tokens, _, run = valid_tokens(runs["gru"])
    torch.manual_seed(0)
    model = build_model(tiny_config(Path("x"), "cnn", model={"kernel_size": 2, "dilation_cycle": 3,
                                                             "n_layer": 4}).model, run.tokenizer.vocab_size).eval()
    assert model.receptive_field == 9 and tokens.numel() > 10 * W
    full = model(tokens[None, :-1])[0][0]
    expected = float(F.cross_entropy(full.double(), tokens[1:], reduction="sum"))
    for batch in (1, 5):
        nats, n = full_pass_loss(model, tokens, context_length=W, batch_size=batch)
        assert n == tokens.numel() - 1 and nats == pytest.approx(expected, rel=1e-6)


def evaluate(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["--evaluate", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_report_counts_every_token_and_bits_per_char_over_the_characters(runs, capsys):
    run_path = runs["transformer"]
    tokens, chars, run = valid_tokens(run_path)
    text = Path(run.config.data.path).read_text(encoding="utf-8")
    assert chars == len(split_text(text, run.config.data.val_fraction)[1])
    code, out, err = evaluate(capsys, str(run_path), "--json", "--stride", "5", "--batch", "3")
    assert code == 0, err
    report = json.loads(out)  # one JSON object, nothing else on stdout
    assert {"run", "split", "checkpoint", "step", "nats_per_token", "perplexity", "bits_per_token",
            "bits_per_char", "tokens", "chars", "seconds", "unk_share", "note"} <= report.keys()
    assert (report["split"], report["checkpoint"], report["tokens"], report["chars"]) == (
        "valid", "best", tokens.numel() - 1, chars)
    nats = report["nats_per_token"] * report["tokens"]
    assert nats == pytest.approx(slow_window_nats(run.model, tokens, 5), rel=1e-5)
    assert report["bits_per_char"] == pytest.approx(nats / math.log(2) / chars)
    assert report["bits_per_token"] == pytest.approx(report["nats_per_token"] / math.log(2))
    assert report["perplexity"] == pytest.approx(math.exp(report["nats_per_token"]))
    # Kept in the run, one record per evaluation.
    kept = read_evaluations(run_path)[-1]
    assert kept["bits_per_char"] == report["bits_per_char"] and kept["step"] == report["step"]


def test_plain_report_and_a_file_given_with_data_is_evaluated_whole(runs, capsys, tmp_path):
    other = write_corpus(tmp_path, TINY_TEXT[:500], name="other.txt")
    before = len(read_evaluations(runs["gru"]))
    code, out, err = evaluate(capsys, str(runs["gru"]), "--data", str(other), "--checkpoint", "last")
    assert code == 0, err
    assert "whole file of other.txt" in out and "bits/char" in out and "perplexity" in out
    assert "499 char tokens predicted, 500 characters" in out
    records = read_evaluations(runs["gru"])
    assert len(records) == before + 1 and records[-1]["split"] == "whole"
    assert records[-1]["data"] == str(other.resolve()) and records[-1]["checkpoint"] == "last"


@pytest.mark.parametrize("argv, sentence", [
    (["--split", "test"], "has no test split"),
    (["--data", "/no/such/file.txt"], "does not exist"),
    (["--split", "train"], "--split must be valid or test"),
    (["--batch", "0"], "--batch must be a whole number >= 1"),
    (["--stride", "99"], "--stride must be at most the context length 16"),
])
def test_errors_are_one_sentence(runs, capsys, argv, sentence):
    code, out, err = evaluate(capsys, str(runs["transformer"]), *argv)
    assert code != 0 and out == ""
    assert sentence in err and err.count("\n") == 1 and "Traceback" not in err


def test_unknown_run_is_one_sentence(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("MINIGPT_TUI_HOME", str(tmp_path))
    code, out, err = evaluate(capsys, "no-such-run")
    assert code != 0 and "No run named 'no-such-run'" in err and err.count("\n") == 1


WIKI_LINE = " = Valkyria = \n \n The game began development in 2010 , carrying over a large @-@ portion . \n"


def write_wikitext(folder: Path) -> Path:
    folder.mkdir()
    (folder / "wiki.train.tokens").write_text(WIKI_LINE * 30 + " the <unk> game \n" * 5, encoding="utf-8")
    (folder / "wiki.valid.tokens").write_text(WIKI_LINE * 5, encoding="utf-8")
    (folder / "wiki.test.tokens").write_text(" The game began in 2011 , a <unk> . \n" * 8, encoding="utf-8")
    return folder


def test_word_run_test_split_with_a_capped_vocabulary_says_it_is_not_comparable(tmp_path, capsys):
    folder = write_wikitext(tmp_path / "wiki")
    config = tiny_config(folder, "gru", max_steps=2, eval_interval=2).with_overrides(
        ['data.tokenizer="word"', "data.vocab_size=6"])
    run_path = train_tiny_run(config, tmp_path / "runs")
    code, out, err = evaluate(capsys, str(run_path), "--split", "test", "--json")
    assert code == 0, err
    report = json.loads(out)
    text = (folder / "wiki.test.tokens").read_text()
    # Words and ends of line, as PyTorch's word_language_model counts them (line.split() + <eos>).
    words = sum(len(line.split()) + 1 for line in text.splitlines())
    assert report["tokens"] == words - 1 and report["chars"] == len(text)
    assert 0 < report["unk_share"] < 1 and "not comparable with full-vocabulary results" in report["note"]
    code, out, err = evaluate(capsys, str(run_path), "--split", "test")
    assert "not comparable" in out and "as PyTorch's word_language_model counts <eos>" in out


def test_uncapped_word_vocabulary_keeps_every_training_word(tmp_path):
    folder = write_wikitext(tmp_path / "wiki")
    text = (folder / "wiki.train.tokens").read_text()
    tok = WordTokenizer.train(text, 0)  # data.vocab_size = 0: no cap
    assert set(tok.itos) == set(text.split()) | {"\n"}


WIKITEXT = Path("/work/shared/data/wikitext-2-partial/wiki.valid.tokens")


@pytest.mark.skipif(not WIKITEXT.is_file(), reason="WikiText-2 is not on this machine")
def test_word_tokens_of_wikitext_match_pytorch_word_language_model():
    """Our word stream of a WikiText file is the example's: line.split() + ['<eos>'] per line,
    with our "\\n" token in place of <eos>."""
    text = WIKITEXT.read_text(encoding="utf-8")
    ours = WordTokenizer.split(text)
    theirs = []
    with open(WIKITEXT, encoding="utf8") as f:  # data.py's Corpus.tokenize
        for line in f:
            theirs += line.split() + ["<eos>"]
    assert [t if t != "\n" else "<eos>" for t in ours] == theirs


def test_evaluations_file_keeps_every_record_and_skips_a_torn_line(tmp_path):
    from minigpt_tui.core.runs.evaluations import append_evaluation, latest_by_split

    append_evaluation(tmp_path, {"split": "valid", "bits_per_char": 2.0, "step": 1})
    with open(RunDir(tmp_path).evaluations_path, "a") as f:
        f.write('{"split": "test", "bits_per')  # a writer killed mid-line
    append_evaluation(tmp_path, {"split": "valid", "bits_per_char": 1.5, "step": 2})
    append_evaluation(tmp_path, {"split": "test", "bits_per_char": 1.7, "step": 2})
    records = read_evaluations(tmp_path)
    assert [r["bits_per_char"] for r in records] == [2.0, 1.5, 1.7]
    latest = latest_by_split(records)
    assert list(latest) == ["test", "valid"] and latest["valid"]["step"] == 2


@torch.no_grad()
def test_a_memory_mapped_uint16_token_array_scores_as_a_tensor(runs, tmp_path):
    """The token cache's form: a uint16 array on disk, read in place."""
    import numpy as np

    for family in ("transformer", "gru"):
        tokens, _, run = valid_tokens(runs[family])
        path = tmp_path / f"{family}.u16"
        tokens.numpy().astype(np.uint16).tofile(path)
        mapped = np.memmap(path, dtype=np.uint16, mode="r")
        expected = full_pass_loss(run.model, tokens, context_length=W, batch_size=4)
        assert full_pass_loss(run.model, mapped, context_length=W, batch_size=4) == pytest.approx(expected)
