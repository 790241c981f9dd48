"""The corpus catalogue: named corpora fetched from a local HTTP server (never the internet),
resumed after a drop or Ctrl-C, checked (size, SHA-256), unpacked safely, listed, and a
missing one named in data.path answered with the command that fetches it."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from minigpt_tui.cli.common import USER_ERROR
from minigpt_tui.cli import main
from minigpt_tui.core.config import DataConfig
from minigpt_tui.core.data import catalogue, download
from minigpt_tui.core.data.catalogue import Entry
from minigpt_tui.core.data.corpus import check_corpus, load_corpus
from minigpt_tui.core.errors import CorpusError

from corpus_server import Server, zip_bytes

WIKI = {split: f" = Heading {split} = \n the {split} text , with @-@ tokens and <unk> .\n" * 40
        for split in ("train", "valid", "test")}


@pytest.fixture
def server(monkeypatch):
    srv = Server()
    monkeypatch.setenv(catalogue.MIRROR_ENV, srv.url)
    monkeypatch.setattr(download, "RETRY_DELAY_S", 0.0)
    yield srv
    srv.close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def add_entry(monkeypatch, entry: Entry) -> Entry:
    monkeypatch.setitem(catalogue.ENTRIES, entry.name, entry)
    return entry


def wikitext_entry(monkeypatch, server, **kw) -> Entry:
    archive = zip_bytes({f"wikitext-t/wiki.{s}.tokens": t.encode() for s, t in WIKI.items()})
    server.files["/wt/wikitext-t-v1.zip"] = archive
    fields = dict(url="https://example.org/wt/wikitext-t-v1.zip", size=len(archive), sha256=sha(archive),
                  ext="tokens", files={"wiki.valid.tokens": sha(WIKI["valid"].encode())})
    fields.update(kw)
    return add_entry(monkeypatch, Entry("wikitext-t", "a small WikiText", "wikitext", **fields))


def split_entry(monkeypatch, server, text: bytes, splits=(90, 5, 5), name="text8-t") -> Entry:
    archive = zip_bytes({name: text})
    server.files[f"/dc/{name}.zip"] = archive
    return add_entry(monkeypatch, Entry(name, "a small text8", "split", url=f"http://example.org/dc/{name}.zip",
                                        size=len(archive), member=name, member_size=len(text), splits=splits))


def big_file_entry(monkeypatch, server, data: bytes, **kw) -> Entry:
    server.files["/shakespeare/input.txt"] = data
    fields = dict(url="https://example.org/shakespeare/input.txt", size=len(data), sha256=sha(data))
    fields.update(kw)
    return add_entry(monkeypatch, Entry("shakes-t", "a small file", "file", **fields))


def leftovers(data_home: Path) -> list[str]:
    """Everything under corpora/ except the lock files."""
    root = data_home / "corpora"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.name.endswith(".lock")) \
        if root.exists() else []


# ---- good fetches ----------------------------------------------------------------------------


def test_a_wikitext_zip_is_fetched_into_its_own_splits_and_the_loader_reads_it(server, monkeypatch, data_home):
    entry = wikitext_entry(monkeypatch, server)
    with pytest.raises(CorpusError, match="fetch it with: minigpt-tui --corpus fetch wikitext-t"):
        load_corpus(DataConfig(path="wikitext-t"))
    stages = []
    path = catalogue.fetch(entry, lambda stage, done, total: stages.append(stage))
    assert path == data_home / "corpora" / "wikitext-t"
    assert sorted(p.name for p in path.iterdir()) == [".complete", "wiki.test.tokens", "wiki.train.tokens",
                                                       "wiki.valid.tokens"]
    assert (path / "wiki.test.tokens").read_text() == WIKI["test"]
    marker = catalogue.marker(entry)
    assert marker["files"]["wiki.train.tokens"]["sha256"] == sha(WIKI["train"].encode())
    assert {"download", "unpack", "verify"} <= set(stages)
    corpus = load_corpus(DataConfig(path="wikitext-t"))
    assert corpus.name == "wikitext-t"
    assert ["".join(corpus.split(s).chunks()) for s in ("train", "valid", "test")] == \
        [WIKI["train"], WIKI["valid"], WIKI["test"]]
    assert check_corpus("wikitext-t").ok
    assert leftovers(data_home) == sorted([".downloads", "wikitext-t", *(f"wikitext-t/{n}" for n in os.listdir(path))])
    server.ranges.clear()
    assert catalogue.fetch(entry) == path and server.ranges == []  # present: nothing is downloaded


def test_a_single_file_archive_is_cut_into_train_valid_test_at_the_standard_offsets(server, monkeypatch):
    text = bytes(range(97, 123)) * 4  # 104 ASCII bytes: cut at 90 and 95, test takes the last 9
    entry = split_entry(monkeypatch, server, text)
    folder = catalogue.fetch(entry)
    parts = [(folder / f"{s}.txt").read_bytes() for s in ("train", "valid", "test")]
    assert parts == [text[:90], text[90:95], text[95:]]


def test_a_cut_inside_a_utf8_character_moves_forward_to_the_next_character(tmp_path):
    text = ("a" * 89 + "é" + "b" * 3 + "€" + "c" * 6).encode()  # é: bytes 89-90, €: 94-96; cuts at 90 and 95
    src = tmp_path / "src"
    src.write_bytes(text)
    catalogue._split_file(src, tmp_path, (90, 5, 5))
    parts = [(tmp_path / f"{s}.txt").read_bytes().decode() for s in ("train", "valid", "test")]
    assert parts == ["a" * 89 + "é", "bbb€", "c" * 6]


# ---- downloads that go wrong -------------------------------------------------------------------


def test_a_connection_that_drops_is_resumed_with_a_range_request(server, monkeypatch, data_home):
    data = os.urandom(200_000)
    entry = big_file_entry(monkeypatch, server, data)
    server.drop, server.drop_after = 1, 70_000
    path = catalogue.fetch(entry)
    assert path.read_bytes() == data
    assert server.ranges[0] is None and server.ranges[1] == "bytes=70000-"


def test_a_download_that_keeps_dropping_ends_in_one_sentence_keeps_the_part_and_no_marker(server, monkeypatch,
                                                                                       data_home):
    entry = big_file_entry(monkeypatch, server, os.urandom(200_000))
    server.drop, server.drop_after = 99, 1000
    with pytest.raises(download.DownloadError) as err:
        catalogue.fetch(entry)
    sentence = str(err.value)
    assert sentence.startswith("Download of input.txt stopped at 3,000 bytes of 200,000")
    assert sentence.endswith("run the same command again to resume.") and sentence.count(". ") == 0
    assert leftovers(data_home) == [".downloads", ".downloads/input.txt.part"]
    assert not catalogue.is_present(entry)


def test_a_wrong_digest_deletes_the_file_and_says_so(server, monkeypatch, data_home):
    entry = big_file_entry(monkeypatch, server, b"not what was promised\n" * 100, sha256="0" * 64)
    with pytest.raises(download.DownloadError, match="SHA-256 .* not the expected 000000000000…; the bad file "
                                                     "was deleted"):
        catalogue.fetch(entry)
    assert leftovers(data_home) == [".downloads"]


def test_a_wrong_digest_of_an_extracted_file_deletes_the_archive(server, monkeypatch, data_home):
    entry = wikitext_entry(monkeypatch, server, files={"wiki.valid.tokens": "f" * 64})
    with pytest.raises(download.DownloadError, match="wiki.valid.tokens from wikitext-t-v1.zip has SHA-256"):
        catalogue.fetch(entry)
    assert leftovers(data_home) == [".downloads"]


def test_an_interrupted_download_is_resumed_by_the_next_fetch(server, monkeypatch, data_home):
    data = os.urandom(300_000)
    entry = big_file_entry(monkeypatch, server, data)

    def ctrl_c(stage, done, total):
        if done > 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        catalogue.fetch(entry, ctrl_c)
    part = data_home / "corpora" / ".downloads" / "input.txt.part"
    kept = part.stat().st_size
    assert 0 < kept < len(data) and not catalogue.is_present(entry)
    path = catalogue.fetch(entry)
    assert server.ranges[-1] == f"bytes={kept}-"
    assert path.read_bytes() == data and not part.exists()


@pytest.mark.parametrize("member", ["../evil.txt", "/tmp/abs-evil.txt", "wikitext-t/../../evil.txt", "C:/evil.txt"])
def test_an_archive_with_a_member_outside_its_folder_is_refused(server, monkeypatch, data_home, tmp_path, member):
    entry = wikitext_entry(monkeypatch, server)
    archive = zip_bytes({member: b"gotcha", **{f"wikitext-t/wiki.{s}.tokens": t.encode() for s, t in WIKI.items()}})
    server.files["/wt/wikitext-t-v1.zip"] = archive
    add_entry(monkeypatch, Entry(entry.name, "x", "wikitext", url=entry.url, ext="tokens"))
    with pytest.raises(download.DownloadError, match=r"is refused and was deleted: its member .* (climbs out|absolute)"):
        catalogue.fetch(catalogue.get("wikitext-t"))
    assert leftovers(data_home) == [".downloads"]
    assert not list(tmp_path.rglob("evil.txt")) and not Path("/tmp/abs-evil.txt").exists()


def test_an_archive_with_a_symlink_member_is_refused(server, monkeypatch, data_home):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        link = zipfile.ZipInfo("wikitext-t/wiki.train.tokens")
        link.external_attr = (0o120777 << 16)
        zf.writestr(link, "/etc/passwd")
    server.files["/wt/wikitext-t-v1.zip"] = buf.getvalue()
    add_entry(monkeypatch, Entry("wikitext-t", "x", "wikitext", url="http://example.org/wt/wikitext-t-v1.zip",
                                 ext="tokens"))
    with pytest.raises(download.DownloadError, match="is a symlink"):
        catalogue.fetch(catalogue.get("wikitext-t"))
    assert leftovers(data_home) == [".downloads"]


# ---- names, the mirror, the loader's hook ------------------------------------------------------


def test_the_mirror_replaces_scheme_and_host_and_keeps_the_path(monkeypatch):
    entry = catalogue.get("text8")
    monkeypatch.delenv(catalogue.MIRROR_ENV, raising=False)
    assert catalogue.source_url(entry) == "http://mattmahoney.net/dc/text8.zip"
    monkeypatch.setenv(catalogue.MIRROR_ENV, "https://mirror.example/corpora/")
    assert catalogue.source_url(entry) == "https://mirror.example/corpora/dc/text8.zip"


def test_a_missing_catalogue_corpus_is_one_sentence_with_the_fetch_command(data_home):
    check = check_corpus("text8")
    assert not check.ok
    assert check.problem == "Corpus text8 is not downloaded yet; fetch it with: minigpt-tui --corpus fetch text8"
    assert check.summary == "not downloaded; run minigpt-tui --corpus fetch text8"
    assert check_corpus("kjv").summary == "built-in KJV Bible"


def test_a_file_of_the_same_name_in_the_working_folder_wins_over_the_catalogue(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "text8").write_text("my own text8\n")
    assert catalogue.resolve("text8") == "text8"
    assert check_corpus("text8").summary == "text file"
    assert catalogue.resolve("notes.txt") == "notes.txt"


def test_training_on_a_missing_catalogue_corpus_exits_with_the_fetch_command(data_home):
    env = {**os.environ, "MINIGPT_TUI_HOME": str(data_home)}
    env.pop(catalogue.MIRROR_ENV, None)
    result = subprocess.run([sys.executable, "-m", "minigpt_tui", "--train", "--set", "data.path=text8"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == USER_ERROR
    assert result.stderr.strip().splitlines() == [
        "minigpt-tui: Corpus text8 is not downloaded yet; fetch it with: minigpt-tui --corpus fetch text8"]
    assert not (data_home / "runs").exists() or not any((data_home / "runs").iterdir())


# ---- the command line --------------------------------------------------------------------------


def test_corpus_list_says_what_is_here(server, monkeypatch, capsys, data_home):
    entry = wikitext_entry(monkeypatch, server)
    assert main(["--corpus", "list"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines()[1:-1]}
    assert list(rows)[:8] == ["kjv", "tiny-shakespeare", "wikitext-2", "wikitext-2-raw", "wikitext-103",
                              "wikitext-103-raw", "text8", "enwik8"]
    assert rows["text8"].split()[-1] == "no" and "29.9 MB" in rows["text8"]
    assert rows["kjv"].endswith("built in") and rows["wikitext-t"].endswith("no")
    catalogue.fetch(entry)
    assert main(["--corpus", "list"]) == 0
    assert "yes, " in next(line for line in capsys.readouterr().out.splitlines() if line.startswith("wikitext-t"))


def test_corpus_fetch_prints_plain_progress_lines_and_where_the_corpus_went(server, monkeypatch, capsys, data_home):
    wikitext_entry(monkeypatch, server)
    assert main(["--corpus", "fetch", "wikitext-t"]) == 0
    err = capsys.readouterr().err
    assert "wikitext-t: downloading" in err and "(100%)" in err
    assert err.strip().splitlines()[-1] == (f"wikitext-t is ready in {data_home / 'corpora' / 'wikitext-t'}; "
                                            "train on it with --set data.path=wikitext-t")
    assert main(["--corpus", "fetch", "wikitext-t"]) == 0
    assert "here already" in capsys.readouterr().err


@pytest.mark.parametrize("args, expected", [
    (["fetch", "nope"], "minigpt-tui: No corpus called 'nope' in the catalogue; the names are: kjv, "
                        "tiny-shakespeare, wikitext-2"),
    (["fetch"], "minigpt-tui: --corpus takes `list` or `fetch NAME`"),
    (["fetch", "missing-t"], "minigpt-tui: Download of http://127.0.0.1:"),
])
def test_corpus_fetch_failures_are_one_sentence_and_a_non_zero_status(server, monkeypatch, capsys, args, expected):
    add_entry(monkeypatch, Entry("missing-t", "x", "file", url="http://example.org/not/there.txt"))
    assert main(["--corpus", *args]) == USER_ERROR
    err = capsys.readouterr().err
    assert err.startswith(expected) and len(err.strip().splitlines()) == 1


def test_a_network_error_is_one_sentence(monkeypatch, capsys, data_home):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(catalogue.MIRROR_ENV, f"http://127.0.0.1:{port}")
    monkeypatch.setattr(download, "RETRY_DELAY_S", 0.0)
    assert main(["--corpus", "fetch", "tiny-shakespeare"]) == USER_ERROR
    err = capsys.readouterr().err
    assert err.startswith("minigpt-tui: Download of input.txt stopped at 0 bytes of 1,115,394 (")
    assert "refused" in err.lower() and len(err.strip().splitlines()) == 1


SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.skipif(not (SHARED / "tinyshakespeare" / "input.txt").is_file(), reason="shared corpora absent")
def test_the_real_tiny_shakespeare_entry_fetches_the_known_file(server, data_home):
    data = (SHARED / "tinyshakespeare" / "input.txt").read_bytes()
    server.files["/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"] = data
    path = catalogue.fetch(catalogue.get("tiny-shakespeare"))
    assert path.read_bytes() == data
    corpus = load_corpus(DataConfig(path="tiny-shakespeare"))
    assert corpus.name == "tiny-shakespeare"
    assert (corpus.split("train").n_chars, corpus.split("valid").n_chars) == (1_003_854, 111_540)


def test_a_download_finished_before_a_stop_is_not_downloaded_again(server, monkeypatch, data_home):
    entry = wikitext_entry(monkeypatch, server)
    archive = data_home / "corpora" / ".downloads" / "wikitext-t-v1.zip"
    archive.parent.mkdir(parents=True)
    archive.write_bytes(server.files["/wt/wikitext-t-v1.zip"])  # as a fetch killed while unpacking leaves it
    catalogue.fetch(entry)
    assert server.ranges == [] and catalogue.is_present(entry) and not archive.exists()


def test_a_data_home_that_cannot_be_written_is_one_sentence(server, monkeypatch, capsys, data_home):
    wikitext_entry(monkeypatch, server)
    data_home.mkdir(parents=True)
    (data_home / "corpora").write_text("a file where the folder should be")
    assert main(["--corpus", "fetch", "wikitext-t"]) == USER_ERROR
    err = capsys.readouterr().err
    assert err.startswith(f"minigpt-tui: Fetching wikitext-t failed writing under {data_home / 'corpora'} (")
    assert err.strip().endswith("check the free space and the folder's permissions.")
