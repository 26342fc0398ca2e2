"""What makes a GPT-2 file right, and the folder's manifest, which records the files found right.

A file is verified by its published SHA-256 where one is known (every 124M file, and the tokenizer and
`checkpoint` files of every size), otherwise by content: hparams.json (or the Hub's config.json) must
hold the size's published numbers, the index must list exactly the variables hparams.json implies,
every tensor in the data file must pass the index's CRC32C, the graph file must consist of a
MetaGraphDef's fields with the graph among them (its framing; the graph is not read), and
model.safetensors must hold exactly the float32 tensors config.json implies. Bytes no parser expects
(JSON nested too deeply, ...) fail verification like any wrong bytes. A downloaded model.safetensors
must also have a SHA-256 to be checked against, published or named by the server: safetensors stores
no checksum, so its content check cannot see a damaged weight (a copy placed by hand can only be
checked by content, and by hash for 124M).

`manifest.json` caches these checks: each verified file's size and SHA-256, where it came from (and
the Hub's revision, X-Repo-Commit), and what it was on disk when verified: its size, modification time,
inode and status-change time (ctime, which no program can set back, unlike the modification time). A later
call reads nothing of a file whose four are unchanged; any other recorded file is hashed again and
compared with its record. Bytes changed with all four kept (damage on the disk itself) go unseen: delete
manifest.json to have every file verified again. A record of a downloaded 124M file must carry the published SHA-256;
files recorded by 03's writers (WRITER_SOURCE) are the user's own and exempt.
"""

import hashlib
import json
import os
from pathlib import Path

from gpt2_support.catalogue import DATA_FILE, HPARAMS_KEYS, KNOWN_HPARAMS, KNOWN_SIZES, known_sha256
from gpt2_support.files import atomic_write_path, open_for_writing, sha256_of, storage_errors, write_all
from gpt2_support.hub import hparams_from_hf_config, safetensors_layout
from gpt2_support.layout import CheckpointError, openai_variable_shapes
from gpt2_support.tf_checkpoint import check_checkpoint_data, meta_graph_problem, read_checkpoint_index

__all__ = ["MANIFEST", "WRITER_SOURCE", "read_manifest", "write_manifest", "record_written_files",
           "verify_file"]

MANIFEST = "manifest.json"
# The manifest's "source" for files that 03's writers wrote (write_gpt2_checkpoint, and write_gpt2_safetensors
# for the Hub's format): the user's own files, exempt from the published hashes.
WRITER_SOURCE = "write_gpt2_checkpoint"
# Files whose checks see every byte that matters without a published SHA-256: every tensor's CRC32C (the
# data file, whose CRC32Cs and offsets come from the index: a wrong index fails it), every value (the two JSON
# files). Not the graph file (its framing only) nor a safetensors file (its header only; it stores no checksum).
CHECKED_IN_FULL = {"hparams.json", "config.json", "model.ckpt.index", DATA_FILE}


# ---- The manifest ---------------------------------------------------------------------------------

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
    manifest = {name: entry for name, entry in files.items()
                if isinstance(entry, dict) and type(entry.get("size")) is int and isinstance(entry.get("sha256"), str)}
    for entry in manifest.values():
        on_disk = entry.get("on_disk")
        if on_disk is not None and not (isinstance(on_disk, dict)
                                        and all(type(on_disk.get(key)) is int for key in _IDENTITY)):
            del entry["on_disk"]  # unreadable: the file is hashed instead
    return manifest


def write_manifest(model_dir, files):
    """Replace the folder's manifest with `files` ({name: record}), atomically.

    A file's "on_disk" record (see recorded_problem) is left out where the file was modified in the same
    tick of the file system's clock as this write: a change within that tick could leave its
    modification time as recorded, so such a file is hashed next time instead (git's "racily clean"
    entries). The clock is read from the new manifest file itself, so it has the disk's own granularity.
    (A change made while a file was being verified, within the tick of its previous change, would still
    go unseen; the folder's lock keeps the downloader's own processes from making one.)
    """
    path = Path(model_dir) / MANIFEST
    with storage_errors("write", path), atomic_write_path(path) as partial:
        with open_for_writing(partial, append=False) as file_descriptor:
            now = os.fstat(file_descriptor).st_mtime_ns  # the file was just created: the disk's "now"
            files = {name: {key: value for key, value in entry.items()
                            if key != "on_disk" or value["mtime_ns"] < now}
                     for name, entry in files.items()}
            write_all(file_descriptor, json.dumps({"files": files}, indent=2, sort_keys=True).encode("utf-8"))


def record_written_files(model_dir, names):
    """Record files that 03's writers wrote into model_dir as verified, in a new manifest: their size and
    SHA-256, with the source WRITER_SOURCE, which exempts them from the published hashes (they are the
    user's own weights). download_and_load_gpt2 then finds the folder complete and downloads nothing."""
    write_manifest(model_dir, {name: _record(Path(model_dir) / name, fields={"source": WRITER_SOURCE})
                               for name in names})


# What a file's stat says of it that any change of its bytes changes too (but within one tick of the clock).
_IDENTITY = ("size", "mtime_ns", "ctime_ns", "inode")


def _identity(info):
    return {"size": info.st_size, "mtime_ns": info.st_mtime_ns, "ctime_ns": info.st_ctime_ns, "inode": info.st_ino}


def _record(path, sha256=None, info=None, fields=None):
    """A manifest record of the file at `path`: its size and SHA-256 (hashed now unless given), the other
    `fields` of its entry, and what it is on disk (its stat `info`, taken before the file was read: a
    change after that shows as another)."""
    info = info or path.stat()
    sha256 = sha256 or sha256_of(path)
    on_disk = {**_identity(info), "sha256": sha256}
    return {**(fields or {}), "size": info.st_size, "sha256": sha256, **({"on_disk": on_disk} if info.st_ino else {})}


def record_after_rename(path, record):
    """`record` (of a file verified under another name, such as its .part) with the status-change time the
    rename gave the file at `path`; unchanged if the file's size, modification time or inode differ."""
    on_disk, info = record.get("on_disk"), path.stat()
    if on_disk is None or [on_disk[key] for key in ("size", "mtime_ns", "inode")] != [
            info.st_size, info.st_mtime_ns, info.st_ino]:
        return record
    return {**record, "on_disk": {**on_disk, "ctime_ns": info.st_ctime_ns}}


def recorded_problem(model_dir, model_size, name, manifest):
    """None if the manifest records `name` and the file on disk is what it recorded; else what is wrong.

    A file whose size, modification time and inode are those recorded when it was verified ("on_disk",
    which repeats the SHA-256 it had, so that a record edited afterwards is not vouched for) is taken as
    unchanged without being read. Any other is hashed; if it still has the recorded SHA-256, its record
    is brought up to date in `manifest` (in memory: the caller writes it). A record of a downloaded file
    whose SHA-256 is not the published one is not trusted either (WRITER_SOURCE's are the user's own).
    """
    path, entry = Path(model_dir) / name, manifest.get(name)
    if entry is None:
        return "it is not in the manifest"
    published = known_sha256(model_size, name)
    if published is not None and entry["sha256"] != published and entry.get("source") != WRITER_SOURCE:
        return f"the manifest records SHA-256 {entry['sha256']}, not the published {published}"
    changed = "it changed after it was verified (its size or SHA-256 differs from the manifest's)"
    if not path.is_file():
        return changed
    info = path.stat()
    if info.st_size != entry["size"]:
        return changed
    record = _record(path, entry["sha256"], info, fields={key: value for key, value in entry.items()
                                                        if key not in ("size", "sha256", "on_disk")})
    if entry.get("on_disk") is not None and entry["on_disk"] == record.get("on_disk"):
        return None  # unchanged since it was verified: nothing to read
    if sha256_of(path) != entry["sha256"]:
        return changed
    if "on_disk" in record:
        manifest[name] = record  # hashed, and as recorded: how it looks on disk now
    return None


def checked_in_full(model_size, name):
    """True if verify_file checks all of `name` that matters: by a published SHA-256, or by content."""
    return known_sha256(model_size, name) is not None or name in CHECKED_IN_FULL


# ---- Verifying a file -----------------------------------------------------------------------------

def verify_file(model_dir, model_size, name, path, claimed_sha256=None):
    """What is wrong with `path` as the file `name` of GPT-2 `model_size` (None: nothing). `path` may
    be a .part; the files before `name` in VERIFY_ORDER (or HF_FILES) must already be verified in
    model_dir. claimed_sha256: the SHA-256 the server named for the file it sent (the Hub's
    X-Linked-Etag), checked where no published one is known, before the content checks."""
    return check_file(model_dir, model_size, name, path, claimed_sha256)[0]


def check_file(model_dir, model_size, name, path, claimed_sha256=None):
    """verify_file's finding, and the file's manifest record where nothing is wrong: (problem, record).
    The record's SHA-256 comes from the read that verified the file wherever that read saw every byte
    (a published or claimed SHA-256, the data file's CRC32C pass), so a large file is read once."""
    if not path.is_file():
        return "it is not a regular file" + (" (a link to nothing)" if path.is_symlink() else ""), None
    info = path.stat()
    known_size = KNOWN_SIZES.get((model_size, name))
    if known_size is not None and info.st_size != known_size:
        return f"{info.st_size:,} bytes, expected {known_size:,}", None
    known = known_sha256(model_size, name)
    if known is not None:
        actual = sha256_of(path)
        if actual != known:
            return f"SHA-256 {actual}, expected {known}", None
        return _unless_changed(path, info, _record(path, actual, info))
    sha256 = None
    if claimed_sha256 is not None:
        sha256 = sha256_of(path)
        if sha256 != claimed_sha256:
            return f"SHA-256 {sha256}, but the server named {claimed_sha256} for it", None
    digest = hashlib.sha256() if name == DATA_FILE else None  # the CRC32C pass reads every byte: hash them too
    try:
        problem = _content_problem(model_dir, model_size, name, path, digest)
    except OSError:
        raise  # the disk's, not the file's (the caller's storage_errors names it)
    except Exception as error:  # bytes no parser expected (JSON nested 100,000 deep, ...): a wrong file, not a crash
        problem = f"unreadable as {name} ({type(error).__name__}: {str(error)[:200]})"
    if problem is not None:
        return problem, None
    return _unless_changed(path, info, _record(path, sha256 or (digest.hexdigest() if digest else None), info))


def _unless_changed(path, info, record):
    """(None, record) if the file is still what `info` said before it was read; else the problem: bytes
    hashed on another read than the check's might not be the bytes checked."""
    if _identity(path.stat()) != _identity(info):
        return "it changed while it was being verified; run this again", None
    return None, record


def verify_download(model_dir, model_size, name, path, claimed_sha256=None):
    """check_file for a file just downloaded. Hub weights must also have a SHA-256 to be checked against
    (published, or named by the server): safetensors stores no checksum, so their content check cannot
    see a damaged weight."""
    if name == "model.safetensors" and known_sha256(model_size, name) is None and claimed_sha256 is None:
        return ("the server named no SHA-256 for it (the Hub's X-Linked-Etag header), so its bytes cannot be "
                "verified; use the Hub itself, or place a copy you trust by hand"), None
    return check_file(model_dir, model_size, name, path, claimed_sha256=claimed_sha256)


def _content_problem(model_dir, model_size, name, path, digest):
    if name == "config.json":
        return _hf_config_problem(path, KNOWN_HPARAMS.get(model_size))
    if name == "model.safetensors":
        return _safetensors_problem(path, model_dir)
    if name == "hparams.json":
        return _hparams_problem(path, KNOWN_HPARAMS.get(model_size))
    if name == "model.ckpt.meta":
        return meta_graph_problem(path)
    if name == "model.ckpt.index":
        return _index_problem(path, model_dir)
    if name == DATA_FILE:
        return _data_problem(path, model_dir, digest)
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


def _data_problem(path, model_dir, digest):
    """Every tensor the verified index lists must pass its CRC32C, and nothing may follow them (one
    read, which also feeds `digest`)."""
    try:
        check_checkpoint_data(model_dir / "model.ckpt", data_path=path, digest=digest)
    except CheckpointError as error:
        return getattr(error, "what", str(error))
    return None


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
