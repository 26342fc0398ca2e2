"""Files written safely, hashed and locked: the disk under the downloader, and the two helpers the
notebooks and the command line share with it.

- `atomic_write_path(path)`: write beside `path`, then rename, so `path` is always either its old file
  or the complete new one, never half of one.
- `sha256_of(path)`: a file's SHA-256, read in chunks.

The downloader's own guarantees rest on the rest of this module: nothing is written through a symbolic
link planted at a temporary, `.part` or final name (links are removed, never followed, and new files are
created exclusively); one process at a time downloads into a folder (`folder_lock`); and an error of
the disk becomes a `DownloadError` that names the file, its folder and the fix (`storage_errors`).
"""

import contextlib
import errno
import hashlib
import os
import stat
import sys
import time
import urllib.error
from pathlib import Path

__all__ = ["atomic_write_path", "sha256_of", "DownloadError", "CHUNK_BYTES"]

CHUNK_BYTES = 1 << 20  # what is read or written at a time
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # not on Windows, where creating symlinks needs privileges
_BINARY = getattr(os, "O_BINARY", 0)


class DownloadError(RuntimeError):
    """A GPT-2 file could not be fetched, verified or stored."""


def sha256_of(path):
    """The SHA-256 of the file at `path`, as a hex string (read CHUNK_BYTES at a time)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_write_path(path):
    """Yield a temporary path beside `path` to write to; it becomes `path` only if the block succeeds.

    Renaming within a folder is atomic, so `path` is always either its old file or the complete new one.
    If the block raises, the temporary file is removed and `path` is untouched. The temporary name is
    `<name>.<process id>.partial`, so two processes never write the same one; whatever is already at
    that name (a symbolic link included) is removed first, the link itself and never its target, so the
    block writes a file of its own instead of through a planted link. (To be sure no link appears there
    while the block runs, create the file with `open_for_writing`, as `write_text_atomically` does.)
    """
    path = Path(path)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    partial.unlink(missing_ok=True)
    try:
        yield partial
        os.replace(partial, path)  # replaces a link at `path` itself, never what it points to
    finally:
        partial.unlink(missing_ok=True)


def write_text_atomically(path, text):
    """Write `text` as UTF-8 to `path` through atomic_write_path, creating the temporary file exclusively
    (never through a link). Errors of the disk are DownloadErrors naming `path` (see storage_errors)."""
    with storage_errors("write", path), atomic_write_path(path) as partial:
        with open_for_writing(partial, append=False) as file_descriptor:
            write_all(file_descriptor, text.encode("utf-8"))


def is_own_regular_file(path):
    """True if `path` is a regular file of our own: not a link, and no other name shares its bytes."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_nlink == 1


@contextlib.contextmanager
def open_for_writing(path, append):
    """A file descriptor open for writing at `path`, refusing to follow a symbolic link: unless appending,
    anything already at that name is removed first (a link itself, never its target), and the new file is
    created exclusively, so a link planted in between makes the open fail instead of being followed.
    Appending is refused to anything but a regular file of our own (is_own_regular_file)."""
    with storage_errors("open for writing", path):
        if append and not is_own_regular_file(path):
            raise DownloadError(f"{path} is a link, or shares its bytes with another name; refusing to write "
                                "through it. Delete it and run again.")
        if not append:
            Path(path).unlink(missing_ok=True)
        flags = os.O_WRONLY | _NOFOLLOW | _BINARY | (os.O_APPEND if append else os.O_CREAT | os.O_EXCL)
        file_descriptor = os.open(path, flags, 0o644)
    try:
        yield file_descriptor
    finally:
        os.close(file_descriptor)


def write_all(file_descriptor, data):
    """os.write until every byte of `data` is written (one call may write fewer)."""
    view = memoryview(data)
    while view:
        view = view[os.write(file_descriptor, view):]


@contextlib.contextmanager
def storage_errors(action, path):
    """Turn an OSError from the disk into a DownloadError naming the file, its folder and the fix
    ("Could not <action> <path> (<reason>). To fix: ..."). Errors of the network pass through."""
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


def cannot_write(error):
    """True if a DownloadError came from a permission the disk refused (a read-only or shared folder)."""
    cause = error.__cause__
    return isinstance(cause, OSError) and cause.errno in (errno.EACCES, errno.EPERM, errno.EROFS)


@contextlib.contextmanager
def folder_lock(model_dir):
    """Hold `<model_dir>.lock` (beside the folder) exclusively: a second process downloading the same
    size waits here, then finds the files verified. The lock file is left in place; an OS lock, not
    the file's existence, is what excludes, so a crashed process never leaves a stale lock."""
    model_dir = Path(model_dir)
    lock_path = model_dir.with_name(model_dir.name + ".lock")
    with storage_errors("open the lock file", lock_path):
        if lock_path.is_symlink():
            lock_path.unlink()
        file_descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o644)
    try:
        with storage_errors("lock", lock_path):
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


def _unlock(file_descriptor):
    if os.name == "nt":
        import msvcrt
        os.lseek(file_descriptor, 0, os.SEEK_SET)
        msvcrt.locking(file_descriptor, msvcrt.LK_UNLCK, 1)
    else:
        import fcntl
        fcntl.flock(file_descriptor, fcntl.LOCK_UN)
