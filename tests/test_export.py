"""`--export`: runs leave as transformers folders (our Transformer as GPT-NeoX, imported models
as themselves, bit for bit), GGUF files and RNN bundles, proven with logits, ids and the files'
own readers. Tiny runs trained for a few steps; nothing reaches the network."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
import torch

from minigpt_tui.cli import main
from minigpt_tui.core.runs.run_dir import RunDir
from minigpt_tui.core.training.trainer import Trainer

from kit import tiny_config, write_corpus

transformers = pytest.importorskip("transformers")


def _train(corpus, root, name, **model):
    config = tiny_config(corpus, max_steps=5, sample_tokens=0)
    tokenizer = model.pop("tokenizer", "char")
    config.data.tokenizer = tokenizer
    config.data.vocab_size = 300 if tokenizer == "bpe" else 0
    for key, value in model.items():
        setattr(config.model, key, value)
    trainer = Trainer(config, emit=lambda e: None, recipe_name=name, runs_root=root)
    trainer.run()
    return RunDir(trainer.run_dir)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    corpus = write_corpus(root)
    return corpus, {
        "char": _train(corpus, root / "runs", "char"),
        "word-tanh-bias": _train(corpus, root / "runs", "word", tokenizer="word", activation="gelu_tanh", bias=True),
        "bpe": _train(corpus, root / "runs", "bpe", tokenizer="bpe"),
        "gru": _train(corpus, root / "runs", "gru", family="gru"),
    }


@pytest.mark.parametrize("kind", ["char", "word-tanh-bias", "bpe"])
def test_our_transformer_exports_as_gpt_neox_with_equal_logits_and_ids(runs, kind, tmp_path, capsys):
    corpus, by_kind = runs
    run = by_kind[kind]
    out = tmp_path / "hf"
    assert main(["--export", str(run.path), "--format", "hf", "--out", str(out)]) == 0
    assert "GPT-NeoX" in capsys.readouterr().out
    model = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    loaded = run.load()
    text = corpus.read_text(encoding="utf-8")[:400] + " zebra\tquux \n\n é"  # unknown symbols too
    ids = loaded.tokenizer.encode(text)
    assert tokenizer(text, add_special_tokens=False)["input_ids"] == ids
    assert tokenizer.decode(ids) == loaded.tokenizer.decode(ids)
    window = torch.tensor([ids[: loaded.config.model.context_length]])
    with torch.no_grad():
        torch.testing.assert_close(model(window).logits, loaded.model(window)[0], rtol=0, atol=1e-5)
    config = json.loads((out / "config.json").read_text())
    assert config["max_position_embeddings"] == loaded.config.model.context_length
    card = (out / "README.md").read_text()
    assert run.name in card and "bits per character" in card and "slides" in card


def test_an_rnn_run_leaves_as_a_bundle_whose_model_file_gives_our_logits(runs, tmp_path, capsys):
    corpus, by_kind = runs
    run = by_kind["gru"]
    assert main(["--export", str(run.path), "--format", "hf", "--out", str(tmp_path / "no")]) == 2
    err = capsys.readouterr().err
    assert "safetensors" in err and err.count("\n") == 1 and not (tmp_path / "no").exists()
    out = tmp_path / "bundle"
    assert main(["--export", str(run.path), "--format", "safetensors", "--out", str(out)]) == 0
    spec = importlib.util.spec_from_file_location("modeling_rnn", out / "modeling_rnn.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    theirs = module.load(out)
    loaded = run.load()
    ids = loaded.tokenizer.encode(corpus.read_text(encoding="utf-8")[:200])
    from tokenizers import Tokenizer

    assert Tokenizer.from_file(str(out / "tokenizer.json")).encode(corpus.read_text(encoding="utf-8")[:200]).ids == ids
    x = torch.tensor([ids])
    with torch.no_grad():
        torch.testing.assert_close(theirs(x)[0], loaded.model(x)[0], rtol=0, atol=1e-6)
    sys.modules.pop("modeling_rnn", None)


def test_an_existing_out_folder_is_never_overwritten(runs, tmp_path, capsys):
    _, by_kind = runs
    out = tmp_path / "taken"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    assert main(["--export", str(by_kind["char"].path), "--format", "hf", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    assert main(["--export", str(by_kind["char"].path), "--format", "onnx", "--out", str(tmp_path / "x")]) == 2
    assert "--format" in capsys.readouterr().err


# ---- GGUF ---------------------------------------------------------------------------------------
gguf = pytest.importorskip("gguf")


def _read(path):
    reader = gguf.GGUFReader(str(path))
    fields = {name: field for name, field in reader.fields.items()}

    def value(key):
        field = fields[key]
        if field.types and field.types[0] == gguf.GGUFValueType.ARRAY:
            return [field.contents(i) for i in range(len(field.data))] if hasattr(field, "contents") else None
        return field.contents()

    tensors = {t.name: t for t in reader.tensors}
    return value, tensors


def test_a_bpe_run_leaves_as_a_gptneox_gguf_with_its_vocabulary_and_weights(runs, tmp_path, capsys):
    _, by_kind = runs
    run = by_kind["bpe"]
    out = tmp_path / "model.gguf"
    assert main(["--export", str(run.path), "--format", "gguf", "--out", str(out), "--dtype", "f32"]) == 0
    printed = capsys.readouterr().out
    assert "llama-cli -m" in printed and "Modelfile" in printed and "FROM" in printed
    value, tensors = _read(out)
    assert value("general.architecture") == "gptneox"
    assert value("gptneox.context_length") == run.config().model.context_length
    assert value("tokenizer.ggml.model") == "gpt2" and value("tokenizer.ggml.pre") == "gpt-2"
    # no end-of-text token of its own: one the training text never held, not llama.cpp's default (a comma)
    assert value("tokenizer.ggml.eos_token_id") in run.read_meta().unseen_tokens
    tokenizer = run.tokenizer()
    assert value("tokenizer.ggml.tokens") == list(json.loads(tokenizer.hf.to_str())["model"]["vocab"])
    state = run.load().model.state_dict()
    cfg = run.config().model
    # llama.cpp's gptneox reads attn_qkv as all queries, then all keys, then all values (our own
    # order; HF's per-head order is undone, as convert_hf_to_gguf does), and needs its biases
    checks = {"token_embd.weight": state["embed.weight"], "output.weight": state["head.weight"],
              "blk.0.attn_qkv.weight": state["blocks.0.attn.qkv.weight"],
              "blk.0.attn_qkv.bias": torch.zeros(3 * cfg.n_embd), "blk.0.attn_output.bias": torch.zeros(cfg.n_embd),
              "blk.1.ffn_down.weight": state["blocks.1.mlp.down.weight"]}
    for name, expected in checks.items():
        data = torch.from_numpy(tensors[name].data.copy()).reshape(expected.shape)
        assert torch.equal(data, expected), name


def test_gguf_refuses_what_llama_cpp_cannot_run_in_one_sentence(runs, tmp_path, capsys):
    _, by_kind = runs
    for kind, word in (("char", "char-level"), ("gru", "GRU")):
        out = tmp_path / f"{kind}.gguf"
        assert main(["--export", str(by_kind[kind].path), "--format", "gguf", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert word in err and err.count("\n") == 1 and not out.exists()
        assert not list(tmp_path.glob("*.partial"))


def test_which_formats_fit_a_run_is_read_without_its_weights(runs, tmp_path):
    """What the app's Export dialog offers (core/export/fit.py), and the default path it suggests."""
    from minigpt_tui.core.export.fit import default_out, export_choices

    _, by_kind = runs
    assert export_choices(by_kind["bpe"]).formats == ("hf", "gguf")
    char = export_choices(by_kind["char"])
    assert char.formats == ("hf",) and "byte-level BPE" in char.why_not and "character-level" in char.why_not
    gru = export_choices(by_kind["gru"])
    assert gru.formats == ("safetensors",) and "GRU" in gru.why_not
    (tmp_path / "r-hf").mkdir()
    (tmp_path / "r.gguf").touch()
    assert default_out("r", "hf", tmp_path) == tmp_path / "r-hf-2"
    assert default_out("r", "gguf", tmp_path) == tmp_path / "r-2.gguf"
    assert default_out("r", "safetensors", tmp_path) == tmp_path / "r-safetensors"
    assert default_out("r", "hf", tmp_path, taken={tmp_path / "r-hf-2"}) == tmp_path / "r-hf-3"


def test_imported_models_export_back_to_their_architecture_bit_for_bit(tmp_path, capsys):
    from safetensors.torch import load_file

    from minigpt_tui.core.export.fit import export_choices
    from pretrained_kit import gpt2_folder, llama_folder

    for name, folder in (("g", gpt2_folder(tmp_path / "g")), ("l", llama_folder(tmp_path / "l"))):
        assert main(["--import", str(folder), "--name", name]) == 0
        choices = export_choices(RunDir.resolve(name))  # byte-level BPE vocabularies: gguf fits too
        assert choices.formats == ("hf", "gguf") and choices.checkpoints == ("best",)
        out = tmp_path / f"out-{name}"
        assert main(["--export", name, "--format", "hf", "--out", str(out)]) == 0
        theirs, ours = load_file(folder / "model.safetensors"), load_file(out / "model.safetensors")
        assert theirs.keys() == ours.keys()
        assert all(torch.equal(theirs[k], ours[k]) for k in theirs)
        before = transformers.AutoTokenizer.from_pretrained(folder)
        after = transformers.AutoTokenizer.from_pretrained(out)
        assert after.chat_template == before.chat_template
        assert after("Speak, speak.")["input_ids"] == before("Speak, speak.")["input_ids"]
        assert main(["--export", name, "--format", "gguf", "--out", str(tmp_path / f"{name}.gguf")]) == 0
        value, _ = _read(tmp_path / f"{name}.gguf")
        assert value("general.architecture") == {"g": "gpt2", "l": "llama"}[name]


def test_transformers_greedy_text_from_the_export_equals_generate(runs, tmp_path, capsys):
    _, by_kind = runs
    run = by_kind["char"]
    out = tmp_path / "hf"
    assert main(["--export", str(run.path), "--format", "hf", "--out", str(out)]) == 0
    capsys.readouterr()
    prompt, n = "the ", 10  # prompt and reply within the context window (16 tokens)
    assert main(["--generate", str(run.path), "--prompt", prompt, "--temperature", "0", "--max-new-tokens", str(n),
                 "--json"]) == 0
    ours = [json.loads(line)["token_id"] for line in capsys.readouterr().out.splitlines() if '"token_id"' in line]
    model = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        theirs = model.generate(**inputs, max_new_tokens=n, do_sample=False, pad_token_id=0)[0, inputs["input_ids"].size(1):]
    assert theirs.tolist() == ours and len(ours) == n


def test_a_run_without_a_checkpoint_is_refused_and_nothing_is_left(tmp_path, capsys):
    from minigpt_tui.core.runs.run_dir import CONFIG_NAME, META_NAME, TOKENIZER_NAME
    from minigpt_tui.core.data.tokenizer import CharTokenizer
    from minigpt_tui.core.runs.run_meta import RunMeta

    config = tiny_config(write_corpus(tmp_path))
    run = RunDir.create("empty", tmp_path / "runs", {CONFIG_NAME: config.to_run_toml(),
                                                      TOKENIZER_NAME: CharTokenizer.train("abc").to_json(),
                                                      META_NAME: RunMeta().to_json()}, lock=False)
    for fmt, out in (("hf", tmp_path / "o1"), ("gguf", tmp_path / "o2.gguf")):
        assert main(["--export", str(run.path), "--format", fmt, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "checkpoint" in err and err.count("\n") == 1 and not out.exists()
    assert not list(tmp_path.glob(".o*"))  # no temporary sibling either
