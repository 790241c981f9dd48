"""`--import`: tiny random GPT-2 and Llama models made with transformers (tests/pretrained_kit.py)
come in exactly (logits at every position, greedy tokens, --generate --json), fine-tune with
`--train --from`, and every folder that cannot be imported is one sentence with nothing left
behind. Nothing here reaches the network."""

from __future__ import annotations

import json

import pytest
import torch

from minigpt_tui.cli import main
from minigpt_tui.core.runs.run_dir import RunDir, list_runs

from kit import TINY_TEXT, write_corpus
from pretrained_kit import TEXT, gpt2_folder, llama_folder

transformers = pytest.importorskip("transformers")

SHAPES = {
    "gpt2-tied": lambda p: gpt2_folder(p, n_positions=128),
    "llama-gqa-untied": lambda p: llama_folder(p, kv_heads=2, tied=False),
    "llama-mha-tied": lambda p: llama_folder(p, kv_heads=4, tied=True),
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {name: make(root / name) for name, make in SHAPES.items()}


def _import(folder, name) -> RunDir:
    assert main(["--import", str(folder), "--name", name]) == 0
    (run,) = [r for r in list_runs() if r.name == name]
    return RunDir(run.path)


def _reference(folder):
    model = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    return model, tokenizer


@pytest.mark.parametrize("shape", SHAPES)
def test_imported_logits_equal_transformers_at_every_position(folders, shape, capsys):
    run = _import(folders[shape], "tiny")
    out = capsys.readouterr().out
    assert "Imported" in out and "tiny" in out
    loaded = run.load()
    hf, tokenizer = _reference(folders[shape])
    ids = tokenizer(TEXT, add_special_tokens=False)["input_ids"][:100]
    assert loaded.tokenizer.encode(TEXT)[:100] == ids and len(ids) == 100
    x = torch.tensor([ids])
    with torch.no_grad():
        ours, _ = loaded.model(x)
        theirs = hf(x).logits
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
        # and the cache, token by token from a 10-token prompt, gives the same logits
        state = loaded.model.new_state()
        first, state = loaded.model(x[:, :10], state)
        steps = [first[0]] + [loaded.model.decode_step(i, state)[0] for i in ids[10:]]
        torch.testing.assert_close(torch.cat(steps)[: len(ids)], theirs[0, : len(ids)], rtol=0, atol=1e-5)
    meta = run.read_meta()
    assert meta.status == "imported" and meta.imported_from == str(folders[shape])
    assert meta.corpus == f"imported from {folders[shape]}"


@pytest.mark.parametrize("shape", ["gpt2-tied", "llama-gqa-untied"])
def test_greedy_generate_json_gives_transformers_ids_and_probabilities(folders, shape, capsys):
    _import(folders[shape], "tiny")
    capsys.readouterr()
    prompt = "First Citizen:\nYou are"
    assert main(["--generate", "tiny", "--prompt", prompt, "--temperature", "0", "--max-new-tokens", "50",
                 "--json"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    tokens = [e for e in events if "token_id" in e]
    hf, tokenizer = _reference(folders[shape])
    inputs = tokenizer(prompt, return_tensors="pt")
    if tokenizer.bos_token_id is not None and RunDir.resolve("tiny").tokenizer().bos_ids:
        assert inputs["input_ids"][0, 0] == tokenizer.bos_token_id
    with torch.no_grad():
        out = hf.generate(**inputs, max_new_tokens=50, do_sample=False, output_scores=True,
                          return_dict_in_generate=True, pad_token_id=tokenizer.eos_token_id)
    new = out.sequences[0, inputs["input_ids"].size(1):].tolist()
    assert [e["token_id"] for e in tokens] == new
    probs = [torch.softmax(score[0], -1)[i].item() for score, i in zip(out.scores, new)]
    assert [e["prob"] for e in tokens] == pytest.approx(probs, abs=1e-5)


def test_a_gpt2_chat_past_its_positions_crops_and_goes_on(tmp_path):
    run = _import(gpt2_folder(tmp_path / "short", n_positions=16), "short")
    model = run.load().model
    ids = run.tokenizer().encode(TEXT)[:40]
    with torch.no_grad():
        state = model.new_state()
        logits, state = model(torch.tensor([ids[:16]]), state)  # the whole table
        assert state.pos == 16
        logits, state = model(torch.tensor([ids[16:17]]), state)  # read again from the last 8
        assert state.pos == 9
        full, _ = model(torch.tensor([ids[8:17]]))  # what that is: the last 8 tokens and the new one
        torch.testing.assert_close(logits[0, -1], full[0, -1], rtol=0, atol=1e-5)
        for i in ids[17:40]:  # and on, one token at a time
            step, state = model.decode_step(i, state)
        assert 0 < state.pos <= 16


def test_train_from_an_imported_model_lowers_the_loss_and_resumes_exactly(folders, tmp_path, capsys):
    from minigpt_tui.core.runs import events as ev
    from minigpt_tui.core.training.start_from import start_from_config
    from minigpt_tui.core.training.trainer import Trainer

    _import(folders["llama-gqa-untied"], "tiny")
    capsys.readouterr()
    corpus = write_corpus(tmp_path)
    sets = [f"data.path={json.dumps(str(corpus))}", "model.context_length=32", "model.dropout=0.1",
            "train.batch_size=4", "train.eval_batches=2", "train.learning_rate=3e-3", "train.warmup_steps=0",
            "train.sample_tokens=0", "train.threads=1", "train.max_steps=10", "train.eval_interval=5",
            "train.log_interval=1"]
    assert main(["--train", "--from", "tiny", *[a for s in sets for a in ("--set", s)], "--events", "jsonl"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    started = next(e for e in events if e["type"] == "started")
    assert started["started_from"] == "tiny (step 0)" and started["tokenizer"] == "hf"
    full = {e["step"]: e["loss"] for e in events if e["type"] == "step"}
    assert sum(full[s] for s in (7, 8, 9)) < sum(full[s] for s in (0, 1, 2))
    run = RunDir(started["run_dir"])
    assert run.read_meta().started_from == "tiny (step 0)"
    # It started from the imported weights: its norms (random in 0.5-1.5 there, 1 in a new model)
    # moved only by a few small steps.
    imported = RunDir.resolve("tiny").load().model.blocks[0].norm1.weight
    tuned = run.load("last").model.blocks[0].norm1.weight
    assert 0 < (tuned - imported).abs().max() < 0.05 and (imported - 1).abs().max() > 0.2

    # Stopped at step 5 and resumed, it computes the same losses as the run straight through.
    config = start_from_config(RunDir.resolve("tiny"), None, sets)

    def stop_at_5(e):
        if isinstance(e, ev.Step) and e.step == 4:
            trainer.stop_requested = True

    trainer = Trainer(config, stop_at_5, recipe_name="tiny", start_from=RunDir.resolve("tiny"))
    assert trainer.run().step == 5
    resumed = []
    Trainer(config, resumed.append, recipe_name="tiny", resume_dir=trainer.run_dir).run()
    resumed = {e.step: e.loss for e in resumed if isinstance(e, ev.Step)}
    assert min(resumed) == 5 and resumed == {s: loss for s, loss in full.items() if s >= 5}


def test_train_from_refuses_a_change_of_shape_in_one_sentence(folders, tmp_path, capsys):
    _import(folders["gpt2-tied"], "tiny")
    corpus = write_corpus(tmp_path)
    for override, field in (("model.n_embd=64", "model.n_embd"), ("model.context_length=512", "model.context_length"),
                            ("data.tokenizer=\"char\"", "data.tokenizer")):
        assert main(["--train", "--from", "tiny", "--set", f"data.path={json.dumps(str(corpus))}",
                     "--set", override]) == 2
        err = capsys.readouterr().err.strip()
        assert field in err and "\n" not in err and "Traceback" not in err
    assert [r.name for r in list_runs()] == ["tiny"]  # nothing started


def test_evaluate_scores_an_imported_model_in_bits_per_character(folders, tmp_path, capsys):
    _import(folders["gpt2-tied"], "tiny")
    corpus = tmp_path / "text.txt"
    corpus.write_text(TINY_TEXT, encoding="utf-8")
    capsys.readouterr()
    assert main(["--evaluate", "tiny", "--data", str(corpus), "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0 < report["bits_per_char"] < 20


def test_import_list_suggests_models(capsys):
    assert main(["--import", "list"]) == 0
    out = capsys.readouterr().out
    assert "gpt2" in out and "SmolLM2-135M-Instruct" in out


# ---- refusals: one sentence each, nothing left behind ----------------------------------------------
def _refused(capsys, source, *words, name="bad") -> None:
    assert main(["--import", str(source), "--name", name]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("minigpt-tui: ") and err.count("\n") == 0 and "Traceback" not in err, err
    for word in words:
        assert word in err, err
    assert list_runs() == []


def _copy(folder, tmp_path, name):
    import shutil

    return shutil.copytree(folder, tmp_path / name)


def test_a_folder_missing_a_file_is_refused(folders, tmp_path, capsys):
    for missing, word in (("config.json", "config.json"), ("tokenizer.json", "tokenizer.json"),
                          ("model.safetensors", "safetensors")):
        folder = _copy(folders["gpt2-tied"], tmp_path, f"no-{missing}")
        (folder / missing).unlink()
        _refused(capsys, folder, word)


def test_pickled_weights_only_are_refused(folders, tmp_path, capsys):
    folder = _copy(folders["gpt2-tied"], tmp_path, "bin")
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    _refused(capsys, folder, "pytorch_model.bin", "pickle")


def test_an_unsupported_architecture_is_named(folders, tmp_path, capsys):
    folder = _copy(folders["llama-gqa-untied"], tmp_path, "mistral")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "mistral",
                                                    "architectures": ["MistralForCausalLM"]}))
    _refused(capsys, folder, "mistral", "GPT-2", "Llama")
    (folder / "config.json").write_text(json.dumps({**config, "rope_scaling": {"rope_type": "llama3", "factor": 8.0}}))
    _refused(capsys, folder, "llama3")


def test_corrupt_weights_are_refused(folders, tmp_path, capsys):
    folder = _copy(folders["gpt2-tied"], tmp_path, "corrupt")
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    _refused(capsys, folder, "model.safetensors")
    (folder / "model.safetensors").write_bytes(b"\xff" * 64)
    _refused(capsys, folder, "model.safetensors")


def test_weights_of_another_shape_are_refused(folders, tmp_path, capsys):
    folder = _copy(folders["gpt2-tied"], tmp_path, "shapes")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "n_embd": 64}))
    _refused(capsys, folder, "shape")


def test_a_model_too_big_for_memory_is_refused_before_anything_is_allocated(folders, tmp_path, capsys):
    folder = _copy(folders["llama-gqa-untied"], tmp_path, "huge")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "hidden_size": 65536, "intermediate_size": 262144,
                                                    "num_hidden_layers": 200, "num_attention_heads": 512,
                                                    "num_key_value_heads": 512, "head_dim": 128}))
    _refused(capsys, folder, "memory")


def test_a_name_that_is_taken_or_unusable_is_refused(folders, capsys):
    _import(folders["gpt2-tied"], "tiny")
    capsys.readouterr()
    for name, word in (("tiny", "already exists"), ("../x", "slash"), (".hidden", "dot")):
        assert main(["--import", str(folders["gpt2-tied"]), "--name", name]) == 2
        err = capsys.readouterr().err
        assert word in err and err.count("\n") == 1
    assert [r.name for r in list_runs()] == ["tiny"]
