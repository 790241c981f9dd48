"""Loading never executes code, and every damaged run file is one sentence naming it.

A run's files are damaged one at a time (truncated, emptied, overwritten with random
bytes, or replaced by a pickle that would run code) and then used through each front
end: --generate, --resume, --list and checkpoint.list_runs (what the app's
Checkpoints tab lists).
"""

from __future__ import annotations

import os
import pickle
import random
import shutil
from pathlib import Path

import pytest
import torch

from minigpt_tui.core.errors import RunError
from minigpt_tui.core.runs import checkpoint as ckpt
from minigpt_tui.core.runs.run_dir import RunDir, list_runs

from harden import one_sentence, run_cli
from kit import tiny_recipe_run

RUN = "tiny-run"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One finished tiny run, copied into each test's data home by `run`."""
    folder = tmp_path_factory.mktemp("loading")
    return tiny_recipe_run(folder, folder / "runs")


@pytest.fixture
def run(trained, data_home) -> Path:
    target = data_home / "runs" / RUN
    shutil.copytree(trained, target)
    return target


class Payload:
    """Unpickling this makes the marker (a folder: no file left open): proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "random":
        path.write_bytes(random.Random(7).randbytes(max(len(data), 64)))
    else:
        raise ValueError(how)


# ---- code in a checkpoint --------------------------------------------------------------------


def _malicious(path: Path, marker: Path, kind: str) -> None:
    state = {"model": Payload(marker), "step": 1}
    if kind == "bare-pickle":
        path.write_bytes(pickle.dumps(state))
    else:  # a real torch zip file whose data.pkl calls open() when unpickled
        torch.save(state, path)


@pytest.mark.parametrize("kind", ["bare-pickle", "torch-zip"])
def test_the_payload_would_run_if_loaded_unsafely(kind, tmp_path):
    """A check of the test itself: the file really does run code under a plain unpickler."""
    marker = tmp_path / "pwned"
    path = tmp_path / "x.pt"
    _malicious(path, marker, kind)
    try:
        torch.load(path, weights_only=False)
    except RuntimeError:  # the legacy loader complains (about the magic number) after unpickling
        pass
    assert marker.exists()


@pytest.mark.parametrize("kind", ["bare-pickle", "torch-zip"])
def test_a_checkpoint_that_would_run_code_is_refused_and_the_code_does_not_run(kind, run, tmp_path):
    marker = tmp_path / "pwned"
    for name in ("best", "last"):
        _malicious(RunDir(run).checkpoint_path(name), marker, kind)

    generated = run_cli("--generate", RUN, "--prompt", "the")
    assert generated.returncode != 0
    message = one_sentence(generated.stderr)
    assert "best.pt" in message and "refused" in message

    resumed = run_cli("--train", "--resume", RUN)
    assert resumed.returncode != 0
    message = one_sentence(resumed.stderr)
    assert "last.pt" in message and "refused" in message

    with pytest.raises(ckpt.CheckpointError, match="refused"):
        RunDir(run).load()
    assert run_cli("--list").returncode == 0
    assert not marker.exists(), "unpickling the checkpoint ran code"


# ---- damaged files, one sentence each -----------------------------------------------------------

FILES = ["checkpoint", "tokenizer.json", "config.toml", "meta.json"]
DAMAGE = ["truncated", "empty", "random"]


def _damage_run(run: Path, what: str, how: str) -> list[str]:
    """Damage one kind of file; returns the file names a message may name."""
    if what == "checkpoint":  # both, or --generate would (rightly) use the other one
        for name in ("best", "last"):
            _damage(RunDir(run).checkpoint_path(name), how)
        return ["best.pt", "last.pt"]
    _damage(run / what, how)
    return [what]


@pytest.mark.parametrize("how", DAMAGE)
@pytest.mark.parametrize("what", FILES)
def test_generate_names_the_damaged_file(what, how, run):
    names = _damage_run(run, what, how)
    result = run_cli("--generate", RUN, "--prompt", "the", "--max-new-tokens", "5")
    if what == "meta.json":
        # meta.json only summarises the run for listings; generating does not need it
        assert result.returncode == 0, result
        return
    assert result.returncode != 0
    message = one_sentence(result.stderr)
    assert any(n in message for n in names), message


@pytest.mark.parametrize("how", DAMAGE)
@pytest.mark.parametrize("what", FILES)
def test_resume_names_the_damaged_file(what, how, run):
    names = _damage_run(run, what, how)
    result = run_cli("--train", "--resume", RUN)
    assert result.returncode != 0
    message = one_sentence(result.stderr)
    assert any(n in message for n in names), message
    jsonl = run_cli("--train", "--resume", RUN, "--events", "jsonl")  # what the app reads
    assert jsonl.returncode != 0 and jsonl.stderr == ""
    (event,) = jsonl.events
    assert event["type"] == "error" and event["message"] == message


@pytest.mark.parametrize("how", DAMAGE)
@pytest.mark.parametrize("what", FILES)
def test_list_shows_the_run_as_unreadable_naming_the_file_and_goes_on(what, how, run, data_home):
    shutil.copytree(run, data_home / "runs" / "healthy-run")
    names = _damage_run(run, what, how)
    result = run_cli("--list")
    assert result.returncode == 0 and result.stderr == ""
    lines = result.stdout.splitlines()
    assert any(line.startswith("healthy-run ") for line in lines)  # the other run is listed as usual
    (bad,) = [line for line in lines if line.startswith(RUN)]
    assert bad.startswith(f"{RUN}  unreadable: ") and any(n in bad for n in names), bad

    # the app's Checkpoints tab lists runs through list_runs: the run is flagged, not fatal
    infos = {i.name: i for i in list_runs()}
    assert infos["healthy-run"].error == "" and infos["healthy-run"].has_checkpoint
    assert any(n in infos[RUN].error for n in names), infos[RUN].error
    assert "\n" not in infos[RUN].error


def test_one_damaged_checkpoint_leaves_the_other_usable(run):
    _damage(RunDir(run).checkpoint_path("best"), "truncated")
    (info,) = list_runs()
    assert info.error == "" and info.has_checkpoint  # last.pt still works
    assert run_cli("--generate", RUN, "--checkpoint", "last", "--max-new-tokens", "3").returncode == 0
    result = run_cli("--generate", RUN, "--max-new-tokens", "3")
    assert result.returncode != 0 and "best.pt" in one_sentence(result.stderr)


def test_a_config_cut_short_at_any_line_is_refused_not_filled_with_defaults(run):
    text = (run / "config.toml").read_text()
    cuts = [i + 1 for i, c in enumerate(text[:-1]) if c == "\n"]
    assert len(cuts) > 20
    for cut in cuts:
        (run / "config.toml").write_text(text[:cut])
        with pytest.raises(RunError, match="config.toml"):
            RunDir(run).config()
    result = run_cli("--generate", RUN)
    assert "config.toml" in one_sentence(result.stderr) and "cut short" in result.stderr


def test_a_config_without_the_closing_line_still_needs_every_model_field(run):
    """A config.toml from before the closing line existed is read, but a missing model field
    is still refused (defaults would describe another model than the weights)."""
    config = RunDir(run).config()
    plain = config.to_toml()
    (run / "config.toml").write_text(plain)
    assert RunDir(run).config() == config
    (run / "config.toml").write_text(plain.replace("n_embd = 16\n", ""))
    result = run_cli("--generate", RUN)
    assert "model.n_embd is missing" in one_sentence(result.stderr)


def test_a_run_from_before_model_activation_loads_with_the_tanh_gelu_it_was_trained_with(run):
    """model.activation came later: a config.toml without it is an older run (trained with the
    tanh approximation), not a damaged one, and generates as it did."""
    loaded = RunDir(run).load("last")
    ids = torch.randint(loaded.tokenizer.vocab_size, (1, 6), generator=torch.Generator().manual_seed(0))
    text = (run / "config.toml").read_text()
    assert 'activation = "gelu"\n' in text
    (run / "config.toml").write_text(text.replace('activation = "gelu"\n', ""))
    old = RunDir(run).load("last")
    assert old.config.model.activation == "gelu_tanh"
    assert all(block.mlp.approximate == "tanh" for block in old.model.blocks)
    with torch.inference_mode():
        assert not torch.equal(old.model(ids)[0], loaded.model(ids)[0])
    assert run_cli("--generate", RUN).returncode == 0


@pytest.mark.parametrize("name", ["config.toml", "tokenizer.json", "meta.json", "checkpoints/last.pt"])
def test_a_missing_run_file_is_one_sentence_too(name, run):
    (run / name).unlink()
    result = run_cli("--train", "--resume", RUN)
    if name == "checkpoints/last.pt":  # best.pt alone has no optimizer state to resume from
        assert "last.pt" in one_sentence(result.stderr)
    else:
        assert Path(name).name in one_sentence(result.stderr)
    assert result.returncode != 0


def test_a_checkpoint_with_the_wrong_shapes_names_the_mismatch(run):
    state = ckpt.load_checkpoint(RunDir(run).checkpoint_path("best"))
    state["model"] = {k: torch.zeros(3) for k in state["model"]}
    torch.save(state, RunDir(run).checkpoint_path("best"))
    result = run_cli("--generate", RUN)
    assert "does not match" in one_sentence(result.stderr)


def test_files_are_never_executed_by_listing(run, tmp_path):
    """Listing reads no weights at all: a payload checkpoint is listed (and refused only when loaded)."""
    marker = tmp_path / "pwned"
    for name in ("best", "last"):
        _malicious(RunDir(run).checkpoint_path(name), marker, "torch-zip")
    (info,) = list_runs()
    assert info.error == ""
    assert not marker.exists()
    assert os.listdir(tmp_path) == [] or "pwned" not in os.listdir(tmp_path)
