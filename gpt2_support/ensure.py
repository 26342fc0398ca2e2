"""A verified folder of one GPT-2 size, from either source: ensure_gpt2_files.

What it promises: a file under its final name, or recorded in the folder's manifest, is the right file
(gpt2_support.verify says what makes it right).
- Every file is verified before it gets its final name (gpt2_support.fetch downloads to `<name>.part`).
  When hparams.json, config.json or the index is replaced, the files checked against it are checked
  again. A file found on disk without a record is verified the same way, offline; so is one whose
  record disagrees with it (the manifest only caches checks) where those checks see every byte that
  matters (a published SHA-256, or verify.CHECKED_IN_FULL). One that fails, or is to be fetched again,
  is renamed aside to `<name>.rejected`, kept until a good copy is in place, so nothing is lost if no
  server answers.
- Once every file is recorded, a call makes no network request at all: after one download, everything
  works offline. A file unchanged on disk since it was verified is not even read again.
- One download per folder at a time: a lock file `<size>.lock` beside the folder makes a second process
  wait; once the first has finished, the second finds the files verified and makes no request (or, if
  the first failed, tries itself). A complete folder that cannot be written (shared or read-only) is
  verified and used without the lock.
- Every failure raises a DownloadError that names the file, the folder and what to do.
"""

import contextlib
import os
import sys

from gpt2_support.catalogue import (FILES, HF_FILES, HF_REPOS, MODEL_SIZES, file_url, model_folder, server_urls,
                                    source_files, weights_source)
from gpt2_support.fetch import FetchSettings, ServersFailed, download_from_any
from gpt2_support.files import DownloadError, cannot_write, folder_lock, storage_errors
from gpt2_support.verify import (check_file, checked_in_full, read_manifest, record_after_rename, recorded_problem,
                                 verify_download, verify_file, write_manifest)

__all__ = ["ensure_gpt2_files"]

# A file whose replacement makes the files checked against it be checked again.
_CHECKED_AGAINST = ("hparams.json", "model.ckpt.index", "config.json")


def ensure_gpt2_files(model_size, models_dir, *, source=None, base_url=None, mirror_url=None, retries=3,
                      backoff=0.5, timeout=30, progress=True):
    """Download whatever is missing or wrong in the size's folder (see model_folder); return the folder.

    source: "openai" or "huggingface"; None means GPT2_WEIGHTS_SOURCE, else "openai".
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
    settings = FetchSettings(retries=retries, backoff=backoff, timeout=timeout, progress=progress)
    servers = server_urls(source, base_url, mirror_url)
    names = source_files(source)

    # First without the lock, which needs a folder we may write to: usually every file is as recorded.
    with storage_errors("read", model_dir):
        manifest = read_manifest(model_dir)
        recorded = dict(manifest)
        problems = [name for name in names if recorded_problem(model_dir, model_size, name, manifest) is not None]
    confirmed = {name: manifest[name] for name in names if manifest.get(name) is not recorded.get(name)}
    if not problems:
        if confirmed:  # files hashed just now: remember how they look on disk, if the folder may be written
            with contextlib.suppress(DownloadError), folder_lock(model_dir):
                _remember(model_dir, confirmed)
        return model_dir

    with storage_errors("create the folder", model_dir):
        model_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(folder_lock(model_dir))
        except DownloadError as error:
            if cannot_write(error) and _complete_by_content(model_dir, model_size, names):
                return model_dir  # a complete folder we may not write to (shared, mounted read-only): verified
            raise
        manifest = _remember(model_dir, confirmed)  # read again: another process may have written it meanwhile
        recheck = False  # once a file others are checked against is replaced, they are checked again
        for name in names:
            urls = [file_url(source, server, model_size, name) for server in servers]
            replaced = _ensure_file(model_dir, model_size, name, manifest, urls, settings, recheck)
            recheck = recheck or (replaced and name in _CHECKED_AGAINST)
    return model_dir


def _remember(model_dir, confirmed):
    """The folder's manifest, with how the `confirmed` files (hashed just now, and as recorded) look on
    disk added to their records and written, so that the next call need not read them again. A record
    that changed meanwhile (another process) is left as it is."""
    manifest = read_manifest(model_dir)
    changed = False
    for name, record in confirmed.items():
        entry = manifest.get(name)
        if entry is not None and (entry["size"], entry["sha256"]) == (record["size"], record["sha256"]):
            manifest[name] = {**entry, "on_disk": record["on_disk"]}
            changed = True
    if changed:
        write_manifest(model_dir, manifest)
    return manifest


def _complete_by_content(model_dir, model_size, names):
    """True if every file is in the folder and passes verify_file (nothing is written)."""
    with storage_errors("read", model_dir):
        return all((model_dir / name).is_file() and verify_file(model_dir, model_size, name, model_dir / name) is None
                   for name in names)


def _ensure_file(model_dir, model_size, name, manifest, urls, settings, recheck):
    """Make sure model_dir/name is verified and recorded in `manifest` (updated on disk too). recheck: a
    file this one is checked against has been replaced, so a recorded copy is checked by content again.
    Returns True if the file was (re)placed."""
    path = model_dir / name
    with storage_errors("read", path):
        entry = manifest.get(name)
        problem = recorded_problem(model_dir, model_size, name, manifest)
        if problem is None and recheck:
            problem = verify_file(model_dir, model_size, name, path)
        elif problem is None and manifest.get(name) is not entry:
            write_manifest(model_dir, manifest)  # hashed just now, and as recorded: remember how it looks on disk
        elif problem is not None and os.path.lexists(path) and (name not in manifest
                                                                 or checked_in_full(model_size, name)):
            # Placed by hand, left by another tool, or recorded otherwise (a manifest edited, or copied from
            # another folder): the manifest only caches checks, so the file's own checks decide, offline.
            # A recorded file that disagrees with its record may be damaged, so that is left to the checks
            # that see every byte that matters; the others' files are fetched again (kept as .rejected).
            problem, record = check_file(model_dir, model_size, name, path)
            if problem is None:
                manifest[name] = {**record, "source": "found on disk"}
                write_manifest(model_dir, manifest)
                return True
        if problem is None:
            return False
    rejected = path.with_name(name + ".rejected")  # where a wrong file is kept until a good copy is in place
    if os.path.lexists(path):
        print(f"{path} is wrong: {problem}. Moved aside to {rejected.name}; downloading it again.",
              file=sys.stderr)
        with storage_errors("move aside", path):
            os.replace(path, rejected)  # renames a link itself, never what it points to
    if name in manifest:
        del manifest[name]
        write_manifest(model_dir, manifest)
    try:
        record = download_from_any(
            urls, path, lambda part, **claims: verify_download(model_dir, model_size, name, part, **claims), settings)
    except ServersFailed as failed:
        raise _no_server_error(model_dir, model_size, name, urls, failed.failures, rejected) from None
    with storage_errors("read", path):
        manifest[name] = record_after_rename(path, record)  # verified as its .part: note the rename's ctime
    write_manifest(model_dir, manifest)
    with storage_errors("remove", rejected):
        rejected.unlink(missing_ok=True)  # a verified copy is in place now (also of an earlier run)
    return True


def _no_server_error(model_dir, model_size, name, urls, failures, rejected):
    """The DownloadError when no server gave `name`: what each said, and how to go on without them."""
    kept = (f"The file that was at {model_dir / name} failed its check and is kept as {rejected}; delete it once "
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
    return DownloadError(
        f"Could not download {name} for GPT-2 {model_size} into {model_dir}/.\n"
        + "\n".join(failures) + "\n" + kept + by_hand +
        f"put them in {model_dir}/ and run this again: files found there are verified (published "
        "SHA-256, or their contents) and then used without any network access.\n" + other_servers
    )
