"""gpt2_support.files: the one atomic write and the one SHA-256 that the notebooks, the command line and
the downloader share (the downloader's own uses are tested through it in test_gpt_download.py)."""

import hashlib
import os

import pytest

from gpt2_support.files import DownloadError, atomic_write_path, sha256_of, write_text_atomically


def test_the_new_file_replaces_the_old_only_when_the_block_succeeds(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write_path(target) as partial:
            assert partial.parent == tmp_path and partial != target
            partial.write_text("half of the new")
            raise RuntimeError("stopped")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]
    with atomic_write_path(target) as partial:
        partial.write_text("new")
        assert target.read_text() == "old"  # nothing changes under the final name until the block ends
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


@pytest.mark.skipif(os.name == "nt", reason="creating symbolic links needs privileges on Windows")
def test_a_link_planted_at_the_temporary_name_is_never_written_through(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    target = tmp_path / "out.txt"
    (tmp_path / f"out.txt.{os.getpid()}.partial").symlink_to(victim)
    with atomic_write_path(target) as partial:
        partial.write_text("new")
    assert victim.read_text() == "precious" and target.read_text() == "new" and not target.is_symlink()
    (tmp_path / f"out.txt.{os.getpid()}.partial").symlink_to(victim)
    write_text_atomically(target, "newer")
    assert victim.read_text() == "precious" and target.read_text() == "newer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt", "victim.txt"]


def test_a_write_the_disk_refuses_names_the_file(tmp_path):
    missing_folder = tmp_path / "no such folder" / "out.txt"
    with pytest.raises(DownloadError, match=f"Could not (open for writing|write) .*{missing_folder.name}"):
        write_text_atomically(missing_folder, "text")


def test_sha256_of_reads_the_whole_file_in_chunks(tmp_path):
    data = os.urandom(3 * (1 << 20) + 17)  # more than three chunks
    (tmp_path / "data.bin").write_bytes(data)
    assert sha256_of(tmp_path / "data.bin") == hashlib.sha256(data).hexdigest()
