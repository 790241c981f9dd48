"""The Train tab, in five parts: the form (form.py), the trainer child process and a run
another process trains, followed from its files (process.py), starting, watching and
stopping a run (runner.py), the run's state and its drawing (state.py), and the pane
that puts them on screen (pane.py)."""

from minigpt_tui.tui.train.form import FORM_FIELDS, check_form, describe_corpus
from minigpt_tui.tui.train.pane import TrainPane
from minigpt_tui.tui.train.process import TrainerProcess
from minigpt_tui.tui.train.state import RunState

__all__ = ["FORM_FIELDS", "RunState", "TrainPane", "TrainerProcess", "check_form", "describe_corpus"]
