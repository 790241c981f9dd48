"""minigpt-tui: train a small language model on a laptop and play with it from the terminal."""

__version__ = "0.1.0"
