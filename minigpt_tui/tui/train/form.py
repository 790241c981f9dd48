"""The Train form's schema, its validation and the trainer command it stands for.

The widgets are laid out here from the schema (compose_form); the pane reads the
fields' text into a dict, checks it with check_form and shows what that returns. Validation runs on every (debounced) keystroke, so it is cheap: each field is
checked on its own (config.check_override: its type and its own rules), then the whole
form goes through one with_overrides round trip for the rules that relate two fields
(n_head divides n_embd, min_lr <= learning_rate). Errors land at the field that
ConfigError.field names.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.suggester import SuggestFromList
from textual.widgets import Input, Label, Select, Static

from minigpt_tui.core.config import RunConfig, check_override
from minigpt_tui.core.data import catalogue
from minigpt_tui.core.data.corpus import CorpusCheck, check_corpus
from minigpt_tui.core.errors import ConfigError, RunError
from minigpt_tui.core.runs.run_dir import RunDir
from minigpt_tui.core.training.start_from import FREE_MODEL_FIELDS, start_from_config
from minigpt_tui.tui.formatting import fmt_bytes

# (config key, label, choices or None). The labels are the TOML names, so what a person
# learns here carries over to recipes and --set.
FORM_FIELDS: list[tuple[str, str, tuple[str, ...] | None]] = [
    ("data.path", "corpus", None),
    ("data.tokenizer", "tokenizer", ("char", "word", "bpe")),
    ("data.vocab_size", "vocab_size", None),
    ("model.family", "family", ("transformer", "gru", "lstm", "cnn")),
    ("model.n_layer", "n_layer", None),
    ("model.n_head", "n_head", None),
    ("model.n_embd", "n_embd", None),
    ("model.context_length", "context", None),
    ("model.dropout", "dropout", None),
    ("train.max_steps", "max_steps", None),
    ("train.time_budget", "time_budget", None),
    ("train.batch_size", "batch_size", None),
    ("train.learning_rate", "learning_rate", None),
    ("train.eval_interval", "eval_interval", None),
    ("train.device", "device", None),
]
FORM_KEYS = [key for key, _, _ in FORM_FIELDS]
STRING_FIELDS = {"data.path", "data.tokenizer", "model.family", "train.device", "train.time_budget"}
EXTRA = "extra"  # the free-form "--set" field
PLACEHOLDERS = {"data.path": "(empty: built-in KJV)", "train.time_budget": "e.g. 10m"}
# What a resumed run may change: how long it trains.
RESUME_FREE = frozenset(["train.max_steps", "train.time_budget"])
FORM = "form"  # an error no one field owns: shown under the whole form

# Starting from a run (--from) keeps its tokenizer and its model's shape: these fields show the
# run's values, locked. Context (downwards) and dropout may change (core.training.start_from).
FROM_LOCKED = frozenset(["data.tokenizer", "data.vocab_size"] +
                        [k for k in FORM_KEYS if k.startswith("model.") and k.split(".")[1] not in FREE_MODEL_FIELDS])

# A rule about a key the form lacks is shown at the form field it compares against: the
# only way to break "min_lr <= learning_rate" from the form is to lower learning_rate.
SHOWN_AT = {"train.min_lr": "train.learning_rate"}


def field_id(key: str) -> str:
    """The widget id of a form field ("train.max_steps" -> "f-train-max-steps")."""
    return "f-" + key.replace(".", "-").replace("_", "-")


def format_value(value: Any) -> str:
    """A config value as the form shows it (TOML spelling for booleans, short floats)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format(value, "g")
    return str(value)


def config_value(config: RunConfig, key: str) -> Any:
    section, name = key.split(".")
    return getattr(getattr(config, section), name)


def describe_corpus(text: str) -> tuple[bool, str]:
    """(usable, a few words) for the corpus field, checked as the user types by the trainer's own
    check (core.data.corpus.check_corpus): "text file, 1.1 MB", "binary file, not text"; a catalogue
    name says so ("text8 (catalogue): ...", or "not downloaded; run minigpt-tui --corpus fetch text8")."""
    return _corpus_hint(check_corpus(text), text)


def _corpus_hint(check: CorpusCheck, text: str = "") -> tuple[bool, str]:
    summary = check.summary
    if check.ok and check.size is not None:
        summary = f"{summary}, {fmt_bytes(check.size)}"
    entry = catalogue.named(text)
    if check.ok and entry is not None and entry.layout != "builtin":
        summary = f"{entry.name} (catalogue): {summary}"
    return check.ok, summary


def corpus_choices() -> list[tuple[str, str]]:
    """The catalogue for the corpus picker: (name, what it is and whether it is here)."""
    choices = []
    for entry in catalogue.ENTRIES.values():
        if entry.layout == "builtin":
            state = "built in"
        elif catalogue.is_present(entry):
            state = f"here, {fmt_bytes(catalogue.local_size(entry) or 0)}"
        else:
            size = f"{fmt_bytes(entry.size)}; " if entry.size is not None else ""
            state = f"not downloaded ({size}{catalogue.FETCH_COMMAND} {entry.name})"
        choices.append((entry.name, f"{entry.description}; {state}"))
    return choices


def compose_form(recipes: list[str], recipe: str) -> ComposeResult:
    """The form's widgets, laid out from FORM_FIELDS: a row per field (a Select where the
    field has choices), each with its error line under it, then the --set field."""
    yield Static("", id="form-mode")
    with Horizontal(classes="form-row"):
        yield Label("recipe", classes="form-label")
        yield Select([(name, name) for name in recipes], value=recipe or Select.BLANK,
                     allow_blank=not recipes, compact=True, id="recipe")
    for key, label, choices in FORM_FIELDS:
        with Horizontal(classes="form-row"):
            yield Label(label, classes="form-label")
            if choices:
                yield Select([(c, c) for c in choices], value=choices[0], allow_blank=False,
                             compact=True, id=field_id(key), classes="form-field")
            else:
                corpus = key == "data.path"
                # The corpus field offers the catalogue's names as the user types (→ takes one).
                yield Input(compact=True, id=field_id(key), classes="form-field",
                            placeholder=PLACEHOLDERS.get(key, ""),
                            suggester=SuggestFromList(catalogue.names()) if corpus else None,
                            select_on_focus=False)
        if key == "data.path":
            hint = Static("", id="corpus-hint", classes="hint")
            # One line: a hint longer than the form is wide ends in "…" rather than at a word.
            hint.styles.text_wrap = "nowrap"
            hint.styles.text_overflow = "ellipsis"
            yield hint
            fetching = Static("", id="corpus-fetch", classes="hint")  # a download's progress, while one runs
            fetching.display = False
            yield fetching
        yield Static("", id=field_id(key) + "-error", classes="field-error")
    with Horizontal(classes="form-row"):
        yield Label("--set", classes="form-label")
        yield Input(compact=True, id=field_id(EXTRA), classes="form-field",
                    placeholder="section.key=value ...", select_on_focus=False)
    yield Static("", id=field_id(EXTRA) + "-error", classes="field-error")
    yield Static("", id="form-error", classes="field-error")


def locked(mode: str | None, key: str, family: str = "transformer") -> bool:
    """Is this field fixed by the form's mode? "resume": all but max_steps and time_budget; "from" (a new run
    from a run's weights): the tokenizer and the model's shape; None (a new run): none. And
    n_head, whatever the mode, for a family without attention heads (the RNNs, the CNN, whose
    kernel_size and dilation_cycle are --set fields)."""
    return ((mode == "resume" and key not in RESUME_FREE) or (mode == "from" and key in FROM_LOCKED)
            or (key == "model.n_head" and family != "transformer"))


def mode_line(mode: str | None, name: str, step: int = 0) -> Text | None:
    """The line over the form that says what `s` does with a run (None for a new run from a recipe)."""
    if mode == "resume":
        return Text.assemble(("Resume ", "bold"), (name, "bold"),
                             ("\nraise max_steps (or time_budget) to train longer; n: new run", "dim"))
    if mode == "from":
        return Text.assemble(("Start from ", "bold"), (f"{name} (step {step:,})", "bold"),
                             ("\na new run from its weights; its model stays as it is; n: new run", "dim"))
    return None


def shown_choices(choices: tuple[str, ...], value: str, mode: str | None) -> tuple[str, ...]:
    """A Select's choices while the form shows `value`: a run's own value the choices lack (an
    imported model's "hf" tokenizer) is offered while the form shows that run (resume or from)."""
    return choices if value in choices or mode is None else (*choices, value)


def form_item(key: str, text: str) -> str:
    """The `section.key=value` a field's text stands for. String fields are quoted as TOML
    strings, so that "cuda:0" or a path with spaces is not read as something else; the
    corpus path keeps its spaces (a file name may start or end with one)."""
    if key in STRING_FIELDS:
        return f"{key}={json.dumps(text if key == 'data.path' else text.strip(), ensure_ascii=False)}"
    return f"{key}={text.strip()}"


def split_extra(text: str) -> list[str]:
    """The --set field's `section.key=value` items (shell quoting, as on the command line)."""
    try:
        return shlex.split(text)
    except ValueError:
        raise ConfigError("The --set field has an unclosed quote.") from None


@dataclass
class FormCheck:
    """The outcome of checking the form: the config it makes (None while any field has an
    error), the error sentence of each field (a FORM_FIELDS key, EXTRA or FORM) and the
    corpus line shown under the corpus field (the error at data.path is the trainer's sentence)."""

    config: RunConfig | None
    errors: dict[str, str] = field(default_factory=dict)
    corpus_ok: bool = True
    corpus_hint: str = ""


def check_form(base: RunConfig, values: dict[str, str], extra_text: str,
               start_from: RunDir | None = None) -> FormCheck:
    """Check the form's fields (`values`: config key -> the field's text) and its --set
    text over `base` (the recipe, or the config of the run being resumed). `start_from`: the
    run a new run starts from (base is start_from_config(start_from, None, [])); its rules
    apply too, so a change of the model's shape is an error at the field that makes it."""
    errors: dict[str, str] = {}
    good_items: list[str] = []
    for key in FORM_KEYS:
        item = form_item(key, values.get(key, ""))
        if not item.split("=", 1)[1]:
            errors[key] = f"{key} needs a value."
            continue
        try:
            check_override(item)
        except ConfigError as err:
            errors[key] = str(err)
            continue
        good_items.append(item)
    extra_keys: set[str] = set()
    try:
        extra = split_extra(extra_text)
        for item in extra:
            extra_keys.add(check_override(item)[0])
    except ConfigError as err:
        extra = []
        errors[EXTRA] = str(err)
    # One round trip for the rules between fields. The fields with errors of their own keep
    # the base value, so a cross-field error shows beside them rather than after their fix.
    config = None
    try:
        if start_from is not None:
            config = start_from_config(start_from, None, good_items + extra)
        else:
            config = base.with_overrides(good_items + extra)
    except ConfigError as err:
        errors.setdefault(_shown_at(err, extra_keys), str(err))
    except RunError as err:  # the run to start from is gone or broken
        errors.setdefault(FORM, str(err))
    corpus = check_corpus(values.get("data.path", ""))
    corpus_ok, hint = _corpus_hint(corpus, values.get("data.path", ""))
    if not corpus_ok and "data.path" not in errors:
        errors["data.path"] = corpus.problem  # the sentence the trainer would stop with
    return FormCheck(None if errors else config, errors, corpus_ok, hint)


def _shown_at(err: ConfigError, extra_keys: set[str]) -> str:
    """Where the form shows an error from the whole-form round trip."""
    if err.field in extra_keys:
        return EXTRA  # the --set value wins over the form field, so that is what to fix
    if err.field in FORM_KEYS:
        return err.field
    return SHOWN_AT.get(err.field or "", FORM)


def command_line(config: RunConfig, values: dict[str, str], extra_text: str, *,
                 resume_dir: Path | None = None, recipe_path: Path | None = None,
                 from_dir: Path | None = None, from_base: RunConfig | None = None) -> list[str]:
    """The headless command (without --events) that trains `config`, the checked form:
    a resume sets max_steps only; a new run lists the fields that differ from the recipe, and
    one started from a run (`from_dir`, --from) those that differ from `from_base`, what
    start_from_config(run, None, []) gives (--from with no recipe starts from the same)."""
    extra = split_extra(extra_text)
    if resume_dir is not None:
        sets = [f"train.max_steps={config.train.max_steps}"]
        if config.train.time_budget:
            sets.append(form_item("train.time_budget", config.train.time_budget))
        sets += extra
        head = ["--train", "--resume", str(resume_dir)]
    elif from_dir is not None:
        if from_base is None:
            raise ValueError("command_line needs the config of the run to start from")
        sets = [form_item(key, values.get(key, "")) for key in FORM_KEYS
                if config_value(config, key) != config_value(from_base, key)]
        sets += extra
        head = ["--train", "--from", str(from_dir)]
    else:
        if recipe_path is None:
            raise ValueError("command_line needs a recipe path or a run to resume")
        recipe = RunConfig.load(recipe_path)
        sets = [form_item(key, values.get(key, "")) for key in FORM_KEYS
                if config_value(config, key) != config_value(recipe, key)]
        sets += extra
        head = ["--train", str(recipe_path)]
    args = list(head)
    for item in sets:
        args += ["--set", item]
    return args

