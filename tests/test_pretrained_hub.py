"""fetch_model: local folders, hub ids, and the hub itself played by a local HTTP server
(the endpoints snapshot_download calls), so no test ever reaches huggingface.co and every
download lands in tmp_path's cache."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from minigpt_tui.core.errors import USER_ERRORS, ImportModelError
from minigpt_tui.core.pretrained.hub import ALLOW_PATTERNS, fetch_model
from minigpt_tui.core.pretrained.suggested import SUGGESTED, format_suggested

SHA = "0123456789abcdef0123456789abcdef01234567"
REPO = "tiny-org/tiny-gpt"
FILES = {
    "config.json": b'{"model_type": "gpt2", "n_layer": 1}',
    "generation_config.json": b'{"do_sample": true}',
    "model.safetensors": bytes(range(256)) * 64,
    "tokenizer.json": b'{"model": {"type": "BPE"}}',
    "pytorch_model.bin": b"pickled weights nobody should download" * 100,
    "README.md": b"# tiny\n",
}
WANTED = {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json"}


class FakeHub:
    """Just enough of the hub's HTTP API for snapshot_download, old and new: the model info
    (/api/models/{id}/revision/{rev}, with `sha` and `siblings`), the file tree
    (/api/models/{id}/tree/{rev}), and the files (HEAD/GET /{id}/resolve/{rev}/{name}, Range
    honoured). Every request is logged as (method, path)."""

    def __init__(self, repos: dict[str, dict[str, bytes]], status: dict[str, int] | None = None,
                 headers: dict[str, str] | None = None, slow: bool = False):
        """`status`: repo -> the HTTP status every request about it gets (with `headers`);
        `slow`: files over 64 KiB trickle out (64 KiB every 20 ms), and `sending` is set
        once one has begun."""
        self.repos, self.status, self.headers, self.slow = repos, status or {}, headers or {}, slow
        self.log: list[tuple[str, str]] = []
        self.sending = threading.Event()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest's output clean
                pass

            def do_HEAD(self):
                hub.answer(self, head=True)

            def do_GET(self):
                hub.answer(self, head=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def file_requests(self) -> list[tuple[str, str]]:
        return [(m, p) for m, p in self.log if "/resolve/" in p]

    def answer(self, handler: BaseHTTPRequestHandler, head: bool) -> None:
        path = handler.path.split("?")[0]
        self.log.append((handler.command, path))
        for repo, status in self.status.items():
            if path.startswith((f"/api/models/{repo}", f"/{repo}/")):
                return self.send(handler, status, b'{"error": "no"}', head, self.headers)
        for repo, files in self.repos.items():
            if m := re.fullmatch(rf"/api/models/{repo}(?:/revision/[^/]+)?", path):
                info = {"id": repo, "modelId": repo, "sha": SHA, "private": False, "downloads": 0, "likes": 0,
                        "tags": [], "lastModified": "2024-01-01T00:00:00.000Z",
                        "siblings": [{"rfilename": name} for name in files]}
                return self.send(handler, 200, json.dumps(info).encode(), head)
            if m := re.fullmatch(rf"/api/models/{repo}/tree/[^/]+", path):
                tree = [{"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                        for name, data in files.items()]
                return self.send(handler, 200, json.dumps(tree).encode(), head)
            if (m := re.fullmatch(rf"/{repo}/resolve/[^/]+/(.+)", path)) and m.group(1) in files:
                return self.send_file(handler, files[m.group(1)], head)
        self.send(handler, 404, b'{"error": "Repository not found"}', head, {"X-Error-Code": "RepoNotFound"})

    def send(self, handler, status: int, body: bytes, head: bool, extra: dict | None = None) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        for key, value in (extra or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        if not head:
            handler.wfile.write(body)

    def send_file(self, handler, data: bytes, head: bool) -> None:
        start, status = 0, 200
        if m := re.fullmatch(r"bytes=(\d+)-", handler.headers.get("Range", "")):
            start, status = int(m.group(1)), 206
        body = data[start:]
        handler.send_response(status)
        handler.send_header("X-Repo-Commit", SHA)
        handler.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        handler.send_header("Accept-Ranges", "bytes")
        handler.send_header("Content-Length", str(len(body)))
        if status == 206:
            handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        handler.end_headers()
        if head:
            return
        if not (self.slow and len(body) > CHUNK):
            handler.wfile.write(body)
            return
        try:
            for i in range(0, len(body), CHUNK):
                handler.wfile.write(body[i:i + CHUNK])
                handler.wfile.flush()
                self.sending.set()
                time.sleep(0.02)
        except OSError:  # the client hung up: what a stopped download does
            pass


CHUNK = 64 << 10


@pytest.fixture
def hub():
    with FakeHub({REPO: FILES, "gpt2": FILES}, status={"private-org/secret": 401}) as server:
        yield server


@pytest.fixture(autouse=True)
def no_real_hub(monkeypatch, tmp_path):
    """Whatever a test forgets to pass, the library's defaults point nowhere real either."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    import huggingface_hub.constants as constants

    # Both, together: the library swaps a passed endpoint into its URL template only where
    # the template starts with ENDPOINT.
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        "http://127.0.0.1:9/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "default-cache"))


def one_sentence(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text and text.endswith(".") and len(text) < 700, text
    assert isinstance(err.value, USER_ERRORS)
    return text


# ---- local folders and ids ----------------------------------------------------------------


def test_a_local_folder_is_returned_as_it_is(tmp_path, monkeypatch):
    folder = tmp_path / "my-model"
    folder.mkdir()
    assert fetch_model(str(folder)).path == folder
    fetched = fetch_model(str(folder))
    assert (fetched.source, fetched.revision) == (str(folder), None)
    monkeypatch.chdir(tmp_path)
    assert fetch_model("my-model").path == folder  # a folder here wins over a hub id of that name
    assert fetch_model("./my-model").path.resolve() == folder


@pytest.mark.parametrize("source, words", [
    ("/no/such/model", "There is no folder"),
    ("./missing", "There is no folder"),
    ("../missing", "There is no folder"),
    ("~/surely-no-such-model-folder", "There is no folder"),
    ("~no-such-user-here/model", "There is no folder"),
    ("./" + "x" * 260, "There is no folder"),  # longer than a file name may be
    ("owner/../etc", "neither a folder nor"),
    ("a..b", "neither a folder nor"),
    ("owner/name/extra", "neither a folder nor"),
    ("bad name", "neither a folder nor"),
    ("owner/na$me", "neither a folder nor"),
    ("-leading", "neither a folder nor"),
    ("trailing.", "neither a folder nor"),
    ("x" * 97, "neither a folder nor"),
    ("", "neither a folder nor"),
])
def test_bad_sources_are_one_sentence_and_create_nothing(source, words, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ImportModelError) as err:
        fetch_model(source, cache_dir=tmp_path / "cache", endpoint="http://127.0.0.1:9")
    assert words in one_sentence(err)
    assert list(tmp_path.iterdir()) == []


def test_a_file_is_not_a_model_folder(tmp_path):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"x")
    with pytest.raises(ImportModelError) as err:
        fetch_model(str(weights))
    assert "is a file, not a model folder" in one_sentence(err)


# ---- the hub, played by a local server ----------------------------------------------------


def test_a_hub_model_is_downloaded_once_and_only_the_files_a_conversion_reads(hub, tmp_path):
    cache = tmp_path / "cache"
    fetched = fetch_model(REPO, progress=False, cache_dir=cache, endpoint=hub.url)
    assert fetched.revision == SHA and fetched.source == REPO
    assert fetched.path.is_relative_to(cache) and fetched.path.name == SHA
    assert {p.name for p in fetched.path.iterdir()} == WANTED  # no pytorch_model.bin, no README
    for name in WANTED:
        assert (fetched.path / name).read_bytes() == FILES[name]
    assert not any("pytorch_model.bin" in p for _, p in hub.log)
    assert not (tmp_path / "default-cache").exists()

    hub.log.clear()
    again = fetch_model(REPO, progress=False, cache_dir=cache, endpoint=hub.url)
    assert again == fetched
    assert hub.file_requests() == []  # every file came from the cache


def test_a_cached_model_is_found_without_the_hub(hub, tmp_path):
    cache = tmp_path / "cache"
    fetched = fetch_model("gpt2", progress=False, cache_dir=cache, endpoint=hub.url)
    offline = fetch_model("gpt2", progress=False, cache_dir=cache, endpoint=closed_port())
    assert offline == fetched


def test_no_such_model_on_the_hub(hub, tmp_path):
    with pytest.raises(ImportModelError) as err:
        fetch_model("nobody/nothing", progress=False, cache_dir=tmp_path / "cache", endpoint=hub.url)
    text = one_sentence(err)
    assert text.startswith("There is no model nobody/nothing on the Hugging Face hub") and hub.url in text


def test_a_private_model_says_not_found_or_private(hub, tmp_path):
    with pytest.raises(ImportModelError) as err:
        fetch_model("private-org/secret", progress=False, cache_dir=tmp_path / "cache", endpoint=hub.url)
    assert "or it is private" in one_sentence(err)


def test_a_gated_model_says_how_to_get_access(tmp_path):
    with FakeHub({}, status={"meta-llama/Llama-3.2-1B": 403}, headers={"X-Error-Code": "GatedRepo"}) as server:
        with pytest.raises(ImportModelError) as err:
            fetch_model("meta-llama/Llama-3.2-1B", progress=False, cache_dir=tmp_path / "cache", endpoint=server.url)
    text = one_sentence(err)
    assert "is a gated model" in text and "HF_TOKEN" in text


def test_offline_mode_without_the_model_in_the_cache(hub, tmp_path, monkeypatch):
    import huggingface_hub.constants as constants
    import huggingface_hub.utils

    # Before 1.0 the library reads the switch when it makes a thread's HTTP session, and keeps it.
    reset_sessions = getattr(huggingface_hub.utils, "reset_sessions", lambda: None)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    reset_sessions()
    try:
        with pytest.raises(ImportModelError) as err:
            fetch_model(REPO, progress=False, cache_dir=tmp_path / "cache", endpoint=hub.url)
    finally:
        monkeypatch.undo()
        reset_sessions()
    assert "HF_HUB_OFFLINE is set" in one_sentence(err)
    assert hub.log == []


def hub_version() -> tuple[int, ...]:
    import huggingface_hub

    return tuple(int(part) for part in re.findall(r"\d+", huggingface_hub.__version__)[:2])


@pytest.mark.skipif(hub_version() < (1, 1), reason="before 1.1 the library's download threads update bars of "
                    "their own, so Ctrl-C waits for the files in flight")
def test_ctrl_c_stops_a_download_at_once_and_a_rerun_finishes_it(tmp_path, monkeypatch):
    """The library waits for its download threads to finish their files; fetch_model makes
    them stop at their next chunk (made small here: the library reads 10 MB at a time)."""
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", CHUNK)
    # Python's own Ctrl-C handler, whatever the suite was started with: a shell without job control
    # starts background commands (`pytest &`) with SIGINT ignored, and Python then keeps it ignored.
    launched_with = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        ctrl_c_stops_the_download(tmp_path)
    finally:
        signal.signal(signal.SIGINT, launched_with)


def ctrl_c_stops_the_download(tmp_path):
    files = dict(FILES, **{"model.safetensors": os.urandom(200 * CHUNK)})  # 4 s at the slow rate
    cache = tmp_path / "cache"
    signalled = []
    with FakeHub({REPO: files}, slow=True) as server:
        def interrupt():
            if server.sending.wait(5):
                signalled.append(time.monotonic())
                os.kill(os.getpid(), signal.SIGINT)

        threading.Thread(target=interrupt, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            fetch_model(REPO, progress=False, cache_dir=cache, endpoint=server.url)
        assert signalled and time.monotonic() - signalled[0] < 1.5  # not the 4 s the whole file takes
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with FakeHub({REPO: files}) as server:
        fetched = fetch_model(REPO, progress=False, cache_dir=cache, endpoint=server.url)
    assert (fetched.path / "model.safetensors").read_bytes() == files["model.safetensors"]


def test_a_server_error_says_its_status(tmp_path):
    with FakeHub({}, status={"broken/model": 503}) as server:
        with pytest.raises(ImportModelError) as err:
            fetch_model("broken/model", progress=False, cache_dir=tmp_path / "cache", endpoint=server.url)
    assert "answered HTTP 503" in one_sentence(err)


def test_a_repository_without_safetensors_says_so(tmp_path):
    files = {"config.json": b"{}", "pytorch_model.bin": b"pickle"}
    with FakeHub({"old/model": files}) as server:
        with pytest.raises(ImportModelError) as err:
            fetch_model("old/model", progress=False, cache_dir=tmp_path / "cache", endpoint=server.url)
    assert "no *.safetensors weights" in one_sentence(err)
    assert not any("pytorch_model.bin" in p for _, p in server.log)


def closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_an_unreachable_hub_says_how_to_import_without_one(tmp_path):
    endpoint = closed_port()
    with pytest.raises(ImportModelError) as err:
        fetch_model(REPO, progress=False, cache_dir=tmp_path / "cache", endpoint=endpoint)
    text = one_sentence(err)
    assert text.startswith(f"Cannot reach the Hugging Face hub ({endpoint}) to download {REPO};")
    assert "minigpt-tui --import /path/to/folder" in text


def test_import_model_error_is_a_user_error():
    assert ImportModelError in USER_ERRORS
    assert "config.json" in ALLOW_PATTERNS and "*.safetensors" in ALLOW_PATTERNS


# ---- the suggested models -----------------------------------------------------------------


def test_format_suggested_lists_every_model_in_aligned_columns():
    text = format_suggested()
    lines = text.splitlines()
    for model in SUGGESTED:
        assert any(line.startswith(model.hub_id + " ") for line in lines), model.hub_id
    assert "--import" in lines[-1] and "local folder" in lines[-1]
    table = lines[:len(SUGGESTED) + 1]  # the header, then a row per model
    column = table[0].index("Params")
    assert all(line[column - 1] == " " for line in table)
    assert len({m.hub_id for m in SUGGESTED}) == len(SUGGESTED)
    assert {m.architecture for m in SUGGESTED} == {"gpt2", "llama"}


def test_import_from_the_hub_end_to_end_makes_a_run_that_generates(tmp_path, monkeypatch, capsys):
    """`--import owner/name` through HF_ENDPOINT's hub (the fake one) to a run that generates."""
    import huggingface_hub.constants as constants

    from minigpt_tui.cli import main
    from minigpt_tui.core.runs.run_dir import RunDir

    pytest.importorskip("transformers")
    from pretrained_kit import gpt2_folder

    folder = gpt2_folder(tmp_path / "made")
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    with FakeHub({"tiny-org/tiny-gpt2": files}) as server:
        monkeypatch.setattr(constants, "ENDPOINT", server.url)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            server.url + "/{repo_id}/resolve/{revision}/{filename}")
        assert main(["--import", "tiny-org/tiny-gpt2"]) == 0
    run = RunDir.resolve("tiny-gpt2")
    meta = run.read_meta()
    assert (meta.imported_from, meta.revision, meta.status) == ("tiny-org/tiny-gpt2", SHA, "imported")
    capsys.readouterr()
    assert main(["--list"]) == 0
    assert "imported from tiny-org/tiny-gpt2" in capsys.readouterr().out
    assert main(["--generate", "tiny-gpt2", "--prompt", "First", "--max-new-tokens", "5", "--json"]) == 0
    assert len([line for line in capsys.readouterr().out.splitlines() if '"token_id"' in line]) == 5
