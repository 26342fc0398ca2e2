"""Download OpenAI's GPT-2 checkpoints safely, verify them, and read them.

    hparams, params = download_and_load_gpt2("124M", "models/gpt2")

OpenAI published GPT-2 as TensorFlow 1 checkpoints, one folder per model size:

    checkpoint                        which checkpoint is current (a small text file)
    encoder.json, vocab.bpe           the BPE tokenizer (the files tiktoken's "gpt2" encoding uses)
    hparams.json                      n_vocab, n_ctx, n_embd, n_head, n_layer
    model.ckpt.data-00000-of-00001    every weight, float32 (497,759,232 bytes for 124M)
    model.ckpt.index                  where each variable lies in the data file, with its CRC32C
    model.ckpt.meta                   TensorFlow's graph (not needed to read the weights)

The variables are named like "model/h0/attn/c_attn/w" (`openai_variable_shapes` lists them all).
The weights of the linear layers are stored as [1, in_features, out_features]: OpenAI implemented
them as 1-wide convolutions.

What this module promises: a file under its final name, or recorded in the folder's manifest, is
the right file.
- Every file is verified before it gets its final name: by its published SHA-256 where one is known
  (every 124M file, and the tokenizer and `checkpoint` files of every size), otherwise by content:
  hparams.json must hold the size's published numbers, the index must list exactly the variables
  hparams.json implies, every tensor in the data file must pass the index's CRC32C, and the graph
  file must consist of a TensorFlow MetaGraphDef's fields, the graph among them (its framing is
  checked, not the graph). When hparams.json or the index is replaced, the files checked against it
  are checked again. A file found on disk without a record is verified the same way, offline; so is
  one whose record disagrees with it (the manifest only caches checks) where those checks see every
  byte that matters (CHECKED_IN_FULL, or a published SHA-256). One that fails, or is to be fetched
  again, is renamed aside to `<name>.rejected` (kept until a good copy is in place, so nothing is lost
  if no server answers).
  Bytes no parser expects (JSON nested too deeply, ...) fail verification like any wrong bytes.
- Downloads go to `<name>.part`. An interrupted one resumes with a Range request carrying If-Range,
  and only from the server that started it, so bytes of two revisions are never joined. A `.part`
  that fails verification is discarded and the file fetched whole once more; a complete `.part` left
  by a stopped run is verified before any request.
- Connection errors (TLS included), 5xx answers, stalls, bodies cut short of their Content-Length
  and non-numeric Content-Lengths are retried with backoff; 4xx answers (but a 416 to a resume,
  which restarts the file), web pages (by their Content-Type), redirect loops and redirects to
  anything but http:// or https:// go straight to the mirror. A body that is wrong in any other way
  (longer than its Content-Length says, no length and cut short, a web page labelled as a file)
  fails verification: fetched whole once more, then the mirror.
- One download per folder at a time: a lock file `<size>.lock` beside the folder makes a second
  process wait; once the first has finished, the second finds the files verified and makes no
  request (or, if the first failed, tries itself). A complete folder that cannot be written (shared
  or read-only) is verified and used without the lock.
- Nothing is written through a symbolic link planted at a `.part`, temporary or final name.
- `manifest.json` records each verified file's size and SHA-256, so a later call checks the files
  on disk and makes no network request at all: after one download, everything works offline. A
  record of a downloaded 124M file must also carry the published SHA-256; files recorded by
  write_gpt2_checkpoint (such as the smoke profile's stand-ins) are the user's own and exempt.
- Every failure raises an error that names the file, the folder and what to do.
- Reading a checkpoint needs no TensorFlow and checks every tensor's CRC32C (the section "Reading
  OpenAI's TensorFlow checkpoints" says why TensorFlow must never be imported where the model runs).
  Writing checkpoints in this layout is taught in 03_pretrained_weights.ipynb, section 9
  (gpt2_from_scratch.weights.write_gpt2_checkpoint), which records its files in the manifest too.

Environment variables GPT2_BASE_URL and GPT2_MIRROR_URL (or the arguments base_url and mirror_url)
point the downloader at other servers; URLs are `{base}/{model_size}/{file}`.

Run `python gpt_download.py 124M` to download a model size ahead of time.

A second source: the Hugging Face Hub
The Hub serves the same four models (openai-community/gpt2, -medium, -large, -xl) as
model.safetensors with config.json. source="huggingface" (or GPT2_WEIGHTS_SOURCE=huggingface) fetches
those two files into `models_dir/huggingface/<size>/` with the same machinery (.part files resumed
with If-Range, retries, a second server, the manifest, the lock, .rejected), and
load_gpt2_params_from_safetensors reads them into the same params, so everything after loading is
unchanged. URLs are `{endpoint}/{repo}/resolve/{revision}/{file}`; the endpoint is base_url=, else
the Hub's own variable HF_ENDPOINT, else https://huggingface.co; mirror_url= or GPT2_HF_MIRROR_URL
names a second one (none by default). Verification differs, because safetensors stores no checksum:
a downloaded model.safetensors must have the published SHA-256 where one is known (124M, at a pinned
revision), otherwise the SHA-256 the server named for it (the Hub's X-Linked-Etag header, on its
redirect to storage: the first one named binds, and a later answer naming another is refused); one
with neither is refused. Both files are also checked by content: config.json
must give the size's published numbers, and model.safetensors must hold exactly the float32 tensors
config.json implies. A copy placed by hand can only be checked by content (and by hash for 124M).
The manifest records the Hub's revision (X-Repo-Commit) beside each file. Neither source needs
TensorFlow to read; TensorFlow only writes OpenAI-format checkpoints (03_pretrained_weights.ipynb,
section 9).
"""

import collections
import contextlib
import errno
import hashlib
import json
import os
import stat
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from http.client import HTTPException
from pathlib import Path

import numpy as np
from tqdm import tqdm

MODEL_SIZES = ("124M", "355M", "774M", "1558M")
SOURCES = ("openai", "huggingface")  # where the weights come from; the series is built around OpenAI's
SOURCE_VARIABLE = "GPT2_WEIGHTS_SOURCE"  # the environment variable that picks one (default "openai")
FILES = (
    "checkpoint",
    "encoder.json",
    "hparams.json",
    "model.ckpt.data-00000-of-00001",
    "model.ckpt.index",
    "model.ckpt.meta",
    "vocab.bpe",
)
DATA_FILE = "model.ckpt.data-00000-of-00001"
# The order in which files are made sure of: a content check may rely on the files before it (the
# index is checked against hparams.json, the data file against the index).
VERIFY_ORDER = ("checkpoint", "encoder.json", "vocab.bpe", "hparams.json", "model.ckpt.meta",
                "model.ckpt.index", DATA_FILE)
BASE_URL = "https://openaipublic.blob.core.windows.net/gpt-2/models"
MIRROR_URL = "https://f001.backblazeb2.com/file/LLMs-from-scratch/gpt2"

# Published SHA-256 of OpenAI's files: (model size, file name); a size of None means every size.
# The tokenizer hashes are the ones tiktoken checks; `checkpoint` is the same two lines in every size.
KNOWN_SHA256 = {
    (None, "checkpoint"): "dd1b025d2e155283f5e300ce95bf6d5b6bc0f7fe010db73daa6975eb896ab9cb",
    (None, "encoder.json"): "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    (None, "vocab.bpe"): "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
    ("124M", "hparams.json"): "d9d56e4121c427164e0c55c6f03c08e1daf9002b9b672825112d19097b680318",
    ("124M", DATA_FILE): "2060c885360cc0cf41d7a6dbc4d24b5127aae20260c8b5ae521b5a6578407118",
    ("124M", "model.ckpt.index"): "71916f763f9746f9b2a06b12d91996cf1084ae008d0424543d39391c5f2dc687",
    ("124M", "model.ckpt.meta"): "4668c448fa11531fd6700460487f73e82d3272960cea942252f8744bf225c77b",
    # The Hub's file at HF_REVISIONS["124M"], as public projects that pin that revision record it (its
    # page: https://huggingface.co/openai-community/gpt2/blob/607a30d783dfa663caf39e06633721c8d4cfcd7e/model.safetensors).
    ("124M", "model.safetensors"): "248dfc3911869ec493c76e65bf2fcf7f615828b0254c12b473182f0f81d3a707",
}
# Sizes of the weight files we know (float32: 4 bytes a parameter): checked before hashing.
KNOWN_SIZES = {
    ("124M", DATA_FILE): 497_759_232,
    ("355M", DATA_FILE): 1_419_292_672,
    ("124M", "model.safetensors"): 548_105_171,
}
# hparams.json of each size as OpenAI published it.
HPARAMS_KEYS = ("n_vocab", "n_ctx", "n_embd", "n_head", "n_layer")
KNOWN_HPARAMS = {
    "124M": {"n_vocab": 50257, "n_ctx": 1024, "n_embd": 768, "n_head": 12, "n_layer": 12},
    "355M": {"n_vocab": 50257, "n_ctx": 1024, "n_embd": 1024, "n_head": 16, "n_layer": 24},
    "774M": {"n_vocab": 50257, "n_ctx": 1024, "n_embd": 1280, "n_head": 20, "n_layer": 36},
    "1558M": {"n_vocab": 50257, "n_ctx": 1024, "n_embd": 1600, "n_head": 25, "n_layer": 48},
}

# The Hugging Face Hub's copies of the same models.
HF_ENDPOINT = "https://huggingface.co"
HF_REPOS = {"124M": "openai-community/gpt2", "355M": "openai-community/gpt2-medium",
            "774M": "openai-community/gpt2-large", "1558M": "openai-community/gpt2-xl"}
# Pinned where the file's SHA-256 is known, so the bytes can never change under us; the other sizes
# follow "main" and are checked against the SHA-256 the Hub names (X-Linked-Etag) and by content.
HF_REVISIONS = {"124M": "607a30d783dfa663caf39e06633721c8d4cfcd7e"}
HF_FILES = ("config.json", "model.safetensors")  # in this order: the weights are checked against the config
HF_FOLDER = "huggingface"  # the Hub's files go to models_dir/huggingface/<size>/, beside OpenAI's <size>/
MANIFEST = "manifest.json"
CHUNK_BYTES = 1 << 20
# A download that brings fewer bytes than this per second, over any stretch of `timeout` seconds,
# is treated as stalled (a socket timeout alone never fires on a server that trickles).
MIN_BYTES_PER_SECOND = 1024
# Worth another try: any error of the connection (OSError covers refused, reset, timed out, and TLS
# errors such as a cut HTTPS stream); errors of the disk are DownloadErrors by then (see _storage).
_RETRYABLE = (HTTPException, OSError)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # not on Windows, where creating symlinks needs privileges
_BINARY = getattr(os, "O_BINARY", 0)


class DownloadError(RuntimeError):
    """A GPT-2 file could not be fetched, verified or stored."""


class _ServerError(Exception):
    """A 5xx answer, a stall or a body that is not what its headers promised: retry the same URL."""


class _SourceFailed(Exception):
    """This URL cannot give us the file (4xx, HTML, redirect loop, or wrong bytes): try the next one."""


# --------------------------------------------------------------------------------------------------
# Downloading
# --------------------------------------------------------------------------------------------------

def download_and_load_gpt2(model_size, models_dir, *, source=None, base_url=None, mirror_url=None,
                           retries=3, backoff=0.5, timeout=30, progress=True):
    """Make sure the files of GPT-2 `model_size` are in models_dir, verified, then read the weights.

    source: "openai" (OpenAI's seven files in `models_dir/model_size`) or "huggingface" (the Hub's
    config.json and model.safetensors in `models_dir/huggingface/model_size`); None means the
    environment variable GPT2_WEIGHTS_SOURCE, else "openai". Both give the same result for the same
    weights: (hparams, params), hparams as in OpenAI's hparams.json (n_vocab, n_ctx, n_embd, n_head,
    n_layer), params as load_gpt2_params_from_tf_ckpt returns them. Files already recorded in the
    folder's manifest are checked on disk (size and SHA-256) and not downloaded again; no network
    request is made then.
    """
    source = weights_source(source)
    model_dir = ensure_gpt2_files(model_size, models_dir, source=source, base_url=base_url,
                                  mirror_url=mirror_url, retries=retries, backoff=backoff, timeout=timeout,
                                  progress=progress)
    if source == "huggingface":
        hparams = hparams_from_hf_config(json.loads((model_dir / "config.json").read_text(encoding="utf-8")))
        return hparams, load_gpt2_params_from_safetensors(model_dir / "model.safetensors", hparams)
    hparams = json.loads((model_dir / "hparams.json").read_text(encoding="utf-8"))
    params = load_gpt2_params_from_tf_ckpt(model_dir / "model.ckpt", hparams)
    return hparams, params


def weights_source(source=None):
    """The source to use: `source` if given, else GPT2_WEIGHTS_SOURCE, else "openai"."""
    chosen = source if source is not None else (os.environ.get(SOURCE_VARIABLE) or "openai")
    if chosen not in SOURCES:
        origin = "source=" if source is not None else f"the environment variable {SOURCE_VARIABLE}"
        raise ValueError(f"{origin} must be {' or '.join(map(repr, SOURCES))}; got {chosen!r}")
    return chosen


def model_folder(model_size, models_dir, source=None):
    """Where ensure_gpt2_files puts a size's files: models_dir/<size> for OpenAI's,
    models_dir/huggingface/<size> for the Hub's."""
    if weights_source(source) == "huggingface":
        return Path(models_dir) / HF_FOLDER / model_size
    return Path(models_dir) / model_size


def source_files(source=None):
    """The files of one model size from this source, in the order they are verified."""
    return HF_FILES if weights_source(source) == "huggingface" else VERIFY_ORDER


def hf_file_url(endpoint, model_size, name):
    """The Hub's address of one file: {endpoint}/{repo}/resolve/{revision}/{name}."""
    return f"{endpoint.rstrip('/')}/{HF_REPOS[model_size]}/resolve/{HF_REVISIONS.get(model_size, 'main')}/{name}"


def ensure_gpt2_files(model_size, models_dir, *, source=None, base_url=None, mirror_url=None, retries=3,
                      backoff=0.5, timeout=30, progress=True):
    """Download whatever is missing or wrong in the size's folder (see model_folder); return the folder.

    base_url, mirror_url: the servers, tried in this order. For OpenAI's files they default to
    GPT2_BASE_URL / GPT2_MIRROR_URL, else OpenAI's storage and a public mirror; for the Hub's to
    HF_ENDPOINT, else https://huggingface.co, and GPT2_HF_MIRROR_URL, else none.
    retries: attempts per server and file; backoff: seconds before the second attempt (doubling);
    timeout: seconds a connection may stay silent (and the window of the MIN_BYTES_PER_SECOND check).
    """
    source = weights_source(source)
    if model_size not in MODEL_SIZES:
        raise ValueError(f"model_size must be one of {', '.join(MODEL_SIZES)}; got {model_size!r}")
    model_dir = model_folder(model_size, models_dir, source)
    if type(retries) is not int or retries < 1:
        raise ValueError(f"retries must be a whole number of at least 1 (the attempts per server), got {retries!r} "
                         f"for GPT-2 {model_size} in {model_dir}/; leave it out for the default, 3")
    if source == "huggingface":
        bases = [base_url or os.environ.get("HF_ENDPOINT") or HF_ENDPOINT,
                 mirror_url or os.environ.get("GPT2_HF_MIRROR_URL")]
        settings = "base_url=, mirror_url=, HF_ENDPOINT or GPT2_HF_MIRROR_URL"
    else:
        bases = [base_url or os.environ.get("GPT2_BASE_URL") or BASE_URL,
                 mirror_url or os.environ.get("GPT2_MIRROR_URL") or MIRROR_URL]
        settings = "base_url=, mirror_url=, GPT2_BASE_URL or GPT2_MIRROR_URL"
    bases = [base for base in bases if base]
    for base in bases:
        if not base.startswith(("http://", "https://")):
            raise ValueError(f"GPT-2's servers must be http:// or https:// URLs; got {base!r} (from {settings})")
    names = source_files(source)
    with _storage("read", model_dir):
        manifest = read_manifest(model_dir)
        if all(_recorded_problem(model_dir, model_size, name, manifest) is None for name in names):
            return model_dir  # the usual case: nothing to write, so no lock (the folder may be read-only)
    with _storage("create the folder", model_dir):
        model_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(_folder_lock(model_dir))
        except DownloadError as error:
            if _cannot_write(error) and _complete_by_content(model_dir, model_size, names):
                return model_dir  # a complete folder we may not write to (shared, mounted read-only): verified
            raise
        manifest = read_manifest(model_dir)
        recheck = False  # once a file others are checked against is replaced, they are checked again
        for name in names:
            if source == "huggingface":
                urls = [hf_file_url(base, model_size, name) for base in bases]
            else:
                urls = [f"{base.rstrip('/')}/{model_size}/{name}" for base in bases]  # URLs, not os.path.join
            replaced = _ensure_file(model_dir, model_size, name, manifest, urls, recheck, retries, backoff,
                                    timeout, progress)
            recheck = recheck or (replaced and name in ("hparams.json", "model.ckpt.index", "config.json"))
    return model_dir


# The manifest's "source" for files that 03's writers wrote (write_gpt2_checkpoint, and write_gpt2_safetensors
# for the Hub's format): the user's own files, exempt from the published hashes.
WRITER_SOURCE = "write_gpt2_checkpoint"


def _recorded_problem(model_dir, model_size, name, manifest):
    """None if the manifest records `name` and the file on disk is what it recorded; else what is wrong.
    A record of a downloaded file whose SHA-256 is not the published one is not trusted either (files
    that write_gpt2_checkpoint wrote, such as the smoke profile's stand-ins, are the user's own)."""
    path, entry = model_dir / name, manifest.get(name)
    if entry is None:
        return "it is not in the manifest"
    published = known_sha256(model_size, name)
    if published is not None and entry["sha256"] != published and entry.get("source") != WRITER_SOURCE:
        return f"the manifest records SHA-256 {entry['sha256']}, not the published {published}"
    if not path.is_file() or path.stat().st_size != entry["size"] or sha256_of(path) != entry["sha256"]:
        return "it changed after it was verified (its size or SHA-256 differs from the manifest's)"
    return None


def _complete_by_content(model_dir, model_size, names):
    """True if every file is in the folder and passes verify_file (nothing is written)."""
    with _storage("read", model_dir):
        return all((model_dir / name).is_file() and verify_file(model_dir, model_size, name, model_dir / name) is None
                   for name in names)


# Files whose checks see every byte that matters without a published SHA-256: every tensor's CRC32C (the
# data file, whose CRC32Cs and offsets come from the index: a wrong index fails it), every value (the two JSON
# files). Not the graph file (its framing only) nor a safetensors file (its header only; it stores no checksum).
CHECKED_IN_FULL = {"hparams.json", "config.json", "model.ckpt.index", DATA_FILE}


def _checked_in_full(model_size, name):
    """True if verify_file checks all of `name` that matters: by a published SHA-256, or by content."""
    return known_sha256(model_size, name) is not None or name in CHECKED_IN_FULL


def _cannot_write(error):
    cause = error.__cause__
    return isinstance(cause, OSError) and cause.errno in (errno.EACCES, errno.EPERM, errno.EROFS)


def _ensure_file(model_dir, model_size, name, manifest, urls, recheck, retries, backoff, timeout, progress):
    """Make sure model_dir/name is verified and recorded in `manifest` (updated on disk too). recheck: a
    file this one is checked against has been replaced, so a recorded copy is checked by content again.
    Returns True if the file was (re)placed."""
    path = model_dir / name
    with _storage("read", path):
        problem = _recorded_problem(model_dir, model_size, name, manifest)
        if problem is None and recheck:
            problem = verify_file(model_dir, model_size, name, path)
        elif problem is not None and os.path.lexists(path) and (name not in manifest
                                                                 or _checked_in_full(model_size, name)):
            # Placed by hand, left by another tool, or recorded otherwise (a manifest edited, or copied from
            # another folder): the manifest only caches checks, so the file's own checks decide, offline.
            # A recorded file that disagrees with its record may be damaged, so that is left to the checks
            # that see every byte that matters; the others' files are fetched again (kept as .rejected).
            problem = verify_file(model_dir, model_size, name, path)
            if problem is None:
                manifest[name] = {"size": path.stat().st_size, "sha256": sha256_of(path), "source": "found on disk"}
                write_manifest(model_dir, manifest)
                return True
        if problem is None:
            return False
    rejected = path.with_name(name + ".rejected")  # where a wrong file is kept until a good copy is in place
    if os.path.lexists(path):
        print(f"{path} is wrong: {problem}. Moved aside to {rejected.name}; downloading it again.",
              file=sys.stderr)
        with _storage("move aside", path):
            os.replace(path, rejected)  # renames a link itself, never what it points to
    if name in manifest:
        del manifest[name]
        write_manifest(model_dir, manifest)
    manifest[name] = _download_from_any(model_dir, model_size, name, urls, rejected, retries, backoff,
                                        timeout, progress)
    write_manifest(model_dir, manifest)
    with _storage("remove", rejected):
        rejected.unlink(missing_ok=True)  # a verified copy is in place now (also of an earlier run)
    return True


def read_manifest(model_dir):
    """{file name: {"size": int, "sha256": str, ...}} as recorded in the folder's manifest.

    An unreadable manifest, or an entry of the wrong shape, counts as absent: those files are checked
    again as if found without a record.
    """
    path = Path(model_dir) / MANIFEST
    if not path.is_file():
        return {}
    try:
        files = json.loads(path.read_text(encoding="utf-8"))["files"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError, OSError):
        return {}
    if not isinstance(files, dict):
        return {}
    return {name: entry for name, entry in files.items()
            if isinstance(entry, dict) and type(entry.get("size")) is int and isinstance(entry.get("sha256"), str)}


def write_manifest(model_dir, files):
    text = json.dumps({"files": files}, indent=2, sort_keys=True)
    _atomic_write_text(Path(model_dir) / MANIFEST, text)


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ---- What makes a file right ---------------------------------------------------------------------

def known_sha256(model_size, name):
    """The published SHA-256 of a file of this model size, or None where none is known."""
    return KNOWN_SHA256.get((model_size, name)) or KNOWN_SHA256.get((None, name))


def verify_file(model_dir, model_size, name, path, claimed_sha256=None):
    """What is wrong with `path` as the file `name` of GPT-2 `model_size` (None: nothing). `path` may
    be a .part; the files before `name` in VERIFY_ORDER (or HF_FILES) must already be verified in
    model_dir. claimed_sha256: the SHA-256 the server named for the file it sent (the Hub's
    X-Linked-Etag), checked where no published one is known, before the content checks."""
    if not path.is_file():
        return "it is not a regular file" + (" (a link to nothing)" if path.is_symlink() else "")
    size = path.stat().st_size
    known_size = KNOWN_SIZES.get((model_size, name))
    if known_size is not None and size != known_size:
        return f"{size:,} bytes, expected {known_size:,}"
    known = known_sha256(model_size, name)
    if known is not None:
        actual = sha256_of(path)
        return None if actual == known else f"SHA-256 {actual}, expected {known}"
    if claimed_sha256 is not None:
        actual = sha256_of(path)
        if actual != claimed_sha256:
            return f"SHA-256 {actual}, but the server named {claimed_sha256} for it"
    try:
        return _content_problem(model_dir, model_size, name, path)
    except OSError:
        raise  # the disk's, not the file's (the caller's _storage names it)
    except Exception as error:  # bytes no parser expected (JSON nested 100,000 deep, ...): a wrong file, not a crash
        return f"unreadable as {name} ({type(error).__name__}: {str(error)[:200]})"


def _content_problem(model_dir, model_size, name, path):
    if name == "config.json":
        return _hf_config_problem(path, KNOWN_HPARAMS.get(model_size))
    if name == "model.safetensors":
        return _safetensors_problem(path, model_dir)
    if name == "hparams.json":
        return _hparams_problem(path, KNOWN_HPARAMS.get(model_size))
    if name == "model.ckpt.meta":
        return _meta_graph_problem(path)
    if name == "model.ckpt.index":
        return _index_problem(path, model_dir)
    if name == DATA_FILE:
        return _data_problem(path, model_dir)
    raise AssertionError(f"no check for {name}")  # every name in FILES and HF_FILES has a check above


def _hparams_problem(path, published):
    try:
        hparams = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:  # RecursionError: nested too deeply
        return f"not JSON ({error})"
    if not isinstance(hparams, dict):
        return "not a JSON object"
    return _hparams_values_problem(hparams, published)


def _hparams_values_problem(hparams, published):
    """The five numbers (OpenAI's names) must be positive whole numbers that fit together, and the
    size's published ones where known. Also checks the numbers read from the Hub's config.json."""
    wrong = [key for key in HPARAMS_KEYS if type(hparams.get(key)) is not int or hparams[key] < 1]
    if wrong:
        return f"{', '.join(wrong)} must be positive whole numbers; got {hparams!r:.200}"
    if hparams["n_embd"] % hparams["n_head"]:
        return f"n_embd {hparams['n_embd']} is not a multiple of n_head {hparams['n_head']}"
    if published is not None and {key: hparams[key] for key in HPARAMS_KEYS} != published:
        return f"{ {key: hparams[key] for key in HPARAMS_KEYS} }, but OpenAI published {published}"
    return None


def _meta_graph_problem(path):
    """model.ckpt.meta is a MetaGraphDef: a protocol-buffer message whose fields (1 to 7) are all
    length-delimited, with the graph (field 2) among them. Check that the whole file is such fields."""
    data = path.read_bytes()
    position, seen = 0, set()
    try:
        while position < len(data):
            start = position
            key, position = _varint(data, position)
            number, wire_type = key >> 3, key & 7
            if wire_type != 2 or not 1 <= number <= 7:
                return f"not a TensorFlow MetaGraphDef (field {number}, wire type {wire_type} at byte {start:,})"
            length, position = _varint(data, position)
            position += length
            seen.add(number)
    except (IndexError, ValueError):  # cut short, or a varint longer than 10 bytes
        position = len(data) + 1
    if position != len(data):
        return "it ends in the middle of a field (cut short?)"
    return None if 2 in seen else "it holds no graph"


def _index_problem(path, model_dir):
    """The index must be readable (its blocks pass their CRC32C) and list exactly the float32
    variables, with the shapes, that the verified hparams.json implies, in one data file."""
    hparams = json.loads((model_dir / "hparams.json").read_text(encoding="utf-8"))
    try:
        entries, n_shards = read_checkpoint_index(model_dir / "model.ckpt", index_path=path)
    except CheckpointError as error:
        return getattr(error, "what", str(error))
    if n_shards != 1:
        return f"it spreads the weights over {n_shards} data files; OpenAI's checkpoints have one"
    expected = openai_variable_shapes(hparams)
    missing = sorted(set(expected) - set(entries))
    extra = sorted(set(entries) - set(expected))
    wrong = sorted(name for name in set(expected) & set(entries)
                   if entries[name].shape != expected[name] or entries[name].dtype != 1)
    if missing or extra or wrong:
        return ("it disagrees with hparams.json: "
                + "; ".join(f"{label} {names[:3]}" for label, names in
                            (("missing", missing), ("unexpected", extra), ("wrong shape or dtype", wrong)) if names))
    return None


def _data_problem(path, model_dir):
    """Every tensor the verified index lists must pass its CRC32C, and nothing may follow them."""
    entries, n_shards = read_checkpoint_index(model_dir / "model.ckpt")
    end = max(entry.offset + entry.size for entry in entries.values())
    size = path.stat().st_size
    if size != end:
        return f"{size:,} bytes, but the index places the tensors in the first {end:,}"
    for name, entry in entries.items():
        try:
            read_checkpoint_tensor(model_dir / "model.ckpt", name, entry, n_shards, data_path=path)
        except CheckpointError as error:
            return getattr(error, "what", str(error))
    return None


def _verify_download(model_dir, model_size, name, path, claimed_sha256=None):
    """verify_file for a file just downloaded. Hub weights must also have a SHA-256 to be checked against
    (published, or named by the server): safetensors stores no checksum, so their content check cannot
    see a damaged weight."""
    if name == "model.safetensors" and known_sha256(model_size, name) is None and claimed_sha256 is None:
        return ("the server named no SHA-256 for it (the Hub's X-Linked-Etag header), so its bytes cannot be "
                "verified; use the Hub itself, or place a copy you trust by hand")
    return verify_file(model_dir, model_size, name, path, claimed_sha256=claimed_sha256)


def _hf_config_problem(path, published):
    """config.json must be a JSON object from which hparams_from_hf_config gets valid hparams, and they
    must be the size's published numbers."""
    try:
        config = json.loads(path.read_bytes().decode("utf-8"))
        if not isinstance(config, dict):
            return "not a JSON object"
        hparams = hparams_from_hf_config(config)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:  # CheckpointError is a ValueError
        return f"not a GPT-2 config.json ({error})"
    return _hparams_values_problem(hparams, published)


def _safetensors_problem(path, model_dir):
    """model.safetensors must be a whole safetensors file holding exactly the float32 tensors that the
    verified config.json implies (its header is read, not the tensors: safetensors stores no checksum)."""
    hparams = hparams_from_hf_config(json.loads((model_dir / "config.json").read_text(encoding="utf-8")))
    try:
        safetensors_layout(path, hparams)
    except CheckpointError as error:
        return str(error).replace(str(path), path.name)  # the caller names the folder
    return None


# ---- Fetching ------------------------------------------------------------------------------------

def _download_from_any(model_dir, model_size, name, urls, rejected, retries, backoff, timeout, progress):
    """Try each URL in turn (each with retries); return the manifest entry of the verified file."""
    path = model_dir / name
    failures = []
    for url in urls:
        try:
            return _download_one(url, path, lambda part, **claims: _verify_download(model_dir, model_size, name, part,
                                                                                    **claims),
                                 retries, backoff, timeout, progress)
        except _SourceFailed as error:
            failures.append(f"  {url}: {error}")
            if url != urls[-1]:
                print(f"{url}: {error}; trying the next server", file=sys.stderr)
    kept = (f"The file that was at {path} failed its check and is kept as {rejected}; delete it once "
            "you have a good copy.\n") if os.path.lexists(rejected) else ""
    if name in HF_FILES:
        by_hand = (f"To place the files by hand: download {' and '.join(HF_FILES)} of {HF_REPOS[model_size]} "
                   f"from the Hugging Face Hub ({urls[0].rsplit('/', 1)[0]}/<file>);\n")
        other_servers = ("Other servers: set HF_ENDPOINT / GPT2_HF_MIRROR_URL, or pass base_url= / mirror_url=; "
                         "or use OpenAI's files instead: source=\"openai\" (GPT2_WEIGHTS_SOURCE=openai).")
    else:
        by_hand = (f"To place the files by hand: download these {len(FILES)} files from any copy of OpenAI's "
                   f"GPT-2 {model_size} release ({urls[0].rsplit('/', 1)[0]}/<file>): {', '.join(FILES)};\n")
        other_servers = ("Other mirrors: set GPT2_BASE_URL / GPT2_MIRROR_URL, or pass base_url= / mirror_url=; "
                         "or use the Hugging Face Hub's copy instead: source=\"huggingface\" "
                         "(GPT2_WEIGHTS_SOURCE=huggingface).")
    raise DownloadError(
        f"Could not download {name} for GPT-2 {model_size} into {model_dir}/.\n"
        + "\n".join(failures) + "\n" + kept + by_hand +
        f"put them in {model_dir}/ and run this again: files found there are verified (published "
        "SHA-256, or their contents) and then used without any network access.\n" + other_servers
    )


def _download_one(url, path, verify, retries, backoff, timeout, progress):
    """Fetch url into <path>.part (continuing a .part this URL started), verify it, and only then give
    it its final name. Wrong bytes are discarded and the file fetched whole once more. A .part that is
    already complete (a run stopped while verifying it) is verified before any request."""
    part = path.with_name(path.name + ".part")
    state = _read_part_state(part)
    complete = state is not None and _appendable(part) and state.get("length") == part.stat().st_size
    for whole_again in (False, True):
        source = url
        if complete and not whole_again:
            source = state.get("url") or url
        else:
            _fetch_with_retries(url, part, retries, backoff, timeout, progress)
        with _storage("read", part):
            named = _read_part_state(part) or {}  # what the server named for the file, if it did
            claimed, revision = named.get("sha256"), named.get("revision")
            problem = verify(part, **({"claimed_sha256": claimed} if claimed else {}))
            if problem is None:
                entry = {"size": part.stat().st_size, "sha256": sha256_of(part), "source": source}
                if revision:
                    entry["revision"] = revision  # the Hub's commit (X-Repo-Commit): which version this is
        if problem is None:
            with _storage("give its final name to", part):
                os.replace(part, path)  # only now does the file have its final name
            _discard_part(part)  # the record of where the .part came from
            return entry
        _discard_part(part)
        if not whole_again:
            print(f"{source} gave wrong bytes ({problem}); fetching the whole file once more", file=sys.stderr)
    raise _SourceFailed(f"downloaded file rejected twice: {problem}")


def _fetch_with_retries(url, part, retries, backoff, timeout, progress):
    last_error = None
    for attempt in range(retries):
        try:
            return _fetch_into(url, part, timeout, progress)
        except urllib.error.HTTPError as error:
            if 300 <= error.code < 400:
                raise _SourceFailed(f"HTTP {error.code}: redirects in a loop or too many times") from error
            if error.code < 500:
                raise _SourceFailed(f"HTTP {error.code} {error.reason}") from error
            last_error = f"HTTP {error.code} {error.reason}"
        except (_ServerError, *_RETRYABLE) as error:
            last_error = f"{type(error).__name__}: {error}"
        if attempt + 1 < retries:
            pause = backoff * 2**attempt
            print(f"{url}: {last_error}; trying again in {pause:g} s ({attempt + 2} of {retries})", file=sys.stderr)
            time.sleep(pause)
    raise _SourceFailed(f"failed {retries} times, last: {last_error}")


def _fetch_into(url, part, timeout, progress):
    """Fetch url into part. A .part that this URL started, under a validator (ETag or Last-Modified)
    it gave, is continued with Range + If-Range: the server sends the rest only if the file is still
    that revision, otherwise the whole file (200), which replaces the .part. Any other .part is
    replaced once this URL starts sending the whole file."""
    state = _read_part_state(part)
    offset = part.stat().st_size if _appendable(part) else 0
    resume = bool(offset and state and state.get("url") == url and state.get("validator"))
    if not resume:
        offset = 0  # another server's .part stays until this one sends a file to replace it
    headers = {"User-Agent": "gpt_download"}
    if resume:
        headers |= {"Range": f"bytes={offset}-", "If-Range": state["validator"]}
    claims = []  # what the server names for the file on a redirect (the Hub's X-Linked-Etag, X-Repo-Commit)
    opener = urllib.request.build_opener(_NotingRedirects(claims))
    try:
        response = opener.open(urllib.request.Request(url, headers=headers), timeout=timeout)
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
        with _open_for_writing(part, append) as file_descriptor, \
                tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                     desc=part.name[:-5], disable=not progress) as bar:
            window_start, window_bytes = time.monotonic(), 0
            while chunk := response.read1(CHUNK_BYTES):
                with _storage("write", part):
                    _write_all(file_descriptor, chunk)
                received += len(chunk)
                window_bytes += len(chunk)
                bar.update(len(chunk))
                elapsed = time.monotonic() - window_start
                if elapsed >= timeout:
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


# ---- Writing files safely ------------------------------------------------------------------------

def _appendable(part):
    """True if part is a regular file of our own: not a link, and no other name shares its bytes."""
    try:
        info = os.lstat(part)
    except FileNotFoundError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_nlink == 1


def _part_state_path(part):
    return part.with_name(part.name + ".json")


def _read_part_state(part):
    """Where a .part came from: {"url", "validator", "length"}, or None if unknown."""
    path = _part_state_path(part)
    if path.is_symlink() or not path.is_file():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError, OSError):
        return None
    return state if isinstance(state, dict) else None


def _write_part_state(part, state):
    _atomic_write_text(_part_state_path(part), json.dumps(state))


def _discard_part(part, keep_bytes=False):
    """Remove a .part (unless keep_bytes) and the record of where it came from."""
    with _storage("remove", part):
        _part_state_path(part).unlink(missing_ok=True)
        if not keep_bytes:
            part.unlink(missing_ok=True)


@contextlib.contextmanager
def _open_for_writing(path, append):
    """A file descriptor open for writing at `path`, refusing to follow a symbolic link: anything
    already at that name is removed first (a link itself, never its target), and the new file is
    created exclusively, so a link planted in between makes the open fail instead of being followed."""
    with _storage("open for writing", path):
        if append and not _appendable(path):
            raise DownloadError(f"{path} is a link, or shares its bytes with another name; refusing to write "
                                "through it. Delete it and run again.")
        if not append:
            path.unlink(missing_ok=True)
        flags = os.O_WRONLY | _NOFOLLOW | _BINARY | (os.O_APPEND if append else os.O_CREAT | os.O_EXCL)
        file_descriptor = os.open(path, flags, 0o644)
    try:
        yield file_descriptor
    finally:
        os.close(file_descriptor)


def _write_all(file_descriptor, data):
    view = memoryview(data)
    while view:
        view = view[os.write(file_descriptor, view):]


def _atomic_write_text(path, text):
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    try:
        with _open_for_writing(tmp, append=False) as file_descriptor, _storage("write", tmp):
            _write_all(file_descriptor, text.encode("utf-8"))
        with _storage("give its final name to", tmp):
            os.replace(tmp, path)
    except DownloadError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _storage(action, path):
    """Turn an OSError from the disk into a DownloadError naming the file, its folder and the fix."""
    try:
        yield
    except DownloadError:
        raise
    except OSError as error:
        if isinstance(error, (ConnectionError, TimeoutError, urllib.error.URLError)):
            raise  # the network's, not the disk's
        folder = Path(path).parent
        if error.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            fix = (f"free space on the disk that holds {folder}/ (GPT-2's files take about 0.5 GB for 124M, "
                   "1.4 GB for 355M, 3.1 GB for 774M and 6.2 GB for 1558M), or pass models_dir= a folder on "
                   "a disk with room. A finished part of a download is kept as <file>.part and continued "
                   "next time; delete it to free its space now.")
        elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            fix = (f"make {folder}/ and its files readable and writable for this user, or pass models_dir= a "
                   "folder you can write to.")
        else:
            fix = f"check that {folder}/ is a folder on a working disk that you can write to, then run again."
        raise DownloadError(f"Could not {action} {path} ({error.strerror or error}). To fix: {fix}") from error


@contextlib.contextmanager
def _folder_lock(model_dir):
    """Hold `<model_dir>.lock` (beside the folder) exclusively: a second process downloading the same
    size waits here, then finds the files verified. The lock file is left in place; an OS lock, not
    the file's existence, is what excludes, so a crashed process never leaves a stale lock."""
    lock_path = model_dir.with_name(model_dir.name + ".lock")
    with _storage("open the lock file", lock_path):
        if lock_path.is_symlink():
            lock_path.unlink()
        file_descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o644)
    try:
        with _storage("lock", lock_path):
            if not _try_lock(file_descriptor):
                print(f"Waiting for another process that is downloading into {model_dir}/ "
                      f"(it holds {lock_path})...", file=sys.stderr)
                while not _try_lock(file_descriptor):
                    time.sleep(0.1)
        try:
            yield
        finally:
            _unlock(file_descriptor)
    finally:
        os.close(file_descriptor)


def _unlock(file_descriptor):
    if os.name == "nt":
        import msvcrt
        os.lseek(file_descriptor, 0, os.SEEK_SET)
        msvcrt.locking(file_descriptor, msvcrt.LK_UNLCK, 1)
    else:
        import fcntl
        fcntl.flock(file_descriptor, fcntl.LOCK_UN)


def _try_lock(file_descriptor):
    """Take the lock without waiting: True if taken."""
    try:
        if os.name == "nt":
            import msvcrt
            msvcrt.locking(file_descriptor, msvcrt.LK_NBLCK, 1)
        else:
            import fcntl
            fcntl.flock(file_descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK, getattr(errno, "EDEADLOCK", 0)):
            return False
        raise
    return True


# --------------------------------------------------------------------------------------------------
# Reading OpenAI's TensorFlow checkpoints, without TensorFlow
# --------------------------------------------------------------------------------------------------
#
# Why not tf.train.load_checkpoint: TensorFlow and triton (which pip installs beside PyTorch's
# default Linux build, and which Colab has) each carry their own copy of LLVM. Once TensorFlow's
# native libraries are loaded into a process, the first import of triton there aborts the whole
# process ("LLVM ERROR: inconsistency in registered CommandLine options"), and PyTorch imports
# triton lazily, for instance the first time a model is built on the meta device. So the process
# that runs the model never imports TensorFlow: the reader below reads the checkpoint's files
# itself, and 03_pretrained_weights' write_gpt2_checkpoint runs TensorFlow in a child process.
#
# The format, TensorFlow's "tensor bundle" (what tf.train.Saver writes):
# - model.ckpt.index is an SSTable (LevelDB's table format): sorted key/value records in blocks,
#   each block followed by a 1-byte compression type and a CRC32C, and a 48-byte footer that
#   points at the block index. The record with key "" holds a BundleHeaderProto; every other key is
#   a variable name whose value is a BundleEntryProto: dtype, shape, shard, offset and size in the
#   data file, and a CRC32C of the tensor's bytes.
# - model.ckpt.data-00000-of-00001 holds each tensor's raw little-endian bytes at that offset.
# The two messages are protocol buffers, decoded below with a few lines of our own.

class CheckpointError(ValueError):
    """A checkpoint file is damaged, or not a checkpoint this reader understands."""


_TF_DTYPES = {1: "<f4", 2: "<f8", 3: "<i4", 4: "u1", 5: "<i2", 6: "i1", 9: "<i8", 10: "?", 19: "<f2"}
_SSTABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_BYTES = 48


def _damaged(path, what):
    error = CheckpointError(f"{path} is damaged or not a TensorFlow checkpoint ({what}). Delete the "
                            f"model's folder {Path(path).parent}/ and run again to download it afresh.")
    error.what = what  # the bare finding, for gpt_download's own checks
    return error


def _varint(buffer, position):
    """Decode a protocol-buffer varint at `position`: (value, position after it)."""
    value = shift = 0
    while True:
        byte = buffer[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7
        if shift >= 70:  # a 64-bit varint takes at most 10 bytes; a longer one would grow without end
            raise ValueError(f"a varint longer than 10 bytes at byte {position - 10:,}")


def _protobuf_fields(message):
    """Yield (field number, value) for each field of a serialized protocol-buffer message. Varints
    come out as ints, fixed32 as ints, length-delimited fields as bytes (fixed64 as bytes)."""
    position = 0
    while position < len(message):
        key, position = _varint(message, position)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, position = _varint(message, position)
        elif wire_type == 1:
            value, position = message[position:position + 8], position + 8
        elif wire_type == 2:
            length, position = _varint(message, position)
            value, position = message[position:position + length], position + length
        elif wire_type == 5:
            value, position = int.from_bytes(message[position:position + 4], "little"), position + 4
        else:
            raise ValueError(f"unsupported protocol-buffer wire type {wire_type}")
        yield number, value


def _block(data, handle, path):
    """The contents of the SSTable block at `handle` (offset, size), after checking its CRC32C."""
    offset, size = handle
    if offset + size + 5 > len(data):
        raise _damaged(path, "a block runs past the end of the file")
    contents, compression = data[offset:offset + size], data[offset + size]
    stored = int.from_bytes(data[offset + size + 1:offset + size + 5], "little")
    if crc32c_masked(data[offset:offset + size + 1]) != stored:
        raise _damaged(path, f"CRC32C mismatch in the block at byte {offset}")
    if compression != 0:
        raise _damaged(path, f"block compression type {compression}; only uncompressed blocks are read")
    return contents


def _block_records(contents):
    """Yield (key, value) for each record of an SSTable block: keys share a prefix with the key before."""
    n_restarts = int.from_bytes(contents[-4:], "little")
    end = len(contents) - 4 * (n_restarts + 1)  # the restart points after the records are not needed
    position, key = 0, b""
    while position < end:
        shared, position = _varint(contents, position)
        unshared, position = _varint(contents, position)
        value_length, position = _varint(contents, position)
        key = key[:shared] + contents[position:position + unshared]
        position += unshared
        yield key, contents[position:position + value_length]
        position += value_length


def _sstable_records(path):
    """Every (key, value) record of an SSTable file, in key order."""
    data = Path(path).read_bytes()
    if len(data) < _FOOTER_BYTES or int.from_bytes(data[-8:], "little") != _SSTABLE_MAGIC:
        raise _damaged(path, "no SSTable footer")
    footer = data[-_FOOTER_BYTES:]
    _, position = _varint(footer, _varint(footer, 0)[1])  # skip the meta-index block's handle
    index_offset, position = _varint(footer, position)
    index_size, _ = _varint(footer, position)
    for _, handle in _block_records(_block(data, (index_offset, index_size), path)):
        offset, position = _varint(handle, 0)
        size, _ = _varint(handle, position)
        yield from _block_records(_block(data, (offset, size), path))


# Where one variable lies, from the index file. crc32c is the masked CRC32C of its bytes.
TensorEntry = collections.namedtuple("TensorEntry", "dtype shape shard offset size crc32c")


def _tensor_entry(name, value, path):
    fields = {1: 0, 2: b"", 3: 0, 4: 0, 5: 0, 6: 0}  # proto3 leaves out fields that are 0
    shape = []
    for number, field in _protobuf_fields(value):
        if number == 2:  # TensorShapeProto: repeated Dim (field 2), each with size (field 1)
            shape = [dict(_protobuf_fields(dim)).get(1, 0) for n, dim in _protobuf_fields(field) if n == 2]
        elif number == 7:
            raise CheckpointError(f"{path}: {name} is stored in slices (a partitioned variable); "
                                  "this reader reads whole tensors only")
        else:
            fields[number] = field
    if not all(type(value) is int for value in (*shape, *(fields[number] for number in (1, 3, 4, 5, 6)))):
        raise ValueError(f"{name}: a field of the wrong wire type")  # e.g. an offset sent as bytes
    return TensorEntry(dtype=fields[1], shape=tuple(shape), shard=fields[3], offset=fields[4],
                       size=fields[5], crc32c=fields[6])


def read_checkpoint_index(ckpt_path, index_path=None):
    """The variables of a TensorFlow checkpoint, from its .index file: ({name: TensorEntry}, number of
    data shards). Reads only the index; needs no TensorFlow. index_path: read the index from this file
    instead of `<ckpt_path>.index` (a download not yet under its final name)."""
    path = Path(index_path or str(ckpt_path) + ".index")
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: a TensorFlow checkpoint `{ckpt_path}` needs "
                                f"{path.name} beside its data file")
    entries, n_shards = {}, None
    try:
        for key, value in _sstable_records(path):
            if key == b"":  # BundleHeaderProto: num_shards (1), endianness (2: 0 little, 1 big)
                header = dict(_protobuf_fields(value))
                if header.get(2, 0) != 0:
                    raise CheckpointError(f"{path}: a big-endian checkpoint; this reader reads little-endian ones")
                n_shards = header.get(1, 1)
            else:
                name = key.decode("utf-8")
                entries[name] = _tensor_entry(name, value, path)
    except CheckpointError:
        raise
    except (IndexError, TypeError, ValueError, UnicodeDecodeError) as error:  # malformed records
        raise _damaged(path, f"unreadable index: {error}") from error
    if n_shards is None:
        raise _damaged(path, "no bundle header")
    return entries, n_shards


def checkpoint_variables(ckpt_path):
    """The variables stored in a TensorFlow checkpoint: {name: shape}, sorted by name."""
    entries, _ = read_checkpoint_index(ckpt_path)
    return {name: entry.shape for name, entry in sorted(entries.items())}


def read_checkpoint_tensor(ckpt_path, name, entry, n_shards=1, data_path=None):
    """Read one variable's bytes from the data file, check them against the index's CRC32C, and return
    them as a numpy array of the entry's dtype and shape. data_path: read from this file instead of the
    shard the entry names (a download not yet under its final name)."""
    data_path = Path(data_path or f"{ckpt_path}.data-{entry.shard:05d}-of-{n_shards:05d}")
    if entry.dtype not in _TF_DTYPES:
        raise CheckpointError(f"{data_path}: {name} has TensorFlow dtype {entry.dtype}, which this reader "
                              "does not read")
    dtype = np.dtype(_TF_DTYPES[entry.dtype])
    if entry.size != dtype.itemsize * int(np.prod(entry.shape)):
        raise _damaged(Path(f"{ckpt_path}.index"), f"{name}: {entry.size} bytes for shape {entry.shape}")
    if not data_path.is_file():
        raise FileNotFoundError(f"{data_path} is missing, and the checkpoint's index places {name} in it: "
                                f"put that file in {data_path.parent}/, or delete the folder and download again")
    raw = np.empty(entry.size, np.uint8)
    with open(data_path, "rb") as file:
        file.seek(entry.offset)
        n_read = file.readinto(raw)
    if n_read != entry.size:
        raise _damaged(data_path, f"{name} needs bytes {entry.offset:,} to {entry.offset + entry.size:,}, "
                                  f"the file ends at {entry.offset + n_read:,}")
    if crc32c_masked(raw) != entry.crc32c:
        raise _damaged(data_path, f"the bytes of {name} fail their CRC32C check")
    return raw.view(dtype).reshape(entry.shape).astype(dtype.newbyteorder("="), copy=False)


def load_gpt2_params_from_tf_ckpt(ckpt_path, hparams):
    """Read an OpenAI GPT-2 checkpoint into nested numpy arrays:

    {"wte", "wpe", "g", "b", "blocks": [{"ln_1": {"g", "b"}, "attn": {"c_attn": {"w", "b"}, ...},
                                         "ln_2": ..., "mlp": {"c_fc": ..., "c_proj": ...}}, ...]}

    ("g" and "b" at the top are the final layer norm, ln_f.) The leading singleton axis of every
    [1, in, out] weight is squeezed away, so a "w" is [in, out]. Every tensor's bytes are checked
    against the CRC32C in the index. Needs no TensorFlow.
    """
    entries, n_shards = read_checkpoint_index(ckpt_path)
    expected = openai_variable_shapes(hparams)
    missing = sorted(set(expected) - set(entries))
    if missing:
        raise ValueError(f"{ckpt_path} lacks {len(missing)} variables hparams.json implies, "
                         f"e.g. {missing[:3]}; do hparams.json and the checkpoint belong together?")
    extra = sorted(set(entries) - set(expected))
    if extra:
        raise ValueError(f"{ckpt_path} has {len(extra)} variables hparams.json does not imply, e.g. {extra[:3]}; "
                         "do hparams.json and the checkpoint belong together?")
    for name, shape in expected.items():
        if entries[name].shape != shape:
            raise ValueError(f"{name} has shape {entries[name].shape} in {ckpt_path}; "
                             f"hparams.json implies {shape}")
    variables = {name: read_checkpoint_tensor(ckpt_path, name, entries[name], n_shards) for name in expected}
    return variables_to_params(variables, hparams)


# ---------------------------------------------------------------------------------------------------
# Reading Hugging Face's safetensors files
#
# The Hugging Face Hub serves the same four models (openai-community/gpt2, -medium, -large, -xl) as
# model.safetensors and config.json. The tensors are OpenAI's, under other names, with the leading 1 of
# the weights already dropped: "h.3.attn.c_attn.weight" [768, 2304] is "model/h3/attn/c_attn/w"
# [1, 768, 2304]. Files written by transformers' save_pretrained put "transformer." in front of every
# name. Besides the weights, older files also hold each block's causal-mask buffers ("attn.bias",
# "attn.masked_bias"), which are not weights and are skipped; "lm_head.weight", when present, is the
# token embedding again (GPT-2 ties them) and must equal it.

HF_TO_OPENAI = {  # name within a block on the Hub -> name within a block in OpenAI's checkpoint
    "ln_1.weight": "ln_1/g", "ln_1.bias": "ln_1/b",
    "attn.c_attn.weight": "attn/c_attn/w", "attn.c_attn.bias": "attn/c_attn/b",
    "attn.c_proj.weight": "attn/c_proj/w", "attn.c_proj.bias": "attn/c_proj/b",
    "ln_2.weight": "ln_2/g", "ln_2.bias": "ln_2/b",
    "mlp.c_fc.weight": "mlp/c_fc/w", "mlp.c_fc.bias": "mlp/c_fc/b",
    "mlp.c_proj.weight": "mlp/c_proj/w", "mlp.c_proj.bias": "mlp/c_proj/b",
}
HF_TOP_LEVEL = {"wte.weight": "model/wte", "wpe.weight": "model/wpe", "ln_f.weight": "model/ln_f/g",
                "ln_f.bias": "model/ln_f/b"}
HF_BUFFERS = ("attn.bias", "attn.masked_bias")  # causal masks stored by older versions of transformers


def openai_name_of_hf(name):
    """OpenAI's variable name for a tensor name of a Hugging Face GPT-2 file; None for a mask buffer and
    for lm_head.weight (the tied output head); a CheckpointError for anything else."""
    bare = name.removeprefix("transformer.")
    if bare in HF_TOP_LEVEL:
        return HF_TOP_LEVEL[bare]
    if bare == "lm_head.weight":
        return None
    parts = bare.split(".", 2)  # "h", the block's index, the name within the block
    if len(parts) == 3 and parts[0] == "h" and parts[1].isdigit():
        if parts[2] in HF_BUFFERS:
            return None
        if parts[2] in HF_TO_OPENAI:
            return f"model/h{parts[1]}/{HF_TO_OPENAI[parts[2]]}"
    raise CheckpointError(f"{name!r} is not a tensor of a Hugging Face GPT-2 model")


def hparams_from_hf_config(config):
    """OpenAI's hparams (n_vocab, n_ctx, n_embd, n_head, n_layer) from a Hugging Face config.json dict."""
    try:
        return {"n_vocab": config["vocab_size"], "n_ctx": config.get("n_ctx", config["n_positions"]),
                "n_embd": config["n_embd"], "n_head": config["n_head"], "n_layer": config["n_layer"]}
    except KeyError as error:
        raise CheckpointError(f"config.json lacks {error.args[0]!r}: is it a GPT-2 model's config?") from None


_SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
                       "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


def safetensors_layout(path, hparams):
    """Check a GPT-2 model.safetensors against hparams from its header alone (no tensor is read):
    every tensor hparams implies must be there exactly once, float32, of its shape, and nothing else but
    the mask buffers and the tied lm_head. Returns {name in the file: OpenAI's name, or None for a tensor
    to skip}; a CheckpointError names the file and the tensor."""
    from safetensors import SafetensorError, safe_open

    expected = openai_variable_shapes(hparams)
    layout, found = {}, {}
    try:
        with safe_open(str(path), framework="numpy") as tensors:
            for name in tensors.keys():
                openai_name = openai_name_of_hf(name)
                layout[name] = openai_name
                if openai_name is None:
                    continue
                if openai_name in found:
                    raise CheckpointError(f"{path} holds {openai_name} twice (with and without 'transformer.')")
                if openai_name not in expected:
                    raise CheckpointError(f"{path} has {name}, which config.json's sizes do not imply "
                                          f"(n_layer={hparams['n_layer']}): do the two files belong together?")
                tensor = tensors.get_slice(name)
                dtype, shape = tensor.get_dtype(), tuple(tensor.get_shape())
                wanted = expected[openai_name][1:] if len(expected[openai_name]) == 3 else expected[openai_name]
                if dtype != "F32" or shape != wanted:
                    raise CheckpointError(f"{name} in {path} is {_SAFETENSORS_DTYPES.get(dtype, dtype)} {list(shape)}; "
                                          f"config.json implies float32 {list(wanted)}")
                found[openai_name] = name
    except SafetensorError as error:
        raise CheckpointError(f"{path} is damaged or not a safetensors file ({error}). Delete it and "
                              "download it again.") from None
    missing = sorted(set(expected) - set(found))
    if missing:
        raise CheckpointError(f"{path} lacks {len(missing)} tensors config.json implies, e.g. {missing[:3]}")
    return layout


def safetensors_variables(path):
    """The tensors of a GPT-2 model.safetensors under OpenAI's names and shapes, from its header alone:
    {"model/h0/attn/c_attn/w": (1, 768, 2304), ...}, like checkpoint_variables for OpenAI's files
    (the mask buffers and the tied lm_head are left out: they are not variables of OpenAI's checkpoint)."""
    from safetensors import SafetensorError, safe_open

    shapes = {}
    try:
        with safe_open(str(path), framework="numpy") as tensors:
            for name in tensors.keys():
                openai_name = openai_name_of_hf(name)
                if openai_name is not None:
                    shape = tuple(tensors.get_slice(name).get_shape())
                    shapes[openai_name] = (1, *shape) if openai_name.endswith("/w") and len(shape) == 2 else shape
    except SafetensorError as error:
        raise CheckpointError(f"{path} is damaged or not a safetensors file ({error})") from None
    return shapes


def load_gpt2_params_from_safetensors(path, hparams):
    """Read a Hugging Face GPT-2 model.safetensors into the same nested arrays as
    load_gpt2_params_from_tf_ckpt (so everything that loads OpenAI's checkpoint loads it unchanged).

    The file is first checked by safetensors_layout; a tied lm_head.weight must equal wte.weight.
    A CheckpointError names the file and the tensor.
    """
    from safetensors import safe_open

    layout = safetensors_layout(path, hparams)
    variables, lm_head = {}, None
    with safe_open(str(path), framework="numpy") as tensors:
        for name, openai_name in layout.items():
            if openai_name is not None:
                variables[openai_name] = tensors.get_tensor(name)
            elif name.removeprefix("transformer.") == "lm_head.weight":
                lm_head = tensors.get_tensor(name)
    if lm_head is not None and not np.array_equal(lm_head, variables["model/wte"]):
        raise CheckpointError(f"{path}: lm_head.weight differs from wte.weight, but GPT-2 ties them")
    return variables_to_params(variables, hparams)


# CRC32C (Castagnoli), the checksum TensorFlow stores for every block and tensor. Python has no
# built-in CRC32C, and a byte-at-a-time loop in Python would take minutes for 500 MB, so long inputs
# are cut into lanes of _LANE_BYTES that numpy advances together, 4 bytes a step, through two tables
# of 65,536 entries (one per half of the 4 bytes). The lanes' CRCs are then joined using the fact
# that a CRC is linear: continuing a CRC over more bytes is a fixed linear map of the old value
# (advancing it over that many zero bytes: over_lane below) XOR the CRC of the new bytes alone.
_CRC32C_POLYNOMIAL = 0x82F63B78  # bit-reversed 0x1EDC6F41
_LANE_BYTES = 4096
_LANES_PER_PASS = 8192  # 32 MB at a time: a step reads one word per lane, and the 8192 cache lines it
# reads from (512 KB) stay in the CPU cache for the next 15 steps


def _crc32c_tables():
    byte_table = np.zeros(256, np.uint32)  # one byte's effect on the CRC register
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (_CRC32C_POLYNOMIAL if crc & 1 else 0)
        byte_table[byte] = crc

    def advance(register, n_bytes):  # the register after n_bytes zero bytes
        for _ in range(n_bytes):
            register = byte_table[register & 0xFF] ^ (register >> 8)
        return register

    halves = np.arange(65536, dtype=np.uint32)
    first_half = advance(halves, 4)  # bytes 0-1 of a 4-byte step, then bytes 2-3 still to come
    second_half = advance(halves << 16, 4)
    # Advancing a register over one lane of zero bytes, as 4 tables indexed by the register's bytes.
    bits = advance(np.uint32(1) << np.arange(32, dtype=np.uint32), _LANE_BYTES)  # where each bit goes
    over_lane = [[0] * 256 for _ in range(4)]
    for position in range(4):
        for byte in range(256):
            for bit in range(8):
                if byte >> bit & 1:
                    over_lane[position][byte] ^= int(bits[8 * position + bit])
    return byte_table.tolist(), first_half, second_half, over_lane


_CRC32C = None  # the tables, built on first use (about 0.1 s)


def crc32c(data):
    """CRC32C of bytes (or of a numpy array's bytes), as TensorFlow and LevelDB compute it."""
    global _CRC32C
    if _CRC32C is None:
        _CRC32C = _crc32c_tables()
    byte_table, first_half, second_half, over_lane = _CRC32C
    if isinstance(data, np.ndarray):
        view = np.ascontiguousarray(data).reshape(-1).view(np.uint8)  # the bytes in C order
    else:
        view = np.frombuffer(data, np.uint8)
    n_lanes = len(view) // _LANE_BYTES if len(view) >= 16 * _LANE_BYTES else 0
    crc = 0xFFFFFFFF
    for first in range(0, n_lanes, _LANES_PER_PASS):
        lanes = view[first * _LANE_BYTES:min(first + _LANES_PER_PASS, n_lanes) * _LANE_BYTES]
        words = lanes.view("<u4").reshape(-1, _LANE_BYTES // 4)  # [lane, step]
        registers = np.zeros(len(words), np.uint32)  # each lane's CRC register, from 0
        index, low, high = (np.empty_like(registers) for _ in range(3))
        for step in range(words.shape[1]):
            registers ^= words[:, step]
            np.take(first_half, np.bitwise_and(registers, 0xFFFF, out=index), out=low)
            np.take(second_half, np.right_shift(registers, 16, out=index), out=high)
            np.bitwise_xor(low, high, out=registers)
        for register in registers.tolist():
            crc = (over_lane[0][crc & 0xFF] ^ over_lane[1][(crc >> 8) & 0xFF]
                   ^ over_lane[2][(crc >> 16) & 0xFF] ^ over_lane[3][crc >> 24] ^ register)
    for byte in view[n_lanes * _LANE_BYTES:].tobytes():
        crc = byte_table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def crc32c_masked(data):
    """The masked CRC32C that TensorFlow and LevelDB store (rotated and offset, so that a CRC of data
    that itself contains CRCs stays well distributed)."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def openai_variable_shapes(hparams):
    """Every variable of an OpenAI GPT-2 checkpoint with these hparams: {name: shape}."""
    d, vocab, ctx = hparams["n_embd"], hparams["n_vocab"], hparams["n_ctx"]
    shapes = {"model/wte": (vocab, d), "model/wpe": (ctx, d)}
    for layer in range(hparams["n_layer"]):
        prefix = f"model/h{layer}"
        shapes |= {
            f"{prefix}/ln_1/g": (d,), f"{prefix}/ln_1/b": (d,),
            f"{prefix}/attn/c_attn/w": (1, d, 3 * d), f"{prefix}/attn/c_attn/b": (3 * d,),
            f"{prefix}/attn/c_proj/w": (1, d, d), f"{prefix}/attn/c_proj/b": (d,),
            f"{prefix}/ln_2/g": (d,), f"{prefix}/ln_2/b": (d,),
            f"{prefix}/mlp/c_fc/w": (1, d, 4 * d), f"{prefix}/mlp/c_fc/b": (4 * d,),
            f"{prefix}/mlp/c_proj/w": (1, 4 * d, d), f"{prefix}/mlp/c_proj/b": (d,),
        }
    shapes |= {"model/ln_f/g": (d,), "model/ln_f/b": (d,)}
    return shapes


def variables_to_params(variables, hparams):
    """{OpenAI variable name: array} -> the nested dict load_gpt2_params_from_tf_ckpt returns."""
    params = {"blocks": [{} for _ in range(hparams["n_layer"])]}
    for name, array in variables.items():
        target, keys = params_location(params, name)
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        target[keys[-1]] = array[0] if array.ndim == 3 else array
    return params


def params_location(params, name):
    """Where an OpenAI variable lives in the nested params: (the dict to start from, the keys below it).
    03_pretrained_weights reads params through it too (checkpoint_array).
    "model/h3/attn/c_attn/w" -> (params["blocks"][3], ["attn", "c_attn", "w"]); "model/ln_f/g" -> (params, ["g"])."""
    parts = name.split("/")[1:]  # drop "model/"
    if parts[0].startswith("h"):
        return params["blocks"][int(parts[0][1:])], parts[1:]
    if parts[0] == "ln_f":
        return params, parts[1:]
    return params, parts


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Download (and verify) GPT-2's pretrained weights: OpenAI's "
                                     "TensorFlow checkpoint files, or the Hugging Face Hub's safetensors copy.")
    parser.add_argument("model_size", choices=MODEL_SIZES)
    parser.add_argument("--models-dir", default="models/gpt2")
    parser.add_argument("--source", choices=SOURCES, default=None,
                        help=f"where to download from (default: ${SOURCE_VARIABLE}, else openai)")
    arguments = parser.parse_args()
    try:
        folder = ensure_gpt2_files(arguments.model_size, arguments.models_dir, source=arguments.source)
    except (DownloadError, ValueError) as error:
        sys.exit(f"error: {error}")  # the message says what to do; a traceback would bury it
    files = source_files(arguments.source)
    print(f"GPT-2 {arguments.model_size}: all {len(files)} files verified in {folder}/")
