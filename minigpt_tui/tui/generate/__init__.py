"""The Generate tab: the pane (pane.py), loading a run into it (run_loading.py) and choosing
which (run_choice.py), streaming a reply from a worker (streaming.py), the conversation's
actions, versions and files (chat_actions.py), and its template editor and saved-conversation
list (chat_screens.py). Imports the core, tui's shared modules and widgets/; never another
tab's folder."""
