"""The Checkpoints tab: the list of runs and the selected run's details (pane.py), marking,
renaming, notes and clearing stub runs (run_tidy.py), and the comparison of marked runs
(compare.py). Imports the core, tui's shared modules and widgets/; never another tab's folder."""
