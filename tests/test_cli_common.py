"""The command line reads the sampling options in one place (cli/common.py): --generate, --chat and
the chat REPL's slash commands give the same answer to the same value, a bad one in the same
sentence (only the name the user typed differs). In-process, with no model: every value here is
refused before a run is looked up, and the REPL is driven through its loop with a stand-in chat."""

from __future__ import annotations

import dataclasses
import io
from types import SimpleNamespace

import pytest

from minigpt_tui.cli.chat import SETTING_COMMANDS, Repl
from minigpt_tui.cli.common import USER_ERROR, sampling_value
from minigpt_tui.cli import main
from minigpt_tui.core.generation.sampling_settings import SamplingSettings

# The REPL command and the command-line option that set the same setting.
NAMES = [("/temperature", "--temperature"), ("/temp", "--temperature"), ("/top-k", "--top-k"),
         ("/top-p", "--top-p"), ("/min-p", "--min-p"), ("/penalty", "--repetition-penalty"),
         ("/seed", "--seed"), ("/length", "--max-new-tokens")]
BAD = [
    ("/temperature", "abc"), ("/temperature", "9"), ("/temperature", "-0.5"), ("/temperature", "nan"),
    ("/temp", "inf"), ("/top-k", "2.5"), ("/top-k", "-1"), ("/top-p", "0"), ("/top-p", "1.5"),
    ("/min-p", "1"), ("/penalty", "0"), ("/penalty", "inf"), ("/penalty", "x"), ("/seed", "x"),
    ("/seed", "1e3"), ("/length", "-1"), ("/length", "many"),
]


def repl_says(*lines: str) -> tuple[list[str], SamplingSettings]:
    """What the chat REPL prints on stderr for these lines, and its settings afterwards."""
    settings, err = SamplingSettings(), io.StringIO()
    sampler = SimpleNamespace(settings=settings, reseed=lambda seed: None)
    chat = SimpleNamespace(session=SimpleNamespace(sampler=sampler), template=None)
    repl = Repl(chat, run_chat=None, run=None, stdin=io.StringIO("".join(f"{line}\n" for line in lines)),
                out=io.StringIO(), err=err)
    assert repl.loop() == 0
    return err.getvalue().splitlines(), settings


def front_end_says(capsys, mode: str, option: str, value: str) -> str:
    """The one line --generate or --chat prints for a bad option (before any run is looked up)."""
    assert main([mode, "no-such-run", f"{option}={value}"]) == USER_ERROR
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    return err.removeprefix("minigpt-tui: ").rstrip("\n")


def test_every_repl_setting_command_is_a_setting_with_an_option():
    fields = {f.name for f in dataclasses.fields(SamplingSettings)}
    assert set(SETTING_COMMANDS) == {command for command, _ in NAMES}
    assert set(SETTING_COMMANDS.values()) <= fields


@pytest.mark.parametrize("command, value", BAD)
def test_a_bad_value_is_the_same_sentence_from_generate_chat_and_the_repl(capsys, command, value):
    option = dict(NAMES)[command]
    (said,), settings = repl_says(f"{command} {value}")
    assert said.startswith(f"{command} ") and said.endswith(".")
    assert settings == SamplingSettings()  # refused: nothing changed
    sentence = said.removeprefix(command)
    for mode in ("--generate", "--chat"):
        assert front_end_says(capsys, mode, option, value) == option + sentence
    with pytest.raises(ValueError) as refused:
        sampling_value(SETTING_COMMANDS[command], value)
    assert str(refused.value) == option + sentence


def test_the_sentences_users_see():
    said, _ = repl_says("/temperature abc", "/top-k -1", "/top-k 2.5", "/penalty inf", "/top-p 0")
    assert said == ["/temperature must be a number, got 'abc'.",
                    "/top-k must be >= 0 (0 turns it off), got -1.",
                    "/top-k must be a whole number, got '2.5'.",
                    "/penalty must be a finite number, got inf.",
                    "/top-p must be in (0, 1] (1 turns it off), got 0."]


@pytest.mark.parametrize("command, value, expected", [
    ("/temperature", "0", 0.0), ("/temp", "1.25", 1.25), ("/top-k", "40", 40), ("/top-p", "0.9", 0.9),
    ("/min-p", "0.05", 0.05), ("/penalty", "1.2", 1.2), ("/seed", "-7", -7), ("/length", "0", 0),
])
def test_a_good_value_is_read_the_same_way(command, value, expected):
    setting = SETTING_COMMANDS[command]
    read = sampling_value(setting, value)
    assert read == expected and type(read) is type(expected)
    said, settings = repl_says(f"{command} {value}")
    assert getattr(settings, setting) == read and said == [f"{setting.replace('_', ' ')} = {read}"]


def test_a_command_without_exactly_one_value_says_what_it_takes():
    said, _ = repl_says("/top-k", "/temp 1 2")
    assert said == ["/top-k needs one value, e.g. /top-k 0.", "/temp needs one value, e.g. /temp 0.8."]


def test_allow_unk_is_off_unless_asked_for_on_the_command_line_and_in_the_repl():
    from minigpt_tui.cli.common import settings_from
    from minigpt_tui.cli.dispatch import build_parser

    for mode in ("--generate", "--chat"):
        assert not settings_from(build_parser().parse_args([mode, "run"])).allow_unk
        assert settings_from(build_parser().parse_args([mode, "run", "--allow-unk"])).allow_unk
    said, settings = repl_says("/allow-unk on")
    assert settings.allow_unk and said == ["Tokens the training text never held (<unk>) may be written."]
    said, settings = repl_says("/allow-unk on", "/allow-unk off", "/allow-unk maybe")
    assert not settings.allow_unk and said[-1] == "/allow-unk needs on or off, e.g. /allow-unk on."
