"""`minigpt-tui --chat RUN`, through the real command line in a subprocess with scripted stdin:
replies per line, slash commands, one-sentence errors, --json, and that the state carried
across lines gives exactly the logits of one pass over the whole conversation."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from minigpt_tui.core.generation.conversation import list_conversations, load_conversation
from minigpt_tui.core.training.trainer import Trainer

from kit import TINY_TEXT, tiny_config

PLAY = "".join(f"{who}:\nthe cat sat on the mat.\n\n" for who in ["ROMEO", "JULIET"] * 20) + TINY_TEXT


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    root = tmp_path_factory.mktemp("chat")
    corpus = root / "play.txt"
    corpus.write_text(PLAY, encoding="utf-8")
    home = root / "home"
    threads = torch.get_num_threads()
    try:
        Trainer(tiny_config(corpus, max_steps=20, sample_tokens=0), emit=lambda e: None,
                recipe_name="tiny", runs_root=home / "runs").run()
    finally:
        torch.set_num_threads(threads)
    return home


@pytest.fixture
def run_dir(home):
    (run,) = (home / "runs").iterdir()
    for leftover in ("chat.json", "conversations"):  # each test starts from the run's defaults
        path = run / leftover
        if path.is_dir():
            for f in path.iterdir():
                f.unlink()
            path.rmdir()
        elif path.exists():
            path.unlink()
    return run


def chat(home, lines: list[str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "MINIGPT_TUI_HOME": str(home), "PYTHONIOENCODING": "utf-8"}
    (run,) = (home / "runs").iterdir()
    return subprocess.run([sys.executable, "-m", "minigpt_tui", "--chat", run.name, *args],
                          input="".join(line + "\n" for line in lines), capture_output=True, text=True,
                          env=env, timeout=timeout)


def test_scripted_chat_prints_one_reply_per_line_and_commands_answer_on_stderr(home, run_dir):
    result = chat(home, ["the cat", "/temp 0", "/length 15", "the dog", "/retry", "/prev", "/undo",
                         "/temp hot", "/top-k -1", "/frobnicate", "/mode dialogue ROMEO JULIET", "sat on", "/save",
                         "/export " + str(run_dir / "x.md"), "/quit", "never read"],
                  "--max-new-tokens", "20", "--seed", "4")
    assert result.returncode == 0, result.stderr
    replies = result.stdout.splitlines()
    err = result.stderr
    assert "Traceback" not in err
    assert "temperature = 0.0" in err and "max new tokens = 15" in err
    assert "[version 1 of 2]" in err and "Removed your turn 'the dog' and its replies." in err
    assert "/temp must be a number, got 'hot'." in err  # (the sentence --temperature hot gives)
    assert "/top-k must be >= 0 (0 turns it off), got -1." in err
    assert "Unknown command /frobnicate; /help lists the commands." in err
    assert "Mode: dialogue: you are ROMEO, the model JULIET" in err
    # 4 replies: the cat, the dog, its retry, and the dialogue turn (which shows the model's speaker tag)
    assert "JULIET:" in result.stdout and len(result.stdout.strip()) > 0
    saved = list_conversations(run_dir)
    assert len(saved) == 1 and saved[0].title == "the cat"
    conv = load_conversation(saved[0].path)
    texts = [(t.role, t.text) for t in conv.path()]
    assert texts[0] == ("user", "the cat") and texts[2] == ("user", "sat on")
    assert conv.path()[2].prefix.endswith("ROMEO:\n") and conv.path()[3].prefix == "JULIET:\n"
    assert (run_dir / "x.md").read_text().startswith("# the cat")
    assert json.loads((run_dir / "chat.json").read_text())["mode"] == "dialogue"  # remembered for the run
    assert len(replies) >= 2


def assert_replies_are_one_pass(loaded, conv, tokens: list[dict], count: int) -> None:
    """Each of the `count` greedy reply tokens streamed over --json is the token, with the probability,
    that one pass of the model over the whole saved conversation gives at its position."""
    ids = [i for t in conv.path() for i in t.ids]
    with torch.inference_mode():
        logits = loaded.model(torch.tensor([ids]))[0][0]
        # Tokens the training text never held (<unk>) are masked before the softmax, as the sampler does.
        probs = logits.index_fill(-1, torch.tensor(loaded.unseen, dtype=torch.long), float("-inf")).softmax(-1)
    positions, at = [], 0
    for turn in conv.path():
        if turn.role == "model":
            positions += range(at - 1, at - 1 + len(turn.ids))
        at += len(turn.ids)
    assert len(positions) == len(tokens) == count
    for position, event in zip(positions, tokens):
        assert ids[position + 1] == event["token_id"]
        assert abs(float(probs[position, event["token_id"]]) - event["prob"]) < 1e-4, position
        assert event["token_id"] == int(probs[position].argmax())  # greedy picked the top token


def test_state_carried_across_lines_equals_one_pass_over_the_conversation(home, run_dir):
    """Greedy replies over --json: every reply token's probability is what one pass of the model
    over the whole saved conversation gives at that position."""
    from minigpt_tui.core.runs.run_dir import RunDir

    lines = ["the cat sat", "on the mat", "and the dog sat on the log. " * 3, "a cat", "/save"]
    result = chat(home, lines, "--json", "--temperature", "0", "--max-new-tokens", "25")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    tokens = [e for e in events if "token_id" in e]
    done = [e for e in events if e.get("done")]
    assert [d["turn"] for d in done] == [1, 2, 3, 4] and all(d["new_tokens"] == 25 for d in done)
    conv = load_conversation(list_conversations(run_dir)[0].path)
    ids = [i for t in conv.path() for i in t.ids]
    assert len(ids) > 130  # past the tiny model's window (16) and receptive field (31)
    assert_replies_are_one_pass(RunDir(run_dir).load(), conv, tokens, 100)


def test_chat_errors_are_one_sentence(home, run_dir):
    bad = chat(home, [], "--temperature", "x")
    assert bad.returncode == 2 and bad.stderr.strip() == "minigpt-tui: --temperature must be a number, got 'x'."
    bad = chat(home, [], "--mode", "sing")
    assert bad.returncode == 2 and "--mode must be cowrite, dialogue or instruct" in bad.stderr
    bad = chat(home, [], "--no-kv-cache")
    assert bad.returncode == 2 and "needs the KV cache" in bad.stderr
    env = {**os.environ, "MINIGPT_TUI_HOME": str(home)}
    missing = subprocess.run([sys.executable, "-m", "minigpt_tui", "--chat", "nope"], capture_output=True,
                             text=True, env=env, timeout=60)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr and missing.stderr.count("\n") == 1
    # Continuation lines make one turn with a newline; the end of input ends the chat cleanly.
    multi = chat(home, ["the cat\\", "sat", "/show"], "--max-new-tokens", "5")
    assert multi.returncode == 0 and "'the cat\\nsat'" in multi.stderr


def test_the_chat_repl_imports_no_textual(home, run_dir):
    code = (
        "import sys; from minigpt_tui.cli import main;"
        f"code = main(['--chat', {run_dir.name!r}, '--max-new-tokens', '3']);"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('textual', 'rich') or m.startswith('minigpt_tui.tui')];"
        "print(bad, file=sys.stderr); sys.exit(1 if bad or code else 0)"
    )
    env = {**os.environ, "MINIGPT_TUI_HOME": str(home)}
    result = subprocess.run([sys.executable, "-c", code], input="the cat\n", capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr


def test_a_cnn_run_chats_with_its_state_carried_exactly(tmp_path):
    """--chat on a CNN run: the queues carried across lines give what one pass over the whole
    saved conversation gives (greedy replies, past the receptive field)."""
    from minigpt_tui.core.runs.run_dir import RunDir

    corpus = tmp_path / "play.txt"
    corpus.write_text(PLAY, encoding="utf-8")
    home = tmp_path / "home"
    threads = torch.get_num_threads()
    try:
        Trainer(tiny_config(corpus, "cnn", max_steps=10, sample_tokens=0, eval_interval=10,
                            model={"kernel_size": 2, "dilation_cycle": 3}),
                emit=lambda e: None, recipe_name="tiny", runs_root=home / "runs").run()
    finally:
        torch.set_num_threads(threads)
    result = chat(home, ["the cat sat", "and the dog sat on the log. " * 2, "/save"],
                  "--json", "--temperature", "0", "--max-new-tokens", "12")
    assert result.returncode == 0, result.stderr
    tokens = [e for e in map(json.loads, result.stdout.splitlines()) if "token_id" in e]
    (run,) = (home / "runs").iterdir()
    conv = load_conversation(list_conversations(run)[0].path)
    ids = [i for t in conv.path() for i in t.ids]
    loaded = RunDir(run).load()
    assert loaded.model.family == "cnn" and len(ids) > 3 * loaded.model.receptive_field  # R = 4 here
    assert_replies_are_one_pass(loaded, conv, tokens, 24)
