"""Typed run configuration: three sections, [data], [model] and [train].

Recipes are TOML files read with tomllib; the resolved config of every run is
written back with tomli-w. Every field is checked here, once, and a bad value
raises ConfigError with one sentence that names the field ("train.max_steps
must be an integer >= 1, got 0"), so the CLI and the app can show it as is.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import tomli_w

from minigpt_tui.core.errors import ConfigError
from minigpt_tui.core.formatting import parse_duration

RUN_CONFIG_HEAD = "# minigpt-tui run config (the closing comment marks a whole file)\n"
RUN_CONFIG_TAIL = "# end of run config\n"


def _check(ok: bool, name: str, requirement: str, value: Any, field: str | None = None) -> None:
    """Raise the one-sentence error "NAME must be REQUIREMENT, got VALUE." about `field`
    (by default the key the sentence starts with)."""
    if not ok:
        raise ConfigError(f"{name} must be {requirement}, got {value!r}.", field=field or name)


@dataclass
class DataConfig:
    # A text file, a WikiText folder (wiki.train/valid/test.tokens or .raw), or
    # "" for the built-in King James Bible.
    path: str = ""
    # Optional separate validation text file; when empty, a single file is split.
    val_path: str = ""
    tokenizer: str = "char"  # "char" | "word" | "bpe" (byte-level BPE, core/data/bpe_tokenizer.py)
    # char/word: most frequent symbols kept; the rest become <unk>. 0 means keep all.
    # bpe: the vocabulary's size, 256 bytes plus merges (0 means 4096; nothing is ever <unk>).
    vocab_size: int = 256
    # Fraction of a single file held out (from its end) for validation.
    val_fraction: float = 0.1


@dataclass
class ModelConfig:
    family: str = "transformer"  # "transformer" | "gru" | "lstm" | "cnn"
    n_layer: int = 4
    n_head: int = 4  # transformer only
    n_embd: int = 128
    context_length: int = 64
    dropout: float = 0.0
    tie_weights: bool = True
    bias: bool = False  # biases in linear layers and norms (transformer)
    # The transformer MLP's activation: "gelu" (exact, with erf) or "gelu_tanh" (the tanh
    # approximation runs had before this field existed: 2x slower in bf16 on a CPU).
    activation: str = "gelu"  # or "swiglu": a gated MLP, down(silu(gate(x)) * up(x)) (Llama)
    # The options models made elsewhere need (core/pretrained: GPT-2, Llama layouts); the defaults
    # are our own Transformer's.
    norm: str = "layernorm"  # "layernorm" | "rmsnorm"
    norm_eps: float = 1e-5
    positions: str = "rotary"  # "rotary" | "learned" (a table of context_length positions: GPT-2)
    rope_theta: float = 10000.0
    n_kv_head: int = 0  # key/value heads (grouped-query attention); 0: n_head
    mlp_hidden: int = 0  # the MLP's inner width; 0: 4 * n_embd (cnn: its gated convolution's, 0: n_embd)
    # The CNN (family "cnn", core/models/cnn.py): each layer a causal convolution of kernel_size
    # taps, dilations doubling from 1 over dilation_cycle layers and then starting again; its
    # receptive field is 1 + (kernel_size - 1) x the sum of the dilations.
    kernel_size: int = 3
    dilation_cycle: int = 8


@dataclass
class TrainConfig:
    max_steps: int = 2000
    batch_size: int = 12
    grad_accum: int = 1
    learning_rate: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # 0 disables clipping
    # "adamw", or "muon": Muon (orthogonalized momentum) for the blocks' matrices and AdamW for the
    # embedding, head, norms and biases, at the same learning rate (core/training/muon.py).
    optimizer: str = "adamw"
    eval_interval: int = 250
    eval_batches: int = 20
    log_interval: int = 10
    sample_tokens: int = 200  # length of the sample shown at every evaluation
    seed: int = 1337
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N" | "mps"
    precision: str = "auto"  # "auto" (bf16 on CUDA, on a CPU where it measures faster) | "fp32" | "bf16" | "fp16"
    # torch.compile the model: true, false, or "auto": where this shape's compile cache is warm
    # and the run is long enough to earn the compile back (core/training/compile_choice.py)
    compile: bool | str = "auto"
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default
    # Train for this long rather than max_steps: "10m", "90s", "1h30m" ("" is off). The schedule is
    # sized to the machine from the measured rate and re-sized as the run goes (training/time_budget.py).
    time_budget: str = ""


SECTIONS: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}


def _device_ok(device: str) -> bool:
    return device in ("auto", "cpu", "cuda", "mps") or (device.startswith("cuda:") and device[5:].isdigit())


_AT_LEAST_1 = (lambda v: v >= 1, "an integer >= 1")
_AT_LEAST_0 = (lambda v: v >= 0, "an integer >= 0")

# The rules a field obeys on its own: key -> ((test, requirement), ...), checked in this
# order. Kept apart from the rules that relate two fields (RunConfig.validate) so that a
# form can check one field as it is typed without building a whole config.
FIELD_RULES: dict[str, tuple[tuple[Callable[[Any], bool], str], ...]] = {
    # ("hf": an imported model's own tokenizer, which only runs made from one carry: --train --from)
    "data.tokenizer": ((lambda v: v in ("char", "word", "bpe", "hf"), '"char", "word" or "bpe"'),),
    "data.vocab_size": ((lambda v: v == 0 or v >= 2, "0 (no cap) or >= 2"),),
    "data.val_fraction": ((lambda v: 0.0 < v < 1.0, "between 0 and 1 (exclusive)"),),
    "model.family": ((lambda v: v in ("transformer", "gru", "lstm", "cnn"), '"transformer", "gru", "lstm" or "cnn"'),),
    "model.n_layer": (_AT_LEAST_1,),
    "model.n_embd": (_AT_LEAST_1,),
    "model.context_length": (_AT_LEAST_1, (lambda v: v <= 65536, "at most 65536")),
    "model.n_head": (_AT_LEAST_1,),
    "model.dropout": ((lambda v: 0.0 <= v < 1.0, "in [0, 1)"),),
    "model.activation": ((lambda v: v in ("gelu", "gelu_tanh", "swiglu"), '"gelu", "gelu_tanh" or "swiglu"'),),
    "model.norm": ((lambda v: v in ("layernorm", "rmsnorm"), '"layernorm" or "rmsnorm"'),),
    "model.norm_eps": ((lambda v: 0 < v < 1, "a small positive number"),),
    "model.positions": ((lambda v: v in ("rotary", "learned"), '"rotary" or "learned"'),),
    "model.rope_theta": ((lambda v: v > 1, "a number > 1"),),
    "model.n_kv_head": (_AT_LEAST_0,),
    "model.mlp_hidden": (_AT_LEAST_0,),
    "model.kernel_size": ((lambda v: v >= 2, "an integer >= 2"), (lambda v: v <= 64, "at most 64")),
    "model.dilation_cycle": (_AT_LEAST_1, (lambda v: v <= 16, "at most 16 (dilations up to 32768)")),
    **{f"train.{name}": (_AT_LEAST_1,) for name in
       ("max_steps", "batch_size", "grad_accum", "eval_interval", "eval_batches", "log_interval")},
    **{f"train.{name}": (_AT_LEAST_0,) for name in ("warmup_steps", "sample_tokens", "threads")},
    "train.learning_rate": ((lambda v: 0 < v <= 10, "a number in (0, 10]"),),
    "train.weight_decay": ((lambda v: v >= 0, "a number >= 0"),),
    "train.beta1": ((lambda v: 0 <= v < 1, "in [0, 1)"),),
    "train.beta2": ((lambda v: 0 <= v < 1, "in [0, 1)"),),
    "train.grad_clip": ((lambda v: v >= 0, "a number >= 0 (0 disables clipping)"),),
    "train.optimizer": ((lambda v: v in ("adamw", "muon"), '"adamw" or "muon"'),),
    "train.precision": ((lambda v: v in ("auto", "fp32", "bf16", "fp16"), '"auto", "fp32", "bf16" or "fp16"'),),
    "train.device": ((_device_ok, '"auto", "cpu", "cuda", "cuda:N" or "mps"'),),
    "train.compile": ((lambda v: isinstance(v, bool) or v == "auto", 'true, false or "auto"'),),
    "train.time_budget": ((lambda v: v.strip() == "" or parse_duration(v) is not None,
                           '"" (off) or a duration such as "10m", "90s" or "1h30m"'),),
}


def _check_rules(key: str, value: Any) -> None:
    for test, requirement in FIELD_RULES.get(key, ()):
        _check(test(value), key, requirement, value)


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    # ---- (de)serialisation -------------------------------------------------
    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    def to_run_toml(self) -> str:
        """The TOML of a run's config.toml: framed by two comment lines, so that a file cut
        short anywhere (even between two lines) is told from a whole one."""
        return RUN_CONFIG_HEAD + self.to_toml() + RUN_CONFIG_TAIL

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "RunConfig":
        if not isinstance(raw, dict):
            raise ConfigError("The config must be a table with [data], [model] and [train] sections.")
        for key in raw:
            if key not in SECTIONS:
                raise ConfigError(
                    f"Unknown config section {key!r}; the sections are [data], [model] and [train].", field=key
                )
        built = {}
        for name, klass in SECTIONS.items():
            values = raw.get(name, {})
            if not isinstance(values, dict):
                raise ConfigError(f"Config section [{name}] must be a table, got {values!r}.", field=name)
            built[name] = _build_section(name, klass, values)
        config = cls(**built)
        config.validate()
        return config

    @classmethod
    def from_toml(cls, text: str, source: str = "config") -> "RunConfig":
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{source} is not valid TOML ({err}).") from None
        return cls.from_dict(raw)

    @classmethod
    def load(cls, path: str | Path, complete: bool = False) -> "RunConfig":
        """A config from a TOML file; every problem is one sentence naming the file.

        complete=True is for a run's own config.toml, which lists every field: a
        missing section or model field means the file was damaged, and filling
        it with defaults would describe a different model than the weights."""
        path = Path(path)
        try:
            text = path.read_bytes().decode("utf-8")
        except FileNotFoundError:
            raise ConfigError(f"Config file {path} does not exist.") from None
        except IsADirectoryError:
            raise ConfigError(f"Config file {path} is a folder, not a TOML file.") from None
        except UnicodeDecodeError:
            raise ConfigError(f"Config file {path} is not UTF-8 text; it is damaged or not a config file.") from None
        except OSError as err:
            raise ConfigError(f"Config file {path} cannot be read ({err.strerror or err}).") from None
        if not text.strip():
            raise ConfigError(f"Config file {path} is empty.")
        if complete and text.startswith(RUN_CONFIG_HEAD) and not text.rstrip().endswith(RUN_CONFIG_TAIL.strip()):
            raise ConfigError(f"Config file {path} is cut short (its closing line is missing); it was damaged.")
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"Config file {path} is not valid TOML ({err}).") from None
        if complete:
            _fill_added_fields(raw)
            missing = _missing_fields(raw)
            if missing:
                raise ConfigError(f"Config file {path} is incomplete ({missing} is missing); it was damaged.",
                                  field=missing.strip("[]"))
        try:
            return cls.from_dict(raw)
        except ConfigError as err:
            message = str(err)
            raise ConfigError(f"In config file {path}, {message[:1].lower()}{message[1:]}", field=err.field) from None

    def with_overrides(self, overrides: list[str]) -> "RunConfig":
        """Apply `section.key=value` strings (values parsed as TOML, else strings)."""
        raw = self.to_dict()
        for item in overrides:
            key, value = parse_override(item)
            section, _, name = key.partition(".")
            if section not in raw:
                raise _unknown_override_section(section, item, key)
            raw[section][name] = value
        return RunConfig.from_dict(raw)

    # ---- validation ----------------------------------------------------------
    def validate(self) -> None:
        """Every field's own rules (FIELD_RULES), then, section by section, those relating two fields."""
        m, t = self.model, self.train
        self._check_section("data")
        if self.data.tokenizer == "bpe":  # 256 would be bytes alone: no merges learnt
            _check(self.data.vocab_size == 0 or self.data.vocab_size > 256, "data.vocab_size",
                   "0 (4096) or more than 256 (the 256 bytes plus merges) for the bpe tokenizer",
                   self.data.vocab_size)
        self._check_section("model")
        if m.family == "transformer":
            _check(
                m.n_embd % m.n_head == 0,
                "model.n_head",
                f"a divisor of model.n_embd ({m.n_embd})",
                m.n_head,
            )
            _check((m.n_embd // m.n_head) % 2 == 0, "model.n_embd / model.n_head",
                   "even (rotary embeddings rotate pairs of dimensions)", m.n_embd // m.n_head,
                   field="model.n_embd")
            _check(m.n_kv_head == 0 or m.n_head % m.n_kv_head == 0, "model.n_kv_head",
                   f"0 or a divisor of model.n_head ({m.n_head})", m.n_kv_head)
        self._check_section("train")
        _check(0 <= t.min_lr <= t.learning_rate, "train.min_lr",
               f"between 0 and train.learning_rate ({t.learning_rate})", t.min_lr)

    def _check_section(self, section: str) -> None:
        values = getattr(self, section)
        for key in FIELD_RULES:
            if key.startswith(section + "."):
                _check_rules(key, getattr(values, key.partition(".")[2]))


# Fields added after runs had been written, with the value every run written before them had:
# a run's config.toml without one is old, not damaged.
ADDED_FIELDS: dict[tuple[str, str], Any] = {
    ("model", "activation"): "gelu_tanh",
    **{("model", f.name): f.default for f in fields(ModelConfig)
       if f.name in ("norm", "norm_eps", "positions", "rope_theta", "n_kv_head", "mlp_hidden",
                     "kernel_size", "dilation_cycle")},
}


def _fill_added_fields(raw: dict[str, Any]) -> None:
    for (section, key), value in ADDED_FIELDS.items():
        if isinstance(raw.get(section), dict):
            raw[section].setdefault(key, value)


def _missing_fields(raw: dict[str, Any]) -> str | None:
    """The first field a complete run config lacks (sections, every [model] field, the data source)."""
    for section in ("data", "model", "train"):
        if not isinstance(raw.get(section), dict):
            return f"[{section}]"
    needed = [("data", "path"), ("data", "tokenizer"), *[("model", f.name) for f in fields(ModelConfig)]]
    for section, key in needed:
        if key not in raw[section]:
            return f"{section}.{key}"
    return None


def _build_section(section: str, klass: type, values: dict[str, Any]) -> Any:
    known = {f.name: f for f in fields(klass)}
    kwargs = {}
    for key, value in values.items():
        if key not in known:
            raise _unknown_key(section, key, known)
        kwargs[key] = _coerce(f"{section}.{key}", known[key].type, value)
    return klass(**kwargs)


def _unknown_key(section: str, key: str, known: dict[str, Any]) -> ConfigError:
    names = ", ".join(known)
    return ConfigError(f"Unknown config key {section}.{key}; the keys of [{section}] are: {names}.",
                       field=f"{section}.{key}")


def _unknown_override_section(section: str, item: str, key: str) -> ConfigError:
    return ConfigError(f"Unknown config section {section!r} in --set {item!r}; use data., model. or train.",
                       field=key)


def check_field(key: str, value: Any) -> Any:
    """`value` coerced to the type of field `key` ("train.max_steps") and checked against that
    field's own rules; the rules relating it to other fields need a whole config (validate)."""
    section, _, name = key.partition(".")
    klass = SECTIONS.get(section)
    if klass is None:
        raise ConfigError(f"Unknown config section {section!r}; the sections are [data], [model] and [train].",
                          field=key)
    known = {f.name: f for f in fields(klass)}
    if name not in known:
        raise _unknown_key(section, name, known)
    value = _coerce(key, known[name].type, value)
    _check_rules(key, value)
    return value


def check_override(item: str) -> tuple[str, Any]:
    """One `section.key=value` parsed and its value checked on its own (see check_field), with
    the same sentences as with_overrides gives for it."""
    key, value = parse_override(item)
    section = key.partition(".")[0]
    if section not in SECTIONS:
        raise _unknown_override_section(section, item, key)
    return key, check_field(key, value)


def _coerce(name: str, type_name: Any, value: Any) -> Any:
    """Check a TOML value against the field's declared type (annotations are strings here)."""
    type_name = getattr(type_name, "__name__", type_name)
    if type_name == "bool":
        _check(isinstance(value, bool), name, "true or false", value)
        return value
    if type_name == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
        _check(ok, name, "an integer", value)
        return value
    if type_name == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        _check(ok and math.isfinite(value), name, "a finite number", value)
        return float(value)
    if type_name == "str":
        _check(isinstance(value, str), name, "a string", value)
        return value
    if type_name == "bool | str":  # (its rule says which strings)
        _check(isinstance(value, (bool, str)), name, 'true, false or "auto"', value)  # (train.compile)
        return value
    raise AssertionError(f"unsupported config field type {type_name}")  # a programming error


def parse_override(item: str) -> tuple[str, Any]:
    """`train.max_steps=200` -> ("train.max_steps", 200). Values are TOML; bare words are strings."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or "." not in key:
        raise ConfigError(f"--set expects section.key=value, got {item!r}.", field=key or None)
    text = text.strip()
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text  # a path or a bare word: keep it as a string
    return key, value
