"""`minigpt-tui --list`: the runs in the data home as a table, one line per run (an unreadable
run is listed after the table with what is wrong with it)."""

from __future__ import annotations

from minigpt_tui.core import paths


def cmd_list() -> int:
    from minigpt_tui.core.runs.run_dir import list_runs

    runs = list_runs()
    if not runs:
        print(f"No runs yet in {paths.runs_dir()}; start one with minigpt-tui --train.")
        return 0
    header = ("NAME", "FAMILY", "TOKENIZER", "CORPUS", "PARAMS", "STEPS", "BEST VAL", "DATE", "STATUS")
    rows = []
    for r in runs:
        if r.error:
            continue
        best = f"{r.best_val_loss:.4f}" if r.best_val_loss is not None else "-"
        steps = f"{r.step}/{r.max_steps}" if r.max_steps else str(r.step)
        # "interrupted": its trainer died without saying so (killed, crashed); --resume continues it
        rows.append((r.name, r.family, r.tokenizer, r.corpus, f"{r.params:,}", steps, best, r.date, r.status or "-"))
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    for r in runs:
        if r.error:
            print(f"{r.name}  unreadable: {r.error}")
    return 0
