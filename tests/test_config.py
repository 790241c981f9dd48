import pytest

from minigpt_tui.core.config import RunConfig
from minigpt_tui.core.errors import ConfigError
from minigpt_tui.core.paths import list_recipes


def test_every_recipe_loads_and_round_trips_through_toml():
    recipes = list_recipes()
    names = {p.stem for p in recipes}
    assert {"kjv-char-transformer", "kjv-char-gru", "wikitext2-word-lstm", "shakespeare-char-transformer",
            "kjv-bpe-transformer", "kjv-char-cnn", "shakespeare-char-cnn"} <= names
    for path in recipes:
        config = RunConfig.load(path)
        assert RunConfig.from_toml(config.to_toml()) == config


def test_shakespeare_recipe_is_the_known_cpu_recipe():
    from minigpt_tui.core.paths import find_recipe

    c = RunConfig.load(find_recipe("shakespeare-char-transformer"))
    assert (c.model.n_layer, c.model.n_head, c.model.n_embd, c.model.context_length) == (4, 4, 128, 64)
    assert (c.train.batch_size, c.train.learning_rate, c.train.max_steps, c.model.dropout) == (12, 1e-3, 2000, 0.0)


def test_the_cnn_recipes_reach_as_far_as_the_transformer_window_and_train_on_twice_that():
    from minigpt_tui.core.models.cnn import receptive_field
    from minigpt_tui.core.paths import find_recipe

    for name in ("kjv-char-cnn", "shakespeare-char-cnn"):
        m = RunConfig.load(find_recipe(name)).model
        assert m.family == "cnn" and receptive_field(m) == 127 and m.context_length == 2 * 128


def test_bpe_recipe_is_the_default_model_on_bpe_tokens():
    from minigpt_tui.core.paths import find_recipe

    char, bpe = (RunConfig.load(find_recipe(f"kjv-{kind}-transformer")) for kind in ("char", "bpe"))
    assert (bpe.data.tokenizer, bpe.data.vocab_size, bpe.data.path) == ("bpe", 2048, "")
    assert bpe.model == char.model and bpe.train == char.train


def test_overrides_parse_toml_values_and_bare_strings():
    c = RunConfig().with_overrides(["train.max_steps=200", "data.path=../x/input.txt", "model.dropout=0.1",
                                    "model.tie_weights=false", 'data.tokenizer="word"'])
    assert c.train.max_steps == 200 and c.data.path == "../x/input.txt"
    assert c.model.dropout == 0.1 and c.model.tie_weights is False and c.data.tokenizer == "word"


@pytest.mark.parametrize(
    "override, field",
    [
        ("train.max_steps=0", "train.max_steps"),
        ("train.batch_size=-3", "train.batch_size"),
        ("train.learning_rate=fast", "train.learning_rate"),
        ("train.learning_rate=nan", "train.learning_rate"),
        ("model.n_head=3", "model.n_head"),
        ("model.family=mamba", "model.family"),
        ("model.kernel_size=1", "model.kernel_size"),
        ("model.dilation_cycle=0", "model.dilation_cycle"),
        ("model.context_length=1.5", "model.context_length"),
        ("model.dropout=1.0", "model.dropout"),
        ("data.tokenizer=wordpiece", "data.tokenizer"),
        ("data.tokenizer=bpe", "data.vocab_size"),  # the default 256 would be bytes with no merges
        ("train.colour=blue", "train.colour"),
        ("train.device=tpu", "train.device"),
    ],
)
def test_bad_values_are_rejected_with_a_sentence_naming_the_field(override, field):
    with pytest.raises(ConfigError) as err:
        RunConfig().with_overrides([override])
    message = str(err.value)
    assert field in message
    assert "\n" not in message and message.endswith(".")


def test_unknown_section_and_malformed_override():
    with pytest.raises(ConfigError, match="optim"):
        RunConfig.from_toml("[optim]\nlr = 1\n")
    with pytest.raises(ConfigError, match="section.key=value"):
        RunConfig().with_overrides(["max_steps"])
    with pytest.raises(ConfigError, match="not valid TOML"):
        RunConfig.from_toml("[train\n")


@pytest.mark.parametrize(
    "override, field",
    [
        ("train.max_steps=0", "train.max_steps"),
        ("train.learning_rate=fast", "train.learning_rate"),
        ("model.n_head=3", "model.n_head"),  # a rule between two fields names the one it is about
        ("model.n_embd=12", "model.n_embd"),  # "model.n_embd / model.n_head must be even"
        ("train.learning_rate=1e-5", "train.min_lr"),  # min_lr <= learning_rate
        ("train.colour=blue", "train.colour"),
        ("optim.lr=1", "optim.lr"),
    ],
)
def test_a_config_error_names_its_field(override, field):
    with pytest.raises(ConfigError) as err:
        RunConfig().with_overrides([override])
    assert err.value.field == field


def test_field_survives_the_file_wrapper_and_pickling(tmp_path):
    import pickle

    path = tmp_path / "bad.toml"
    path.write_text("[train]\nmax_steps = 0\n")
    with pytest.raises(ConfigError) as err:
        RunConfig.load(path)
    assert str(err.value).startswith(f"In config file {path}, train.max_steps must be")
    assert err.value.field == "train.max_steps"
    copy = pickle.loads(pickle.dumps(err.value))
    assert (str(copy), copy.field) == (str(err.value), "train.max_steps")
    with pytest.raises(ConfigError) as err:
        RunConfig.from_toml("[train\n")
    assert err.value.field is None


def test_check_field_checks_one_value_on_its_own():
    from minigpt_tui.core.config import check_field, check_override

    assert check_field("train.learning_rate", 1) == 1.0 and isinstance(check_field("train.learning_rate", 1), float)
    assert check_override("model.n_head=3") == ("model.n_head", 3)  # divides n_embd? that needs the whole config
    for item, sentence in [("model.n_head=0", "model.n_head must be an integer >= 1, got 0."),
                           ("train.device=tpu", None), ("train.bogus=1", None), ("optim.lr=1", None)]:
        with pytest.raises(ConfigError) as single:
            check_override(item)
        with pytest.raises(ConfigError) as whole:
            RunConfig().with_overrides([item])
        assert (str(single.value), single.value.field) == (str(whole.value), whole.value.field)
        assert sentence is None or str(single.value) == sentence


def test_a_run_config_from_before_the_cnn_fields_is_old_not_damaged(tmp_path):
    """model.kernel_size and model.dilation_cycle came with the CNN: a run's config.toml without
    them (complete=True, as runs are loaded) takes their defaults."""
    text = RunConfig().with_overrides(["model.family=cnn"]).to_run_toml()
    path = tmp_path / "config.toml"
    path.write_text(text.replace("kernel_size = 3\n", "").replace("dilation_cycle = 8\n", ""))
    assert "kernel_size" not in path.read_text()
    old = RunConfig.load(path, complete=True)
    assert (old.model.family, old.model.kernel_size, old.model.dilation_cycle) == ("cnn", 3, 8)
