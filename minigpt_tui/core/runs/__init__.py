"""A run folder and everything written into it: RunDir (run_dir, the one module that names the
files inside a run), meta.json's RunMeta (run_meta), run names, checkpoints, the training events
and their log, following a run another process trains, and evaluation records. Imports core's
top modules, data (tokenizers) and models (to rebuild a saved model)."""
