"""The shared core under the app and the command line: it never imports textual, rich or
anything of minigpt_tui.tui and minigpt_tui.cli (tests/test_layering.py checks).

Its rooms, each allowed to import only those listed before it:

    config, paths, fsutil, file_lock, errors, formatting   what everything uses
    data/        corpora, the catalogue, downloads, tokenizers, the token cache, batches
    models/      one file per model family, and the LanguageModel protocol they share
    runs/        a run folder (RunDir), its names, checkpoints, events and evaluations
    generation/  sampling, chat sessions and conversations, the sampler process
    training/    the trainer, optimizer, devices and precision, ETA, full-pass evaluation
"""
