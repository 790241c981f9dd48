"""`python faulty_trainer.py ARGS...` runs `minigpt-tui ARGS...` with faults injected from outside.

The production code has no test hooks: this wrapper monkeypatches the core's own
functions before calling minigpt_tui.cli.main, so the trainer runs its real code
up to the chosen instant. Faults come from $HARDEN_FAULTS, separated by ";":

    partial:NAME:N:FRAC   the N-th atomic write of a file named NAME writes FRAC of its bytes
                          into the temporary file, then the process hangs (to be SIGKILLed)
    after:NAME:N          hang right after the N-th atomic write of NAME was renamed into place
    enospc:NAME:N         the N-th atomic write of NAME fails half-way with ENOSPC (disk full)
    append:N:FRAC         the N-th metrics append writes FRAC of its text, then hangs
    staging               hang with the new run folder built but not yet renamed into place
    renamebarrier:PATH    with the new run folder built, say ready, then wait until PATH exists
    made                  hang right after the run folder appeared (before any checkpoint)
    signal:STEP:SIG       send SIG (SIGINT or SIGTERM) to itself once training step STEP is done
    delay:SECONDS         sleep this long in every training step (makes kills at random times land
                          at different steps)
    nan:STEP[:VALUE]      from step STEP on the weights and the loss turn NaN (or VALUE, e.g. inf)
    enospcappend:N        the N-th metrics append fails with ENOSPC
    fixedtime             every run folder gets the same timestamp (forces a name clash)
    waitfor:PATH          import everything, then wait until PATH exists (a start barrier)

When a fault hangs, the wrapper first creates the file $HARDEN_READY (holding its pid).

With the single argument --zygote it serves as a fork server instead (see serve()): the
suite then pays for importing torch once, not once per killed trainer.
"""

from __future__ import annotations

import errno
import io
import os
import signal
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import torch

import minigpt_tui.cli.train  # noqa: F401  (main imports it lazily; here before any fault or barrier)
from minigpt_tui.cli import main
from minigpt_tui.core import fsutil
from minigpt_tui.core.runs import run_dir as runs
from minigpt_tui.core.training.trainer import Trainer


def hang() -> None:
    ready = os.environ.get("HARDEN_READY")
    if ready:
        Path(ready).write_text(str(os.getpid()))
    while True:
        time.sleep(3600)


def parse(spec: str) -> list[list[str]]:
    return [item.split(":") for item in spec.split(";") if item.strip()]


def install(faults: list[list[str]]) -> None:
    writes: Counter[str] = Counter()
    appends = [0]
    real_atomic_write = fsutil.atomic_write

    def atomic_write(path, write, mode="wb"):
        name = Path(path).name
        writes[name] += 1
        n = writes[name]
        for f in faults:
            if f[0] in ("partial", "enospc") and f[1] == name and int(f[2]) == n:
                frac = float(f[3]) if f[0] == "partial" else 0.5

                def faulty(fobj, kind=f[0], frac=frac):
                    buf = io.BytesIO() if "b" in mode else io.StringIO()
                    write(buf)
                    data = buf.getvalue()
                    fobj.write(data[: int(len(data) * frac)])
                    fobj.flush()
                    if kind == "enospc":
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
                    os.fsync(fobj.fileno())
                    hang()

                return real_atomic_write(path, faulty, mode)
        real_atomic_write(path, write, mode)
        for f in faults:
            if f[0] == "after" and f[1] == name and int(f[2]) == n:
                hang()

    fsutil.atomic_write = atomic_write

    real_append = runs.RunDir.append_metrics

    def append_metrics(run, records):
        run_dir = run.path
        if records:
            appends[0] += 1
            for f in faults:
                if f[0] == "enospcappend" and int(f[1]) == appends[0]:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(Path(run_dir) / "metrics.jsonl"))
                if f[0] == "append" and int(f[1]) == appends[0]:
                    import json

                    text = "".join(json.dumps(r) + "\n" for r in records)
                    with open(Path(run_dir) / "metrics.jsonl", "a", encoding="utf-8") as fobj:
                        fobj.write(text[: int(len(text) * float(f[2]))])
                        fobj.flush()
                    hang()
        return real_append(run, records)

    runs.RunDir.append_metrics = append_metrics

    kinds = {f[0] for f in faults}
    barrier = next((Path(":".join(f[1:])) for f in faults if f[0] == "renamebarrier"), None)
    if "staging" in kinds or barrier:
        real_rename = os.rename
        waited = []

        def rename(src, dst, *a, **kw):
            if str(src).endswith(".new"):
                if "staging" in kinds:
                    hang()
                if not waited:
                    waited.append(True)
                    Path(os.environ["HARDEN_READY"]).write_text(str(os.getpid()))
                    while not barrier.exists():
                        time.sleep(0.001)
            return real_rename(src, dst, *a, **kw)

        os.rename = rename
    if "made" in kinds:
        real_create = runs.RunDir.create

        def create_locked_run_dir(cls, *a, **kw):
            real_create(*a, **kw)
            hang()

        runs.RunDir.create = classmethod(create_locked_run_dir)
    if "fixedtime" in kinds:
        class FixedDatetime(datetime):
            @classmethod
            def now(cls, tz=None):
                return cls(2030, 1, 1, 12, 0, 0)

        runs.datetime = FixedDatetime

    signals = {int(f[1]): getattr(signal, f[2]) for f in faults if f[0] == "signal"}
    delay = sum(float(f[1]) for f in faults if f[0] == "delay")
    nan_from = min((int(f[1]) for f in faults if f[0] == "nan"), default=None)
    bad_value = next((float(f[2]) for f in faults if f[0] == "nan" and len(f) > 2), float("nan"))
    if signals or delay or nan_from is not None:
        real_step = Trainer._train_step

        def train_step(self, step, lr):
            if delay:
                time.sleep(delay)
            loss = real_step(self, step, lr)
            if nan_from is not None and step >= nan_from:
                with torch.no_grad():
                    for p in self.model.parameters():
                        p.fill_(bad_value)
                loss = torch.tensor(bad_value)
            if step in signals:  # the handler runs before the trainer goes on
                os.kill(os.getpid(), signals[step])
            return loss

        Trainer._train_step = train_step

    for f in faults:
        if f[0] == "waitfor":
            go = Path(":".join(f[1:]))
            while not go.exists():
                time.sleep(0.002)


def serve() -> None:
    """`faulty_trainer.py --zygote`: a fork server. torch is imported once, here; every request
    (one JSON line on stdin) forks a child that runs cli.main with its own environment, faults
    and output files, and the child's pid is the answer (one line on stdout). A child writes
    its exit status to req["rc"] unless it is killed; the kernel reaps it (SIGCHLD ignored)."""
    import json
    import traceback

    # Warm up what torch imports lazily (the optimizer pulls in torch._dynamo, seconds on a
    # small machine), without computing anything: no thread pool exists yet to break the forks.
    import torch._dynamo  # noqa: F401

    torch.optim.AdamW([torch.zeros(1, requires_grad=True)])
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    for line in sys.stdin:
        req = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid:
            print(pid, flush=True)
            continue
        rc = 1
        try:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            os.environ.clear()
            os.environ.update(req["env"])
            for fd, name in ((1, "stdout"), (2, "stderr")):
                target = os.open(req[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(target, fd)
                os.close(target)
            sys.stdin = open(os.devnull)
            install(parse(req["env"].get("HARDEN_FAULTS", "")))
            rc = main(req["args"])
        except SystemExit as exit_:
            rc = exit_.code if isinstance(exit_.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
                Path(req["rc"]).write_text(str(rc))
            finally:
                os._exit(rc if isinstance(rc, int) else 1)


if __name__ == "__main__":
    if sys.argv[1:] == ["--zygote"]:
        serve()
    else:
        install(parse(os.environ.get("HARDEN_FAULTS", "")))
        sys.exit(main(sys.argv[1:]))
