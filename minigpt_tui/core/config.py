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
from typing import Any

import tomli_w


RUN_CONFIG_HEAD = "# minigpt-tui run config (the closing comment marks a whole file)\n"
RUN_CONFIG_TAIL = "# end of run config\n"


class ConfigError(ValueError):
    """A user-facing configuration problem; str(err) is one sentence."""


def _check(ok: bool, name: str, requirement: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{name} must be {requirement}, got {value!r}.")


@dataclass
class DataConfig:
    # A text file, a WikiText folder (wiki.train/valid/test.tokens or .raw), or
    # "" for the built-in King James Bible.
    path: str = ""
    # Optional separate validation text file; when empty, a single file is split.
    val_path: str = ""
    tokenizer: str = "char"  # "char" | "word"
    # Most frequent symbols kept; the rest become <unk>. 0 means keep all.
    vocab_size: int = 256
    # Fraction of a single file held out (from its end) for validation.
    val_fraction: float = 0.1


@dataclass
class ModelConfig:
    family: str = "transformer"  # "transformer" | "gru" | "lstm"
    n_layer: int = 4
    n_head: int = 4  # transformer only
    n_embd: int = 128
    context_length: int = 64
    dropout: float = 0.0
    tie_weights: bool = True
    bias: bool = False  # biases in linear layers and norms (transformer)


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
    eval_interval: int = 250
    eval_batches: int = 20
    log_interval: int = 10
    sample_tokens: int = 200  # length of the sample shown at every evaluation
    seed: int = 1337
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N" | "mps"
    precision: str = "auto"  # "auto" (bf16 on CUDA, else fp32) | "fp32" | "bf16" | "fp16"
    compile: bool = False  # torch.compile the model
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default


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
        sections = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
        for key in raw:
            if key not in sections:
                raise ConfigError(
                    f"Unknown config section {key!r}; the sections are [data], [model] and [train]."
                )
        built = {}
        for name, klass in sections.items():
            values = raw.get(name, {})
            if not isinstance(values, dict):
                raise ConfigError(f"Config section [{name}] must be a table, got {values!r}.")
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
            missing = _missing_fields(raw)
            if missing:
                raise ConfigError(f"Config file {path} is incomplete ({missing} is missing); it was damaged.")
        try:
            return cls.from_dict(raw)
        except ConfigError as err:
            message = str(err)
            raise ConfigError(f"In config file {path}, {message[:1].lower()}{message[1:]}") from None

    def with_overrides(self, overrides: list[str]) -> "RunConfig":
        """Apply `section.key=value` strings (values parsed as TOML, else strings)."""
        raw = self.to_dict()
        for item in overrides:
            key, value = parse_override(item)
            section, _, name = key.partition(".")
            if section not in raw:
                raise ConfigError(
                    f"Unknown config section {section!r} in --set {item!r}; use data., model. or train."
                )
            raw[section][name] = value
        return RunConfig.from_dict(raw)

    # ---- validation ----------------------------------------------------------
    def validate(self) -> None:
        d, m, t = self.data, self.model, self.train
        _check(d.tokenizer in ("char", "word"), "data.tokenizer", '"char" or "word"', d.tokenizer)
        _check(d.vocab_size == 0 or d.vocab_size >= 2, "data.vocab_size", "0 (no cap) or >= 2", d.vocab_size)
        _check(0.0 < d.val_fraction < 1.0, "data.val_fraction", "between 0 and 1 (exclusive)", d.val_fraction)

        families = ("transformer", "gru", "lstm")
        _check(m.family in families, "model.family", '"transformer", "gru" or "lstm"', m.family)
        for name in ("n_layer", "n_embd", "context_length", "n_head"):
            value = getattr(m, name)
            _check(value >= 1, f"model.{name}", "an integer >= 1", value)
        _check(m.context_length <= 65536, "model.context_length", "at most 65536", m.context_length)
        _check(0.0 <= m.dropout < 1.0, "model.dropout", "in [0, 1)", m.dropout)
        if m.family == "transformer":
            _check(
                m.n_embd % m.n_head == 0,
                "model.n_head",
                f"a divisor of model.n_embd ({m.n_embd})",
                m.n_head,
            )
            _check((m.n_embd // m.n_head) % 2 == 0, "model.n_embd / model.n_head",
                   "even (rotary embeddings rotate pairs of dimensions)", m.n_embd // m.n_head)

        for name in ("max_steps", "batch_size", "grad_accum", "eval_interval", "eval_batches", "log_interval"):
            value = getattr(t, name)
            _check(value >= 1, f"train.{name}", "an integer >= 1", value)
        for name in ("warmup_steps", "sample_tokens", "threads"):
            value = getattr(t, name)
            _check(value >= 0, f"train.{name}", "an integer >= 0", value)
        _check(0 < t.learning_rate <= 10, "train.learning_rate", "a number in (0, 10]", t.learning_rate)
        _check(0 <= t.min_lr <= t.learning_rate, "train.min_lr",
               f"between 0 and train.learning_rate ({t.learning_rate})", t.min_lr)
        _check(t.weight_decay >= 0, "train.weight_decay", "a number >= 0", t.weight_decay)
        _check(0 <= t.beta1 < 1, "train.beta1", "in [0, 1)", t.beta1)
        _check(0 <= t.beta2 < 1, "train.beta2", "in [0, 1)", t.beta2)
        _check(t.grad_clip >= 0, "train.grad_clip", "a number >= 0 (0 disables clipping)", t.grad_clip)
        device_ok = t.device in ("auto", "cpu", "cuda", "mps") or (
            t.device.startswith("cuda:") and t.device[5:].isdigit()
        )
        _check(t.precision in ("auto", "fp32", "bf16", "fp16"), "train.precision",
               '"auto", "fp32", "bf16" or "fp16"', t.precision)
        _check(device_ok, "train.device", '"auto", "cpu", "cuda", "cuda:N" or "mps"', t.device)


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
            names = ", ".join(known)
            raise ConfigError(f"Unknown config key {section}.{key}; the keys of [{section}] are: {names}.")
        kwargs[key] = _coerce(f"{section}.{key}", known[key].type, value)
    return klass(**kwargs)


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
    raise AssertionError(f"unsupported config field type {type_name}")  # a programming error


def parse_override(item: str) -> tuple[str, Any]:
    """`train.max_steps=200` -> ("train.max_steps", 200). Values are TOML; bare words are strings."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or "." not in key:
        raise ConfigError(f"--set expects section.key=value, got {item!r}.")
    text = text.strip()
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text  # a path or a bare word: keep it as a string
    return key, value
