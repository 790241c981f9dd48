"""The Train tab, in five parts: the form (form.py), the trainer child process and a run
another process trains, followed from its files (process.py), starting, watching and
stopping a run (runner.py), the run's state and its drawing (state.py), and the pane
that puts them on screen (pane.py). Imports the core, tui's shared modules and widgets/;
never another tab's folder."""
