"""Fetching one file over HTTP into `<name>.part`, and giving it its final name only once verified.

- An interrupted download resumes with a Range request carrying If-Range, and only from the server that
  started it (recorded beside the .part in `<name>.part.json`), so bytes of two revisions are never
  joined. A `.part` that fails verification is discarded and the file fetched whole once more; a
  complete `.part` left by a stopped run is verified before any request.
- Connection errors (TLS included), 5xx answers, stalls (fewer than MIN_BYTES_PER_SECOND over any
  `timeout` seconds), bodies cut short of their Content-Length and non-numeric Content-Lengths are
  retried with backoff; 4xx answers (but a 416 to a resume, which restarts the file), web pages (by
  their Content-Type), redirect loops and redirects to anything but http:// or https:// go straight to
  the next server. A body that is wrong in any other way (longer than its Content-Length says, no
  length and cut short, a web page labelled as a file) fails verification: fetched whole once more,
  then the next server.
- What a server names for the file on the way (the Hub's X-Linked-Etag, its SHA-256, and X-Repo-Commit,
  its revision) is passed to the verification; the first SHA-256 named binds.
- Nothing is written through a link planted at a `.part` name (gpt2_support.files).
"""

import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from http.client import HTTPException

from tqdm import tqdm

from gpt2_support.files import (CHUNK_BYTES, is_own_regular_file, open_for_writing, storage_errors, write_all,
                                write_text_atomically)

__all__ = ["FetchSettings", "ServersFailed", "download_from_any", "MIN_BYTES_PER_SECOND"]

# A download that brings fewer bytes than this per second, over any stretch of `timeout` seconds,
# is treated as stalled (a socket timeout alone never fires on a server that trickles).
MIN_BYTES_PER_SECOND = 1024
# Worth another try: any error of the connection (OSError covers refused, reset, timed out, and TLS
# errors such as a cut HTTPS stream); errors of the disk are DownloadErrors by then (see storage_errors).
_RETRYABLE = (HTTPException, OSError)


@dataclass(frozen=True)
class FetchSettings:
    """How to fetch. retries: attempts per server and file (at least 1); backoff: seconds before the
    second attempt (doubling after); timeout: seconds a connection may stay silent, and the window of the
    MIN_BYTES_PER_SECOND check; progress: show a progress bar."""
    retries: int = 3
    backoff: float = 0.5
    timeout: float = 30
    progress: bool = True


class ServersFailed(Exception):
    """No server gave a file that passed verification. `failures`: one line per server, "  <url>: <why>"."""

    def __init__(self, failures):
        super().__init__("\n".join(failures))
        self.failures = failures


class _ServerError(Exception):
    """A 5xx answer, a stall or a body that is not what its headers promised: retry the same URL."""


class _SourceFailed(Exception):
    """This URL cannot give us the file (4xx, HTML, redirect loop, or wrong bytes): try the next one."""


def download_from_any(urls, path, verify, settings):
    """Fetch the file at `path` from the first of `urls` that gives one passing verification (each URL
    with retries); return its manifest record, with "source" (the URL) and the Hub's "revision" where
    named. verify(part, claimed_sha256=...) -> (problem or None, record). Raises ServersFailed."""
    failures = []
    for url in urls:
        try:
            return _download_one(url, path, verify, settings)
        except _SourceFailed as error:
            failures.append(f"  {url}: {error}")
            if url != urls[-1]:
                print(f"{url}: {error}; trying the next server", file=sys.stderr)
    raise ServersFailed(failures)


def _download_one(url, path, verify, settings):
    """Fetch url into <path>.part (continuing a .part this URL started), verify it, and only then give
    it its final name. Wrong bytes are discarded and the file fetched whole once more. A .part that is
    already complete (a run stopped while verifying it) is verified before any request."""
    part = path.with_name(path.name + ".part")
    state = _read_part_state(part)
    complete = state is not None and is_own_regular_file(part) and state.get("length") == part.stat().st_size
    for whole_again in (False, True):
        source = url
        if complete and not whole_again:
            source = state.get("url") or url
        else:
            _fetch_with_retries(url, part, settings)
        with storage_errors("read", part):
            named = _read_part_state(part) or {}  # what the server named for the file, if it did
            claimed, revision = named.get("sha256"), named.get("revision")
            problem, record = verify(part, **({"claimed_sha256": claimed} if claimed else {}))
            if problem is None:  # the Hub's commit (X-Repo-Commit) says which version this is
                entry = {**record, "source": source, **({"revision": revision} if revision else {})}
        if problem is None:
            with storage_errors("give its final name to", part):
                os.replace(part, path)  # only now does the file have its final name
            _discard_part(part)  # the record of where the .part came from
            return entry
        _discard_part(part)
        if not whole_again:
            print(f"{source} gave wrong bytes ({problem}); fetching the whole file once more", file=sys.stderr)
    raise _SourceFailed(f"downloaded file rejected twice: {problem}")


def _fetch_with_retries(url, part, settings):
    last_error = None
    for attempt in range(settings.retries):
        try:
            return _fetch_into(url, part, settings)
        except urllib.error.HTTPError as error:
            if 300 <= error.code < 400:
                raise _SourceFailed(f"HTTP {error.code}: redirects in a loop or too many times") from error
            if error.code < 500:
                raise _SourceFailed(f"HTTP {error.code} {error.reason}") from error
            last_error = f"HTTP {error.code} {error.reason}"
        except (_ServerError, *_RETRYABLE) as error:
            last_error = f"{type(error).__name__}: {error}"
        if attempt + 1 < settings.retries:
            pause = settings.backoff * 2**attempt
            print(f"{url}: {last_error}; trying again in {pause:g} s ({attempt + 2} of {settings.retries})",
                  file=sys.stderr)
            time.sleep(pause)
    raise _SourceFailed(f"failed {settings.retries} times, last: {last_error}")


def _fetch_into(url, part, settings):
    """Fetch url into part. A .part that this URL started, under a validator (ETag or Last-Modified)
    it gave, is continued with Range + If-Range: the server sends the rest only if the file is still
    that revision, otherwise the whole file (200), which replaces the .part. Any other .part is
    replaced once this URL starts sending the whole file."""
    state = _read_part_state(part)
    offset = part.stat().st_size if is_own_regular_file(part) else 0
    resume = bool(offset and state and state.get("url") == url and state.get("validator"))
    if not resume:
        offset = 0  # another server's .part stays until this one sends a file to replace it
    headers = {"User-Agent": "gpt_download"}
    if resume:
        headers |= {"Range": f"bytes={offset}-", "If-Range": state["validator"]}
    claims = []  # what the server names for the file on a redirect (the Hub's X-Linked-Etag, X-Repo-Commit)
    opener = urllib.request.build_opener(_NotingRedirects(claims))
    try:
        response = opener.open(urllib.request.Request(url, headers=headers), timeout=settings.timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and resume and (error.headers.get("Content-Range") or "").endswith(f"/{offset}"):
            return  # the .part already holds the whole file ("bytes */<its size>")
        if error.code == 416:  # our .part is not a prefix the server can continue: start over
            _discard_part(part)
            raise _ServerError("HTTP 416 for the resumed range; starting over") from error
        raise
    with response:
        content_type = response.headers.get("Content-Type", "")
        if content_type.split(";")[0].strip().lower() in ("text/html", "application/xhtml+xml"):
            raise _SourceFailed(f"answered with a web page (Content-Type: {content_type}), not the file: "
                                "a sign-in or error page?")
        length = response.headers.get("Content-Length")
        digits = (length or "").strip()  # isdigit alone takes "²", and int() refuses 4,301 digits or more
        if length is not None and not (digits.isascii() and digits.isdigit() and len(digits) < 20):
            raise _ServerError(f"Content-Length {length!r:.40} is not a number")
        claimed, revision = _bound_claims([*claims, {**_named(response.headers), "url": response.url}], part)
        if resume and response.status == 206:
            start, total = _parse_content_range(response.headers.get("Content-Range"))
            if start != offset or (state.get("length") is not None and total != state["length"]):
                _discard_part(part)
                raise _ServerError(f"asked to continue at byte {offset:,} of {state.get('length')}, the server "
                                   f"sent from {start} of {total}; starting over")
            append = True
        elif response.status == 200:  # the whole file: also when the revision changed, or Range was ignored
            total = int(length) if length is not None else None
            _discard_part(part)
            offset, append = 0, False
            _write_part_state(part, {"url": url, "validator": _validator(response.headers), "length": total,
                                     "sha256": claimed, "revision": revision})
        else:
            raise _ServerError(f"unexpected HTTP {response.status} for a download")
        received = offset
        with open_for_writing(part, append) as file_descriptor, \
                tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                     desc=part.name[:-5], disable=not settings.progress) as bar:
            window_start, window_bytes = time.monotonic(), 0
            while chunk := response.read1(CHUNK_BYTES):
                with storage_errors("write", part):
                    write_all(file_descriptor, chunk)
                received += len(chunk)
                window_bytes += len(chunk)
                bar.update(len(chunk))
                elapsed = time.monotonic() - window_start
                if elapsed >= settings.timeout:
                    if window_bytes < MIN_BYTES_PER_SECOND * elapsed:
                        raise _ServerError(f"stalled: {window_bytes:,} bytes in {elapsed:.1f} s")
                    window_start, window_bytes = time.monotonic(), 0
    if total is not None and received != total:
        # http.client returns b"" rather than raising when the connection drops early.
        raise _ServerError(f"connection closed after {received:,} of {total:,} bytes")


class _NotingRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects as urllib does, noting what each redirect names for the file: the Hub answers
    a large file's address with a redirect to its storage that carries X-Linked-Etag, the SHA-256 of
    the file, and X-Repo-Commit, the repository's revision (the storage's own answer carries neither)."""

    def __init__(self, claims):
        super().__init__()
        self.claims = claims

    def http_error_302(self, req, fp, code, msg, headers):
        # urllib itself follows ftp:// and turns other schemes into an HTTPError that reads like a loop.
        target = headers.get("Location") or headers.get("URI") or ""
        try:
            scheme = urllib.parse.urlsplit(target).scheme
        except ValueError:  # such as an unclosed "[" of an IPv6 address
            scheme = "unreadable"
        if scheme not in ("http", "https", ""):
            fp.close()
            raise _SourceFailed(f"HTTP {code}: the server redirected to a refused address, {target!r:.200} "
                                f"({scheme} address; only http:// and https:// redirects are followed)")
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        self.claims.append({**_named(headers), "url": req.full_url})
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _bound_claims(claims, part):
    """(SHA-256, revision) that the answers to one request named for the file, in the order they came: the
    first SHA-256 named (the Hub's, on its redirect) binds, and a later answer (the storage's, or a redirect
    on another host) that names another one is refused, since the bytes could then be verified against it."""
    sha256 = revision = first = None
    for claim in claims:
        if claim["sha256"] and sha256 is None:
            sha256, first = claim["sha256"], claim["url"]
        elif claim["sha256"] and claim["sha256"] != sha256:
            raise _SourceFailed(f"{part.name.removesuffix('.part')}: {first} named SHA-256 {sha256} for it, but a "
                                f"later answer on the way, {claim['url']}, names {claim['sha256']}; the first binds, "
                                "so these bytes are refused. Try again later (the file may have changed meanwhile); "
                                "if this persists, something between you and the server swaps files: use another "
                                "server or a copy you trust")
        revision = revision or claim["revision"]
    return sha256, revision


def _named(headers):
    """{"sha256": the SHA-256 an answer names for its file in X-Linked-Etag, "revision": its
    X-Repo-Commit}, each None where absent or malformed."""
    sha256 = (headers.get("X-Linked-Etag") or "").removeprefix("W/").strip('"').lower()
    commit = (headers.get("X-Repo-Commit") or "").strip().lower()
    hexadecimal = set("0123456789abcdef")
    return {"sha256": sha256 if len(sha256) == 64 and set(sha256) <= hexadecimal else None,
            "revision": commit if len(commit) == 40 and set(commit) <= hexadecimal else None}


def _validator(headers):
    """What If-Range can name to ask for "the rest, if unchanged": a strong ETag, else Last-Modified."""
    etag = headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return headers.get("Last-Modified")


def _parse_content_range(value):
    """'bytes 100-199/1000' -> (100, 1000)."""
    try:
        unit, spec = value.split(" ", 1)
        span, total = spec.split("/")
        return int(span.split("-")[0]), int(total)
    except (AttributeError, ValueError) as error:
        raise _ServerError(f"unreadable Content-Range {value!r}") from error


def _part_state_path(part):
    """`<name>.part.json`, the record of where `<name>.part` came from."""
    return part.with_name(part.name + ".json")


def _read_part_state(part):
    """Where a .part came from, {"url", "validator", "length", "sha256", "revision"} (the last two: what
    the server named for the file), or None if unknown."""
    path = _part_state_path(part)
    if path.is_symlink() or not path.is_file():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError, OSError):
        return None
    return state if isinstance(state, dict) else None


def _write_part_state(part, state):
    write_text_atomically(_part_state_path(part), json.dumps(state))


def _discard_part(part):
    """Remove a .part and the record of where it came from."""
    with storage_errors("remove", part):
        _part_state_path(part).unlink(missing_ok=True)
        part.unlink(missing_ok=True)
