"""The headless front end, end to end, in subprocesses (as a user or a script runs it)."""

import json
import os
import signal
import subprocess
import sys

import pytest

TINY = ["--set", "model.n_layer=1", "--set", "model.n_embd=16", "--set", "model.n_head=2",
        "--set", "model.context_length=16", "--set", "train.batch_size=4", "--set", "train.eval_interval=5",
        "--set", "train.eval_batches=1", "--set", "train.sample_tokens=10", "--set", "train.device=cpu"]


def cli(*args, home, timeout=120):
    env = {**os.environ, "MINIGPT_TUI_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "minigpt_tui", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


@pytest.mark.slow
def test_train_jsonl_then_list_then_resume(tiny_corpus, data_home):
    result = cli("--train", *TINY, "--set", f"data.path={tiny_corpus}", "--set", "train.max_steps=10",
                 "--events", "jsonl", home=data_home)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    types = [e["type"] for e in events]
    assert types[0] == "started" and types[-1] == "done"
    assert {"step", "eval", "sample", "checkpoint"} <= set(types)
    run_name = events[0]["run_name"]
    # the default recipe (kjv-char-transformer), named after the corpus it was given instead
    assert run_name.startswith("tiny-char-transformer-")

    listing = cli("--list", home=data_home)
    assert listing.returncode == 0
    header, row = listing.stdout.splitlines()[:2]
    assert header.split()[:4] == ["NAME", "FAMILY", "TOKENIZER", "CORPUS"]
    assert row.split()[:4] == [run_name, "transformer", "char", "tiny.txt"]
    assert "10/10" in row

    resumed = cli("--train", "--resume", run_name, "--set", "train.max_steps=15", "--events", "jsonl", home=data_home)
    assert resumed.returncode == 0, resumed.stderr
    events = [json.loads(line) for line in resumed.stdout.splitlines()]
    assert events[0]["start_step"] == 10 and events[-1]["step"] == 15


@pytest.mark.slow
def test_progress_bar_mode_prints_where_the_checkpoints_are(tiny_corpus, data_home):
    result = cli("--train", "shakespeare-char-transformer", *TINY, "--set", f"data.path={tiny_corpus}",
                 "--set", "train.max_steps=6", home=data_home)
    assert result.returncode == 0, result.stderr
    assert "Finished at step 6" in result.stdout and "checkpoints" in result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--train", "no-such-recipe"], "Recipe 'no-such-recipe' not found"),
        (["--train", "--set", "train.max_steps=0"], "train.max_steps must be"),
        (["--train", "--set", "data.path=/nonexistent/corpus.txt"], "does not exist"),
        (["--train", "--resume", "nope"], "No run named 'nope'"),
        (["--generate", "nope"], "No run named 'nope'"),
    ],
)
def test_user_errors_are_one_sentence_without_traceback(args, expected, data_home):
    result = cli(*args, home=data_home)
    assert result.returncode != 0
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (data_home / "runs").exists() or not any((data_home / "runs").iterdir())


def _clean_env(home) -> dict:
    """The environment a user's shell gives: no warning filters of a developer's own."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONWARNINGS", "MINIGPT_TUI_DEBUG")}
    return {**env, "MINIGPT_TUI_HOME": str(home)}


@pytest.mark.slow
def test_stderr_holds_only_the_projects_own_output(tiny_corpus, data_home):
    """No library warning (torch without NumPy, a deprecation) reaches a user's terminal:
    a successful run prints nothing on stderr, a user error exactly its one sentence."""
    def run(*args):
        return subprocess.run([sys.executable, "-m", "minigpt_tui", *args], capture_output=True, text=True,
                              env=_clean_env(data_home), timeout=120)

    trained = run("--train", *TINY, "--set", f"data.path={tiny_corpus}", "--set", "train.max_steps=5",
                  "--events", "jsonl")
    assert trained.returncode == 0 and trained.stderr == "", trained.stderr
    run_name = json.loads(trained.stdout.splitlines()[0])["run_name"]

    listed = run("--list")
    assert listed.returncode == 0 and listed.stderr == "", listed.stderr

    generated = run("--generate", run_name, "--prompt", "the ", "--max-new-tokens", "5")
    assert generated.returncode == 0
    summary = generated.stderr.splitlines()
    assert len(summary) == 1 and summary[0].startswith("[5 tokens at "), generated.stderr

    for bad in (["--train", "--set", "train.max_steps=0"], ["--generate", "nope"], ["--temperature"]):
        failed = run(*bad)
        assert failed.returncode == 2
        lines = failed.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("minigpt-tui: "), failed.stderr


@pytest.mark.slow
def test_ctrl_c_stops_with_a_checkpoint_and_exit_status_130(tiny_corpus, data_home):
    """Shells and scripts read 130 as "interrupted": `--train && next` must not go on."""
    proc = subprocess.Popen([sys.executable, "-m", "minigpt_tui", "--train", *TINY, "--set", f"data.path={tiny_corpus}",
                             "--set", "train.max_steps=100000", "--set", "train.log_interval=1", "--events", "jsonl"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "MINIGPT_TUI_HOME": str(data_home)})
    with proc:  # (closes its pipes, and waits for it)
        try:
            for line in proc.stdout:
                if json.loads(line)["type"] == "checkpoint":
                    break
            proc.send_signal(signal.SIGINT)
            rest = [json.loads(line) for line in proc.stdout]
            assert proc.wait(timeout=60) == 130
        finally:
            proc.kill()
    assert rest[-1]["type"] == "done" and rest[-1]["reason"] == "stopped"
    assert any(e["type"] == "checkpoint" and e["step"] == rest[-1]["step"] for e in rest)


@pytest.mark.slow
def test_output_that_is_no_terminal_gets_plain_progress_lines(tiny_corpus, data_home):
    result = cli("--train", *TINY, "--set", f"data.path={tiny_corpus}", "--set", "train.max_steps=6",
                 "--set", "train.log_interval=1", "--progress-every", "0", home=data_home)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("step ") and "tok/s" in line]
    assert [line.split()[1] for line in lines] == [f"{n}/6" for n in range(1, 7)]
    assert "ETA" in lines[0] and "\x1b" not in result.stdout  # no escape codes in a log file

    quiet = cli("--train", *TINY, "--set", f"data.path={tiny_corpus}", "--set", "train.max_steps=6",
                "--set", "train.log_interval=1", home=data_home)  # every 10 s: the first step and the last
    assert [line.split()[1] for line in quiet.stdout.splitlines() if "tok/s" in line] == ["1/6", "6/6"]


@pytest.mark.slow
def test_a_unique_prefix_names_a_run_and_an_ambiguous_one_lists_the_matches(tiny_corpus, data_home):
    runs = data_home / "runs"
    for name in ("kjv-char-transformer-20260101-120000", "kjv-char-transformer-20260102-120000", "other-run"):
        (runs / name / "checkpoints").mkdir(parents=True)
        (runs / name / "meta.json").write_text("{}")
    from minigpt_tui.core.errors import RunError
    from minigpt_tui.core.runs.run_dir import RunDir

    assert RunDir.resolve("oth", runs).name == "other-run"
    assert RunDir.resolve("kjv-char-transformer-20260102", runs).name == "kjv-char-transformer-20260102-120000"
    with pytest.raises(RunError) as err:
        RunDir.resolve("kjv-char", runs)
    assert "kjv-char-transformer-20260101-120000, kjv-char-transformer-20260102-120000" in str(err.value)
    result = cli("--generate", "kjv", home=data_home)
    assert result.returncode == 2 and "matches 2 runs" in result.stderr and "type more" in result.stderr


def test_list_with_no_runs(data_home):
    result = cli("--list", home=data_home)
    assert result.returncode == 0 and "No runs yet" in result.stdout


def test_headless_path_imports_no_textual(tmp_path):
    code = (
        "import sys, minigpt_tui.cli, minigpt_tui.core.training.trainer, minigpt_tui.core.generation.sampling;"
        "minigpt_tui.cli.main(['--list']);"
        "bad = [m for m in sys.modules if m.split('.')[0] == 'textual' or m.startswith('minigpt_tui.tui')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    env = {**os.environ, "MINIGPT_TUI_HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
