"""`minigpt-tui --generate`: options, output formats, errors, and that it streams.

One tiny run is trained in-process per module (20 steps of a few-thousand-parameter
Transformer); most tests call cli.main in-process, the streaming test starts a
real process and reads its first token while it is still generating.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from minigpt_tui.cli import main
from minigpt_tui.core.training.trainer import Trainer

from kit import tiny_config


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    root = tmp_path_factory.mktemp("generate")
    corpus = root / "tiny.txt"
    from kit import TINY_TEXT

    corpus.write_text(TINY_TEXT, encoding="utf-8")
    home = root / "home"
    old = os.environ.get("MINIGPT_TUI_HOME")
    os.environ["MINIGPT_TUI_HOME"] = str(home)
    try:
        Trainer(tiny_config(corpus, max_steps=20, sample_tokens=0), emit=lambda e: None,
                recipe_name="tiny", runs_root=home / "runs").run()
    finally:
        if old is None:
            os.environ.pop("MINIGPT_TUI_HOME", None)
        else:
            os.environ["MINIGPT_TUI_HOME"] = old
    return home


@pytest.fixture
def run(home, monkeypatch):
    """The tiny run's folder, with the data home pointing at it (so its name resolves too)."""
    monkeypatch.setenv("MINIGPT_TUI_HOME", str(home))
    (run_dir,) = (home / "runs").iterdir()
    return run_dir


def generate(capsys, *args) -> tuple[int, str, str]:
    code = main(["--generate", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_plain_text_is_the_prompt_then_the_continuation(run, capsys):
    code, out, err = generate(capsys, run.name, "--prompt", "the cat", "--max-new-tokens", "40", "--seed", "3")
    assert code == 0
    assert out.startswith("the cat") and out.endswith("\n") and len(out) > len("the cat") + 1
    assert "[40 tokens at" in err and "tokens/s" in err and err.count("\n") == 1
    assert generate(capsys, str(run), "--prompt", "the cat", "--max-new-tokens", "40", "--seed", "3")[1] == out
    assert generate(capsys, run.name, "--prompt", "the cat", "--max-new-tokens", "40", "--seed", "4")[1] != out


def test_json_gives_one_event_per_token_and_a_summary(run, capsys):
    code, out, _ = generate(capsys, run.name, "--prompt", "the", "--max-new-tokens", "12", "--json", "--seed", "5")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(lines) == 13
    events, done = lines[:-1], lines[-1]
    assert [e["index"] for e in events] == list(range(12))
    assert all(set(e) == {"index", "token_id", "text", "prob", "top"} and len(e["top"]) == 5 for e in events)
    assert done["done"] is True and done["new_tokens"] == 12 and done["finish_reason"] == "length"
    plain = generate(capsys, run.name, "--prompt", "the", "--max-new-tokens", "12", "--seed", "5")[1]
    assert plain == "the" + "".join(e["text"] for e in events) + "\n"


def test_greedy_equals_top_k_1_and_the_naive_path_gives_the_same_text(run, capsys):
    args = [run.name, "--prompt", "a dog", "--max-new-tokens", "60"]
    greedy = generate(capsys, *args, "--temperature", "0")[1]
    assert generate(capsys, *args, "--temperature", "0.7", "--top-k", "1")[1] == greedy
    assert generate(capsys, *args, "--temperature", "0", "--no-kv-cache")[1] == greedy
    sampled = generate(capsys, *args, "--temperature", "1.1", "--top-p", "0.9", "--min-p", "0.05",
                       "--repetition-penalty", "1.2", "--repetition-window", "16", "--seed", "8")[1]
    code, naive, err = generate(capsys, *args, "--temperature", "1.1", "--top-p", "0.9", "--min-p", "0.05",
                                "--repetition-penalty", "1.2", "--repetition-window", "16", "--seed", "8",
                                "--no-kv-cache", "--checkpoint", "last")
    assert code == 0 and naive == sampled and "no KV cache" in err


def test_stop_strings_end_the_output(run, capsys):
    code, out, err = generate(capsys, run.name, "--prompt", "the", "--max-new-tokens", "500", "--stop", "t",
                              "--stop", "\\n", "--temperature", "0.9")
    body = out[len("the") : -1]
    assert code == 0 and (body.endswith("t") or body.endswith("\n"))
    assert "t" not in body[:-1] and "\n" not in body[:-1]
    assert "stopped at a stop string" in err


def test_an_empty_prompt_and_unknown_characters(run, capsys):
    code, out, err = generate(capsys, run.name, "--max-new-tokens", "10")
    assert code == 0 and len(out) > 1 and err.startswith("[10 tokens at") and err.count("\n") == 1
    code, out, err = generate(capsys, run.name, "--prompt", "the zebra Ω", "--max-new-tokens", "10")
    assert code == 0 and out.startswith("the zebra Ω")
    warning = err.splitlines()[0]
    assert warning.startswith("minigpt-tui: warning:") and "'z'" in warning and "'Ω'" in warning


@pytest.mark.parametrize("option, value", [
    ("--temperature", "-1"), ("--temperature", "hot"), ("--top-k", "-2"), ("--top-k", "2.5"),
    ("--top-p", "0"), ("--top-p", "1.5"), ("--min-p", "1"), ("--repetition-penalty", "0"),
    ("--repetition-window", "0"), ("--seed", "x"), ("--max-new-tokens", "-1"), ("--stop", ""),
    ("--checkpoint", "middle"),
])
def test_a_bad_option_is_one_sentence_and_a_non_zero_exit(run, capsys, option, value):
    code, out, err = generate(capsys, run.name, option, value)
    assert code != 0 and out == ""
    assert err.count("\n") == 1 and err.startswith("minigpt-tui: ") and option in err and err.rstrip().endswith(".")


def test_a_missing_run_is_one_sentence(run, capsys):
    code, out, err = generate(capsys, "no-such-run", "--prompt", "x")
    assert code != 0 and out == ""
    assert err.count("\n") == 1 and "no-such-run" in err and "--list" in err


def _env(run) -> dict:
    # Without PYTHONUNBUFFERED stdout to a pipe is block-buffered: only flushing per token streams.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env["MINIGPT_TUI_HOME"] = str(run.parent.parent)
    return env


def _start(run, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "minigpt_tui", "--generate", run.name, "--prompt", "the", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_env(run))


def test_the_cli_streams_tokens_before_generation_ends(run):
    """The first token reaches stdout while a long generation is still running, and
    plain text arrives in many pieces rather than in one block at the end."""
    proc = _start(run, "--max-new-tokens", "10000000", "--json")
    watchdog = threading.Timer(30, proc.kill)  # never hang the suite
    watchdog.start()
    try:
        first = json.loads(proc.stdout.readline())
        assert first["index"] == 0 and isinstance(first["text"], str)
        time.sleep(0.2)
        assert proc.poll() is None  # ten million tokens later it will be done; not yet
    finally:
        watchdog.cancel()
        proc.kill()
        proc.wait()
        proc.stdout.close()

    # ~3,000 characters: less than one stdout buffer, so unless each token is flushed
    # the whole text would arrive in one read when the process exits.
    proc = _start(run, "--max-new-tokens", "2500")
    watchdog = threading.Timer(60, proc.kill)
    watchdog.start()
    reads, running_when_text_came = [], None
    try:
        while chunk := os.read(proc.stdout.fileno(), 65536):
            reads.append(chunk)
            if running_when_text_came is None and len(b"".join(reads)) > len(b"the"):
                running_when_text_came = proc.poll() is None
    finally:
        watchdog.cancel()
        proc.wait()
        proc.stdout.close()
    assert proc.returncode == 0 and b"".join(reads).startswith(b"the")
    assert running_when_text_came and len(reads) >= 5


def test_word_level_plain_text_shows_wikitext_joins_as_the_app_does(run, capsys, monkeypatch):
    """' @-@ ' between words reads back as '-' in plain output; --json keeps the raw tokens."""
    from minigpt_tui.core.data.tokenizer import WordTokenizer
    from minigpt_tui.core.generation import sampling
    from minigpt_tui.core.generation.sampling import GenerationStats, TokenEvent
    from minigpt_tui.core.runs.run_dir import LoadedRun, RunDir

    loaded = RunDir(run).load()
    words = WordTokenizer(["<unk>", "\n", "@-@", "@.@", "3", "5", "known", "well"])
    monkeypatch.setattr(RunDir, "load", lambda *a, **k: LoadedRun(
        loaded.run_dir, loaded.config, words, loaded.model, loaded.checkpoint, loaded.step))

    class Scripted:
        def __init__(self, model, tokenizer, settings, use_cache=True, banned=()):
            self.stats = GenerationStats()

        def generate(self, prompt):
            for i, piece in enumerate([" <unk>", " well", " @-@", " known", " 3", " @.@", " 5", " @-@"]):
                self.stats.new_tokens += 1
                yield TokenEvent(i, words.stoi[piece.strip()], piece, 1.0, [])

    monkeypatch.setattr(sampling, "Sampler", Scripted)
    code, out, err = generate(capsys, run.name, "--prompt", "a")
    assert code == 0 and out == "a <unk> well-known 3.5 @-@\n"
    assert "[8 tokens at" in err and ", 1 of them <unk>;" in err  # (a word model whose text held <unk> may write it)
    code, out, _ = generate(capsys, run.name, "--prompt", "a", "--json")
    assert "".join(json.loads(line)["text"] for line in out.splitlines()[:-1]) == " <unk> well @-@ known 3 @.@ 5 @-@"
