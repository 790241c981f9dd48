"""Turning what `--import SOURCE` names into a local folder of a model's files.

SOURCE is a folder on this machine (taken as it is: the conversion checks what is in it) or
a Hugging Face hub id ("gpt2", "HuggingFaceTB/SmolLM2-135M"), downloaded with
huggingface_hub.snapshot_download. The library rather than our own downloader because it
already does what a hub download needs: its cache (the one people already have, so a model
downloaded for another tool is not fetched again, and a rerun after Ctrl-C keeps the files
that were finished), progress bars, tokens for gated models, mirrors through HF_ENDPOINT and
HF_HOME, and the hub's own storage back-ends. Only the files a conversion reads are fetched
(ALLOW_PATTERNS): a hub repository often also holds the same weights as pytorch_model.bin,
TensorFlow, Flax and ONNX files, several times the size of the safetensors.

huggingface_hub is imported inside fetch_model only: it pulls in an HTTP stack the app does
not need to start. Every failure a user can meet is an ImportModelError of one sentence;
the library's own messages run to several lines with URLs and request ids.
"""

from __future__ import annotations

import importlib
import os
import re
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from minigpt_tui.core.errors import ImportModelError

# What a conversion reads: the architecture (config.json), the sampling defaults the model
# came with (generation_config.json), the weights (one file, or shards and their index),
# the tokenizer and the chat template (in tokenizer_config.json, or its own file).
ALLOW_PATTERNS = [
    "config.json", "generation_config.json", "*.safetensors", "model.safetensors.index.json",
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
]

# A hub id part as the hub accepts it: letters, digits, '.', '_', '-', starting with a letter
# or digit and not ending with '.' or '-'. Checked here so that a typo gets our sentence,
# not a validation traceback, and so that nothing that could climb out of the cache folder
# ("..", an absolute path) ever reaches the library.
_ID_PART = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?")
_MAX_PART = 96
_COMMIT = re.compile(r"[0-9a-f]{40}")
# What a person types for a path rather than an id (a missing one then says so, rather than
# being looked up on the hub as a model called "./my-model").
_PATH_PREFIXES = ("/", "./", "../", "~", ".\\", "..\\")


@dataclass
class FetchedModel:
    """A model's files on this machine: `path` the folder, `source` the hub id (or the
    folder's absolute path for a local one), `revision` the hub commit the files are from
    (None for a local folder, whose origin is unknown)."""

    path: Path
    source: str
    revision: str | None


def fetch_model(source: str, *, progress: bool = True, cache_dir: str | os.PathLike | None = None,
                endpoint: str | None = None) -> FetchedModel:
    """The folder of the model `source` names: an existing folder as it is, else a hub id
    downloaded (or found) in huggingface_hub's cache. `progress` shows the library's
    progress bars. `cache_dir` and `endpoint` default to the library's own (HF_HOME,
    HF_HUB_CACHE, HF_ENDPOINT); tests pass them to stay off the real hub and out of the
    user's cache. Ctrl-C is not caught: it comes out as KeyboardInterrupt, and a rerun
    reuses every file that was finished."""
    if not source.strip():  # Path("") is the current folder: never what an empty --import meant
        raise ImportModelError(_bad_id(source))
    local = _local_folder(source)
    if local is not None:
        return FetchedModel(local, str(local), None)
    repo_id = _check_hub_id(source)
    return _download(repo_id, progress=progress, cache_dir=cache_dir, endpoint=endpoint)


def _local_folder(source: str) -> Path | None:
    """The folder `source` names, or None when it names nothing here and may be a hub id."""
    try:
        path = Path(source).expanduser()
    except RuntimeError:  # "~someone" with no such user: a path that is not there
        path = Path(source)
    try:
        is_dir, exists = path.is_dir(), path.exists()
    except OSError:  # a name too long for the file system is no file of it
        is_dir = exists = False
    if is_dir:
        return path.absolute()  # absolute, not resolved: keep the name the user gave (a symlink)
    if exists:
        raise ImportModelError(f"{path} is a file, not a model folder; give the folder that holds its "
                               "config.json, *.safetensors and tokenizer.json.")
    if source.startswith(_PATH_PREFIXES) or source in (".", "..") or "\\" in source:
        raise ImportModelError(f"There is no folder {path}; give a folder that holds a model's config.json "
                               "and *.safetensors, or a Hugging Face model id such as gpt2.")
    return None


def _check_hub_id(source: str) -> str:
    parts = source.split("/")
    if (len(parts) <= 2 and ".." not in source and "--" not in source
            and all(len(part) <= _MAX_PART and _ID_PART.fullmatch(part) for part in parts)):
        return source
    raise ImportModelError(_bad_id(source))


def _bad_id(source: str) -> str:
    return (f"'{source}' is neither a folder nor a Hugging Face model id; an id is a name or owner/name "
            f"made of letters, digits, '.', '_' and '-' (at most {_MAX_PART} characters each), such as gpt2 "
            "or HuggingFaceTB/SmolLM2-135M.")


def _download(repo_id: str, *, progress: bool, cache_dir, endpoint: str | None) -> FetchedModel:
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    endpoint = (endpoint or constants.ENDPOINT).rstrip("/")
    # The library's switch is global (the per-file bars are made deep inside it), so it is
    # flipped for this call only and put back as it was.
    was_disabled = are_progress_bars_disabled()
    if not progress:
        disable_progress_bars()
    stop = threading.Event()
    try:
        with _stop_on_ctrl_c(stop):
            folder = Path(huggingface_hub.snapshot_download(
                repo_id, allow_patterns=ALLOW_PATTERNS, cache_dir=cache_dir, endpoint=endpoint,
                tqdm_class=_stoppable_bars(stop)))
    except _Stopped:  # a download thread's, should it come out first: it means Ctrl-C
        raise KeyboardInterrupt from None
    except Exception as err:  # not KeyboardInterrupt: the CLI says "stopped" itself
        raise ImportModelError(_sentence(err, repo_id, endpoint, cache_dir)) from None
    finally:
        if not progress and not was_disabled:
            enable_progress_bars()
    _check_files(folder, repo_id, endpoint)
    # The cache keeps a snapshot per commit (.../snapshots/<commit hash>): its name says
    # which commit the files are, online or from the cache alone, with no second request.
    revision = folder.name if _COMMIT.fullmatch(folder.name) else None
    return FetchedModel(folder, repo_id, revision)


def _check_files(folder: Path, repo_id: str, endpoint: str) -> None:
    """Only ALLOW_PATTERNS were fetched, so a repository without config.json or safetensors
    weights (an old one with pytorch_model.bin only) comes back as a folder missing them:
    say so here, where the reason (the filter) is known."""
    if not (folder / "config.json").is_file():
        raise ImportModelError(f"{repo_id} on the Hugging Face hub ({endpoint}) has no config.json, so it is "
                               "not a transformers model that minigpt-tui can import.")
    if not any(folder.glob("*.safetensors")):
        raise ImportModelError(f"{repo_id} on the Hugging Face hub ({endpoint}) has no *.safetensors weights "
                               "(minigpt-tui reads no pickled pytorch_model.bin); look for a safetensors "
                               "version of the model, or convert it with transformers and import the folder.")


# ---- Ctrl-C --------------------------------------------------------------------------------
# snapshot_download fetches the files in a thread pool. Ctrl-C interrupts the main thread
# only, which then waits for the pool's threads to finish their files: minutes for a
# gigabyte of weights. So a Ctrl-C also sets `stop`, and the progress bars, which every
# download thread updates after each chunk (huggingface_hub >= 1.1 gives the bars of
# snapshot_download's own class those updates; chunks are 10 MB), raise _Stopped in that thread. The library
# then deletes the file it was writing; the files already finished stay in the cache for the
# rerun. Where the bars are not updated that way (an older huggingface_hub), Ctrl-C still
# stops, once the files being fetched are done (the test skips there).


class _Stopped(Exception):
    """Raised in a download thread after Ctrl-C, to end its file at the next chunk."""


def _stoppable_bars(stop: threading.Event):
    """huggingface_hub's own tqdm (so HF_HUB_DISABLE_PROGRESS_BARS and disable_progress_bars
    still apply) whose update() raises _Stopped once `stop` is set."""
    from huggingface_hub.utils import tqdm as hf_tqdm

    class StoppableBar(hf_tqdm):
        def __init__(self, *args, **kwargs):
            # Byte bars only: a bar counting files may be updated from a future's callback,
            # where an exception is only logged. (Kept apart from tqdm's `unit`, which a
            # disabled bar never sets.)
            self.counts_bytes = kwargs.get("unit") == "B"
            super().__init__(*args, **kwargs)

        def update(self, n=1):
            if stop.is_set() and self.counts_bytes:
                raise _Stopped()
            return super().update(n)

    return StoppableBar


@contextmanager
def _stop_on_ctrl_c(stop: threading.Event):
    """Within: SIGINT sets `stop`, then does what it did before (KeyboardInterrupt, or the
    handler someone else put there). Only in the main thread, where Python runs signal
    handlers; elsewhere (an app's worker thread) nothing changes."""
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        yield
        return

    def on_sigint(signum, frame):
        stop.set()
        previous(signum, frame)

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


# ---- the library's exceptions, in one sentence ------------------------------------------


def _chain(err: BaseException) -> list[BaseException]:
    """err and the exceptions behind it: the library wraps a connection error or an HTTP
    500 in a LocalEntryNotFoundError ("not in the cache either") whose cause tells why."""
    found: list[BaseException] = []
    while err is not None and err not in found:
        found.append(err)
        err = err.__cause__ or err.__context__
    return found


def _network_errors() -> tuple[type[BaseException], ...]:
    """The connection failures of whichever HTTP library this huggingface_hub uses (requests
    before 1.0, httpx in 1.x, httpx2 later), and the standard library's own."""
    kinds: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module, names in (("httpx2", ("TransportError",)), ("httpx", ("TransportError",)),
                          ("requests", ("ConnectionError", "Timeout"))):
        try:
            imported = importlib.import_module(module)
        except ImportError:
            continue
        kinds += [getattr(imported, name) for name in names if hasattr(imported, name)]
    return tuple(kinds)


def _sentence(err: Exception, repo_id: str, endpoint: str, cache_dir) -> str:
    from huggingface_hub.utils import (
        DisabledRepoError, GatedRepoError, HfHubHTTPError, HFValidationError, LocalEntryNotFoundError,
        OfflineModeIsEnabled, RepositoryNotFoundError, RevisionNotFoundError,
    )

    # The first exception in the chain that says why, past the "not in the cache either"
    # wrapper (itself an HfHubHTTPError with no status in older versions, 0.23 at least).
    wrapper, network = LocalEntryNotFoundError, _network_errors()
    first = next((e for e in _chain(err) if not isinstance(e, wrapper) and (
        isinstance(e, (HfHubHTTPError, HFValidationError, OfflineModeIsEnabled, *network)))), None)
    status = getattr(getattr(first, "response", None), "status_code", None)
    # Gated before not-found: the library makes GatedRepoError a kind of RepositoryNotFoundError.
    if isinstance(first, GatedRepoError):
        return (f"{repo_id} is a gated model: accept its licence on its page ({endpoint}/{repo_id}) while "
                "logged in there, then log in here (`hf auth login`, or set HF_TOKEN) and import it again.")
    # The hub answers 401 both for a missing id and a private one (so as not to say which);
    # the library names it RepositoryNotFoundError only for some URLs.
    if isinstance(first, RepositoryNotFoundError) or (isinstance(first, HfHubHTTPError) and status == 401):
        return (f"There is no model {repo_id} on the Hugging Face hub ({endpoint}), or it is private; check the "
                "id (owner/name, as on the model's page), or log in (`hf auth login`, or set HF_TOKEN) if it "
                "is yours.")
    if isinstance(first, RevisionNotFoundError):
        return f"The model {repo_id} on the Hugging Face hub ({endpoint}) has no main branch to download."
    if isinstance(first, DisabledRepoError):
        return f"The model {repo_id} on the Hugging Face hub ({endpoint}) has been disabled by its owner."
    if isinstance(first, HFValidationError):
        return _bad_id(repo_id)
    if isinstance(first, HfHubHTTPError):
        what = f"HTTP {status}" if status else "an error"
        return (f"The Hugging Face hub ({endpoint}) answered {what} when asked for {repo_id}; try again "
                "later (a rerun keeps the files already downloaded).")
    if isinstance(first, OfflineModeIsEnabled):
        return (f"{repo_id} is not in the Hugging Face cache and HF_HUB_OFFLINE is set; unset it to download, "
                "or copy the model's folder (config.json, *.safetensors, tokenizer.json, ...) from a machine "
                "that has one and run `minigpt-tui --import /path/to/folder`.")
    if first is not None or isinstance(err, LocalEntryNotFoundError):
        return (f"Cannot reach the Hugging Face hub ({endpoint}) to download {repo_id}; without a network, copy "
                "the model's folder (config.json, *.safetensors, tokenizer.json, ...) from a machine that has "
                "one and run `minigpt-tui --import /path/to/folder`.")
    if isinstance(err, OSError) and err.errno is not None:  # the disk: full, read-only, no permission
        where = cache_dir or _hub_cache()
        return f"Cannot save {repo_id} in the Hugging Face cache ({where}): {err.strerror or err}."
    # Anything else the library raises (a size that does not match after a dropped
    # connection, ...): its first line, which names the problem.
    detail = str(err).strip().splitlines()[0].rstrip(".") if str(err).strip() else type(err).__name__
    return (f"Downloading {repo_id} from the Hugging Face hub ({endpoint}) failed ({detail}); run the same "
            "command again to retry.")


def _hub_cache() -> str:
    """The cache folder huggingface_hub uses (HF_HUB_CACHE, else HF_HOME/hub)."""
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)
