"""The Textual app. app.py composes the tabs and routes messages between them; each tab has a
folder (train/, checkpoints/, generate/) that no other tab imports; widgets/ holds widgets any
tab may use; the modules beside app.py are the app's own: its settings file (settings.py), the
bar of runs being trained and watching one (live.py), help and the command palette
(commands.py), shared screens (screens.py), colours (palette.py), formatting and the debug log."""
