"""Downloading a corpus archive and unpacking it safely (the standard library only: urllib, zipfile).

download() fetches a URL into a file through FILE.part: an interrupted download (Ctrl-C, a
dropped connection) leaves the .part behind and the next call asks the server for the rest
with a Range request. The file takes its final name only once its size and, where known,
its SHA-256 are right; a wrong one is deleted (resuming a bad file would only keep it bad).

extract_zip() unpacks an archive someone else made, so it trusts none of its names: an
absolute path, a "..", or a symlink member refuses the whole archive before anything is
written, and the members land in a temporary folder renamed into place only when all are out.

Every failure a user can meet is a DownloadError (a CorpusError: one sentence).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import socket
import stat
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Callable

from minigpt_tui import __version__
from minigpt_tui.core.errors import DownloadError

# progress(bytes done, bytes in all or None when the server does not say)
Progress = Callable[[int, "int | None"], None]

ATTEMPTS = 3  # tries per download() call; each resumes where the last one stopped
RETRY_DELAY_S = 2.0  # times the attempt number: 2 s, then 4 s
TIMEOUT_S = 30.0  # a connection silent this long counts as dropped
CHUNK = 1 << 16
# Some hosts refuse urllib's default "Python-urllib/3.x" agent with 403 Forbidden.
USER_AGENT = f"minigpt-tui/{__version__} (corpus download)"


class _Dropped(Exception):
    """The connection ended before the whole file came (worth another try, resuming)."""


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, dest: Path, *, size: int | None = None, sha256: str | None = None,
             progress: Progress | None = None) -> Path:
    """Fetch `url` into `dest` (resuming dest.part if one is there), check its size and
    digest where known, and return dest (at once when a good dest is there already). A connection that drops is retried, resuming,
    ATTEMPTS times in all; then DownloadError says how far it got (the .part stays)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    name = dest.name
    if dest.exists():  # an earlier call finished it (and was stopped before its file was used)
        if (size is None or dest.stat().st_size == size) and (sha256 is None or sha256_of(dest) == sha256.lower()):
            return dest
        dest.unlink()
    for attempt in range(1, ATTEMPTS + 1):
        try:
            _fetch_rest(url, part, size, progress)
            break
        except (_Dropped, OSError, http.client.HTTPException) as err:  # OSError: URLError, timeouts, resets
            if isinstance(err, urllib.error.HTTPError) and err.code < 500:
                raise DownloadError(f"Download of {url} failed: the server answered HTTP {err.code} "
                                    f"{err.reason}.") from None
            if attempt == ATTEMPTS:
                have = part.stat().st_size if part.exists() else 0
                why = _reason(err)
                raise DownloadError(f"Download of {name} stopped at {have:,} bytes{_of(size)} ({why}) after "
                                    f"{ATTEMPTS} tries; run the same command again to resume.",
                                    "download stopped") from None
            time.sleep(RETRY_DELAY_S * attempt)
    have = part.stat().st_size
    if size is not None and have != size:
        part.unlink()
        raise DownloadError(f"Downloaded {name} has {have:,} bytes, not the expected {size:,}; the bad file was "
                            "deleted, try again (or check the mirror).", "wrong size")
    if sha256 is not None:
        got = sha256_of(part)
        if got != sha256.lower():
            part.unlink()
            raise DownloadError(f"Downloaded {name} has SHA-256 {got[:12]}…, not the expected {sha256[:12]}…; "
                                "the bad file was deleted, try again (or check the mirror).", "wrong digest")
    os.replace(part, dest)
    return dest


def _of(size: int | None) -> str:
    return f" of {size:,}" if size is not None else ""


def _reason(err: Exception) -> str:
    if isinstance(err, _Dropped):
        return "the connection closed early"
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        reason = err.reason
        return str(reason.strerror if isinstance(reason, OSError) and reason.strerror else reason)
    if isinstance(err, socket.timeout):
        return f"no data for {TIMEOUT_S:.0f} s"
    if isinstance(err, http.client.HTTPException):
        return f"a bad answer from the server: {type(err).__name__}"
    return str(err.strerror if isinstance(err, OSError) and err.strerror else err)


def _fetch_rest(url: str, part: Path, size: int | None, progress: Progress | None) -> None:
    """One try: append what the server sends after the bytes the .part already holds."""
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:  # not the file we expect: start afresh
        part.unlink()
        have = 0
    if size is not None and have == size:
        return
    headers = {"User-Agent": USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # nothing after the bytes we hold: the .part is whole
            return
        raise
    with response:
        total = _total(response)
        if response.status == 206:
            start = _range_start(response)
            if start != have:
                raise _Dropped()  # an answer for other bytes than asked: cannot append it
            mode = "ab"
        else:  # 200: the server sends the whole file (it ignores Range, or none was asked)
            have, mode = 0, "wb"
        if size is not None and total is not None and total != size:
            raise DownloadError(f"The server offers {total:,} bytes for {url}, not the expected {size:,}; "
                                "nothing was downloaded (check the URL or the mirror).", "wrong size")
        total = total if total is not None else size
        with part.open(mode) as f:
            if progress:
                progress(have, total)
            while block := response.read(CHUNK):
                f.write(block)
                have += len(block)
                if progress:
                    progress(have, total)
    if total is not None and have < total:
        raise _Dropped()


def _total(response) -> int | None:
    """The whole file's size, from Content-Range (206) or Content-Length (200)."""
    if response.status == 206:
        match = re.match(r"bytes \d+-\d+/(\d+)", response.headers.get("Content-Range", ""))
        return int(match.group(1)) if match else None
    length = response.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def _range_start(response) -> int:
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else -1


# ---- archives ---------------------------------------------------------------------------


def _unsafe(info: zipfile.ZipInfo) -> str:
    """Why a member may not be extracted ("" when it may)."""
    name = info.filename
    if stat.S_ISLNK(info.external_attr >> 16):
        return "is a symlink"
    parts = re.split(r"[\\/]", name)
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "has an absolute path"
    if ".." in parts:
        return "climbs out of its folder (..)"
    if "\x00" in name:
        return "has a NUL in its name"
    return ""


def extract_zip(archive: Path, target: Path) -> Path:
    """Unpack `archive` into the new folder `target` (which must not exist), every member
    checked first: one unsafe member refuses the whole archive (deleted, as is one that is no
    zip), and nothing is written."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            for info in members:
                why = _unsafe(info)
                if why:
                    archive.unlink(missing_ok=True)
                    raise DownloadError(f"Archive {archive.name} is refused and was deleted: its member "
                                        f"{info.filename!r} {why}.", "unsafe archive")
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
            try:
                root = tmp.resolve()
                for info in members:
                    out = (tmp / PurePosixPath(info.filename.replace("\\", "/"))).resolve()
                    if root not in out.parents and out != root:  # belt and braces after _unsafe
                        raise DownloadError(f"Archive {archive.name} is refused: its member {info.filename!r} "
                                            "lands outside its folder.", "unsafe archive")
                    if info.is_dir():
                        out.mkdir(parents=True, exist_ok=True)
                        continue
                    out.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, out.open("wb") as dst:
                        shutil.copyfileobj(src, dst, CHUNK)
                os.rename(tmp, target)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error) as err:  # zlib: corrupt data
        archive.unlink(missing_ok=True)
        raise DownloadError(f"Archive {archive.name} is not a readable zip file ({err}); it was deleted, "
                            "fetch it again.", "bad archive") from None
    return target
