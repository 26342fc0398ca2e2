"""The downloader (gpt_download.download_and_load_gpt2, gpt2_support.ensure and below) against local HTTP servers that serve OpenAI's layout and misbehave to order.

Nothing here touches the internet: the primary and the mirror are two FakeGPT2Server instances on
127.0.0.1 serving a tiny random checkpoint written by 03's checkpoint writer. The size "774M" is used
because its files have no published hash, so they are checked by content; its published hparams.json
(36 layers of 1280) would rightly reject the tiny stand-in, so the tests set that one fact aside. The
124M files all have published hashes, and a test checks that the stand-in is refused under that name.
"""

import errno
import hashlib
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from fake_openai_server import FakeGPT2Server, unused_local_port

import gpt2_from_scratch.weights as writer  # 03's checkpoint writer
import gpt2_support.verify
import gpt_download  # the public face: download_and_load_gpt2
from gpt2_support.catalogue import (DATA_FILE, FILES, KNOWN_HPARAMS, KNOWN_SHA256, KNOWN_SIZES, VERIFY_ORDER,
                                    known_sha256)
from gpt2_support.ensure import ensure_gpt2_files
from gpt2_support.files import DownloadError, sha256_of
from gpt2_support.layout import openai_variable_shapes, variables_to_params
from gpt2_support.tf_checkpoint import checkpoint_variables, load_gpt2_params_from_tf_ckpt
from gpt2_support.verify import MANIFEST, read_manifest, verify_file

TINY = {"n_vocab": 100, "n_ctx": 16, "n_embd": 8, "n_head": 2, "n_layer": 2}
SIZE = "774M"
DATA = DATA_FILE


@pytest.fixture(autouse=True)
def size_without_published_hparams(monkeypatch):
    monkeypatch.delitem(KNOWN_HPARAMS, SIZE)


def flat(params):
    return writer.params_to_variables(params, TINY)


def flipped(data, at):
    """data with one bit of byte `at` flipped."""
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1:]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A folder holding <size>/<OpenAI's seven files> for a tiny random model, and its params."""
    root = tmp_path_factory.mktemp("served")
    params = writer.random_gpt2_params(TINY, seed=1)
    writer.write_gpt2_checkpoint(params, TINY, root / SIZE)
    (root / SIZE / MANIFEST).unlink()  # OpenAI's bucket has no manifest
    shutil.copytree(root / SIZE, root / "124M")
    return root, params


@pytest.fixture
def servers(served):
    root, _ = served
    primary = FakeGPT2Server(root, "gpt-2/models").start()
    mirror = FakeGPT2Server(root, "file/LLMs-from-scratch/gpt2").start()
    yield primary, mirror
    primary.stop()
    mirror.stop()


def download(models_dir, servers, size=SIZE, **kwargs):
    primary, mirror = servers
    return gpt_download.download_and_load_gpt2(size, models_dir, base_url=primary.url,
                                               mirror_url=mirror.url, backoff=0.0, progress=False,
                                               **kwargs)


def served_bytes(served, name):
    return (served[0] / SIZE / name).read_bytes()


def assert_same_files(served_root, model_dir, size=SIZE):
    for name in FILES:
        assert (model_dir / name).read_bytes() == (served_root / size / name).read_bytes(), name
    leftovers = [path.name for path in model_dir.iterdir() if path.name not in (*FILES, "manifest.json")]
    assert leftovers == [], "left behind"


def assert_not_recorded(model_dir, name):
    assert not (model_dir / name).exists(), f"{name} sits under its final name"
    assert name not in read_manifest(model_dir), f"{name} is in the manifest"


def closed_port_url():
    return f"http://127.0.0.1:{unused_local_port()}/gpt-2/models"


# ---- a normal download, retries and the mirror --------------------------------------------------

def test_full_download_verifies_and_records_every_file(tmp_path, served, servers):
    root, params = served
    hparams, loaded = download(tmp_path, servers)
    assert hparams == TINY
    for name, array in flat(params).items():
        assert np.array_equal(flat(loaded)[name], array), name
    assert_same_files(root, tmp_path / SIZE)
    manifest = read_manifest(tmp_path / SIZE)
    assert sorted(manifest) == sorted(FILES)
    assert manifest[DATA]["size"] == (root / SIZE / DATA).stat().st_size
    assert manifest[DATA]["sha256"] == sha256_of(root / SIZE / DATA)
    assert servers[1].requests == []  # the mirror was not needed
    assert sorted(path.name for path in tmp_path.iterdir()) == [SIZE, f"{SIZE}.lock"]


def test_primary_answering_500_falls_back_to_the_mirror(tmp_path, served, servers):
    primary, mirror = servers
    primary.status_for_all = 500
    download(tmp_path, servers, retries=2)
    assert_same_files(served[0], tmp_path / SIZE)
    assert len(primary.gets("checkpoint")) == 2  # retried, then gave up on the primary
    sources = {entry["source"] for entry in read_manifest(tmp_path / SIZE).values()}
    assert all(source.startswith(mirror.url) for source in sources)


def test_a_5xx_is_retried_on_the_same_server(tmp_path, served, servers):
    primary, mirror = servers
    primary.queued_statuses["hparams.json"] = [503, 502]
    download(tmp_path, servers, retries=3)
    assert [status for _, status in primary.gets("hparams.json")] == [503, 502, 200]
    assert mirror.requests == []


def test_a_404_goes_to_the_mirror_without_retrying(tmp_path, served, servers):
    primary, mirror = servers
    primary.queued_statuses["vocab.bpe"] = [404]
    download(tmp_path, servers)
    assert [status for _, status in primary.gets("vocab.bpe")] == [404]
    assert [status for _, status in mirror.gets("vocab.bpe")] == [200]


def test_second_call_needs_no_server_and_no_network(tmp_path, served, servers, monkeypatch):
    _, first = download(tmp_path, servers)
    for server in servers:
        server.stop()

    def no_network(*args, **kwargs):
        raise AssertionError("download_and_load_gpt2 made a network request")

    monkeypatch.setattr(urllib.request.OpenerDirector, "open", no_network)  # every urllib request goes through it
    monkeypatch.setattr(socket, "create_connection", no_network)
    _, second = download(tmp_path, servers)
    for name, array in flat(first).items():
        assert np.array_equal(flat(second)[name], array)


def test_no_files_and_no_server_fails_quickly_and_says_what_to_do(tmp_path):
    url = closed_port_url()
    started = time.perf_counter()
    with pytest.raises(DownloadError) as error:  # default retries and backoff
        gpt_download.download_and_load_gpt2(SIZE, tmp_path, base_url=url, mirror_url=url,
                                            progress=False)
    assert time.perf_counter() - started < 10
    message = str(error.value)
    assert f"{url}/{SIZE}/checkpoint" in message
    assert str(tmp_path / SIZE) in message
    assert "by hand" in message and "model.ckpt.index" in message
    assert not any((tmp_path / SIZE).iterdir())  # nothing half-written


def test_invalid_size_lists_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="124M, 355M, 774M, 1558M"):
        gpt_download.download_and_load_gpt2("125M", tmp_path)


@pytest.mark.parametrize("retries", [0, -1, True, 2.0])
def test_retries_must_be_a_whole_number_of_at_least_one(tmp_path, servers, retries):
    with pytest.raises(ValueError, match="retries must be a whole number of at least 1"):
        download(tmp_path, servers, retries=retries)
    assert not (tmp_path / SIZE).exists() or not any((tmp_path / SIZE).iterdir())


def test_urls_are_joined_as_strings_and_the_environment_can_override_them(tmp_path, served, servers,
                                                                         monkeypatch):
    primary, mirror = servers
    monkeypatch.setenv("GPT2_BASE_URL", primary.url + "/")  # a trailing slash is harmless
    monkeypatch.setenv("GPT2_MIRROR_URL", mirror.url)
    ensure_gpt2_files(SIZE, tmp_path, backoff=0.0, progress=False)
    assert len(primary.gets("checkpoint")) == 1
    entry = read_manifest(tmp_path / SIZE)["checkpoint"]
    assert entry["source"] == f"{primary.url}/{SIZE}/checkpoint"


@pytest.mark.parametrize("manifest", [
    {"files": ["checkpoint"]},
    {"files": {"checkpoint": "not a record"}},
    {"files": {"checkpoint": {"size": "12", "sha256": None}}},
    ["not", "a", "manifest"],
])
def test_a_manifest_with_wrong_types_is_treated_as_absent(tmp_path, served, servers, manifest):
    root, _ = served
    download(tmp_path, servers)
    (tmp_path / SIZE / MANIFEST).write_text(json.dumps(manifest))
    for server in servers:
        server.requests.clear()
    hparams, _ = download(tmp_path, servers)  # every file is checked again, as if found without a record
    assert [server.requests for server in servers] == [[], []]  # ... by content, offline: all are right
    assert hparams == TINY
    assert sorted(read_manifest(tmp_path / SIZE)) == sorted(FILES)
    assert_same_files(root, tmp_path / SIZE)


# ---- 1. nothing unverified under a final name or in the manifest ---------------------------------

@pytest.mark.parametrize("refused", ["hparams.json", "model.ckpt.meta", "model.ckpt.index", DATA])
def test_every_124M_file_is_checked_against_its_published_sha256(tmp_path, served, servers, monkeypatch, refused):
    """The tiny stand-in served as "124M". Its checkpoint and tokenizer files are OpenAI's, so they are
    kept. To reach each weight file in turn, the files verified before it are given the stand-in's
    hashes (and size) as if published; the one under test keeps OpenAI's and must be refused."""
    order = VERIFY_ORDER
    for name in order[order.index("hparams.json"):order.index(refused)]:
        monkeypatch.setitem(KNOWN_SHA256, ("124M", name),
                            sha256_of(served[0] / "124M" / name))
        monkeypatch.delitem(KNOWN_SIZES, ("124M", name), raising=False)
    if refused != DATA:
        monkeypatch.delitem(KNOWN_SIZES, ("124M", DATA))
    with pytest.raises(DownloadError) as error:
        download(tmp_path, servers, size="124M")
    message = str(error.value)
    assert f"Could not download {refused} for GPT-2 124M" in message
    published = "expected 497,759,232" if refused == DATA else f"expected {known_sha256('124M', refused)}"
    assert published in message
    assert sorted(read_manifest(tmp_path / "124M")) == sorted(order[:order.index(refused)])
    assert_not_recorded(tmp_path / "124M", refused)


def test_a_downloaded_124M_record_that_disagrees_with_the_published_hash_is_not_trusted(tmp_path, served):
    """Files 03's writer recorded (the smoke profile's stand-ins) are the user's own and load offline;
    the same files recorded as downloaded from a server are checked against OpenAI's hashes."""
    model_dir = tmp_path / "124M"
    writer.write_gpt2_checkpoint(served[1], TINY, model_dir)
    url = closed_port_url()
    hparams, _ = gpt_download.download_and_load_gpt2("124M", tmp_path, base_url=url, mirror_url=url,
                                                     backoff=0.0, progress=False)
    assert hparams == TINY
    manifest = json.loads((model_dir / MANIFEST).read_text())
    for entry in manifest["files"].values():
        entry["source"] = f"{url}/124M/some-file"
    (model_dir / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(DownloadError, match="Could not download hparams.json"):
        ensure_gpt2_files("124M", tmp_path, base_url=url, mirror_url=url, backoff=0.0, progress=False)
    assert (model_dir / "hparams.json.rejected").is_file()
    assert_not_recorded(model_dir, "hparams.json")


def test_a_data_file_failing_its_crc_is_fetched_whole_again_then_refused(tmp_path, served, servers):
    data = served_bytes(served, DATA)
    for server in servers:
        server.replace_body[DATA] = flipped(data, len(data) // 2)
    with pytest.raises(DownloadError, match="fail their CRC32C check") as error:
        download(tmp_path, servers)
    assert f"Could not download {DATA}" in str(error.value)
    assert_not_recorded(tmp_path / SIZE, DATA)
    assert sorted(read_manifest(tmp_path / SIZE)) == sorted(set(FILES) - {DATA})
    assert [len(server.gets(DATA)) for server in servers] == [2, 2]  # each: once, then whole once more
    assert not list((tmp_path / SIZE).glob("*.part*"))


@pytest.mark.parametrize("name, damage, finding", [
    (DATA, lambda data: data + bytes(8), "but the index places the tensors in the first"),
    ("model.ckpt.index", lambda data: flipped(data, 5), "CRC32C mismatch in the block"),
    ("model.ckpt.index", lambda data: data[:-1], "no SSTable footer"),
    ("hparams.json", lambda data: data.replace(b'"n_layer": 2', b'"n_layer": 3'),
     "disagrees with hparams.json: missing ['model/h2/"),
    ("hparams.json", lambda data: b"<html>Not found</html>", "not JSON"),
    ("hparams.json", lambda data: data.replace(b'"n_head"', b'"heads"'), "n_head must be positive whole numbers"),
    ("model.ckpt.meta", lambda data: data[:len(data) // 2], "ends in the middle of a field"),
    ("model.ckpt.meta", lambda data: b"<!DOCTYPE html><html></html>", "not a TensorFlow MetaGraphDef"),
    ("checkpoint", lambda data: data.replace(b"model.ckpt", b"other.ckpt"), "SHA-256"),
], ids=["data-with-trailing-bytes", "index-block-crc", "index-cut-short", "hparams-other-model",
        "hparams-html", "hparams-missing-key", "meta-cut-short", "meta-html", "checkpoint-changed"])
def test_a_file_failing_its_content_check_is_never_recorded(tmp_path, served, servers, name, damage, finding):
    for server in servers:
        server.replace_body[name] = damage(served_bytes(served, name))
    with pytest.raises(DownloadError) as error:
        download(tmp_path, servers)
    message = str(error.value)
    failed = message.split("Could not download ", 1)[1].split(" ", 1)[0]
    assert finding in message
    assert_not_recorded(tmp_path / SIZE, failed)
    assert_not_recorded(tmp_path / SIZE, DATA)


def test_hparams_json_must_hold_the_numbers_openai_published_for_its_size(tmp_path, servers, monkeypatch):
    monkeypatch.setitem(KNOWN_HPARAMS, SIZE,
                        {"n_vocab": 50257, "n_ctx": 1024, "n_embd": 1280, "n_head": 20, "n_layer": 36})
    with pytest.raises(DownloadError, match="but OpenAI published"):
        download(tmp_path, servers)
    assert_not_recorded(tmp_path / SIZE, "hparams.json")


def test_a_wrong_file_found_on_disk_is_moved_aside_and_kept_until_a_good_copy_arrives(tmp_path, served, servers):
    root, _ = served
    model_dir = shutil.copytree(root / SIZE, tmp_path / SIZE)  # placed by hand: no manifest
    wrong = flipped(served_bytes(served, DATA), 40)
    (model_dir / DATA).write_bytes(wrong)
    rejected = model_dir / (DATA + ".rejected")
    url = closed_port_url()
    with pytest.raises(DownloadError) as error:
        ensure_gpt2_files(SIZE, tmp_path, base_url=url, mirror_url=url, backoff=0.0, progress=False)
    assert f"kept as {rejected}" in str(error.value)
    assert rejected.read_bytes() == wrong  # the old bytes are still there
    assert_not_recorded(model_dir, DATA)
    # The six right files were verified offline, by content, and recorded.
    assert sorted(read_manifest(model_dir)) == sorted(set(FILES) - {DATA})

    primary, _ = servers
    download(tmp_path, servers)  # a server answers now
    assert_same_files(root, model_dir)  # .rejected is gone too
    assert {(request.method, request.file) for request in primary.requests} == {("GET", DATA)}


def test_a_file_changed_after_it_was_recorded_is_moved_aside_and_fetched_again(tmp_path, served, servers):
    primary, _ = servers
    download(tmp_path, servers)
    data_file = tmp_path / SIZE / DATA
    data_file.write_bytes(data_file.read_bytes()[:100])
    primary.requests.clear()
    download(tmp_path, servers)
    assert_same_files(served[0], tmp_path / SIZE)
    assert {request.file for request in primary.requests} == {DATA}  # only the damaged file


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"n_vocab": ' * 100_000], ids=["arrays", "objects"])
def test_json_nested_past_any_parser_is_a_wrong_file_and_a_fixed_server_then_succeeds(tmp_path, served, servers,
                                                                                       body):
    """json raises RecursionError, not ValueError, for such a file: it must be refused like any wrong
    bytes (its .part discarded), not escape and leave a complete .part that fails every later call."""
    for server in servers:
        server.replace_body["hparams.json"] = body
    with pytest.raises(DownloadError, match=r"(?s)Could not download hparams.json.*not JSON"):
        download(tmp_path, servers)
    assert_not_recorded(tmp_path / SIZE, "hparams.json")
    assert not list((tmp_path / SIZE).glob("*.part*"))
    for server in servers:
        del server.replace_body["hparams.json"]
    download(tmp_path, servers)
    assert_same_files(served[0], tmp_path / SIZE)


def test_a_manifest_entry_that_disagrees_with_a_right_file_is_corrected_offline(tmp_path, served, servers,
                                                                                monkeypatch):
    """The manifest only records checks: a right file whose entry is wrong (edited, or copied from another
    folder) passes its own checks (every tensor's CRC32C) and stays, with no server."""
    download(tmp_path, servers)
    model_dir = tmp_path / SIZE
    manifest = json.loads((model_dir / MANIFEST).read_text())
    manifest["files"][DATA] = manifest["files"]["model.ckpt.index"]  # another file's record
    manifest["files"]["hparams.json"]["sha256"] = "0" * 64
    (model_dir / MANIFEST).write_text(json.dumps(manifest))
    for server in servers:
        server.stop()
    monkeypatch.setattr(socket, "create_connection", lambda *args, **kwargs: pytest.fail("network used"))
    url = closed_port_url()
    hparams, params = gpt_download.download_and_load_gpt2(SIZE, tmp_path, base_url=url, mirror_url=url,
                                                          backoff=0.0, progress=False)
    assert hparams == TINY
    for name, array in flat(served[1]).items():
        assert np.array_equal(flat(params)[name], array), name
    assert_same_files(served[0], model_dir)  # nothing set aside as .rejected either
    corrected = read_manifest(model_dir)
    for name in (DATA, "hparams.json"):
        assert corrected[name]["sha256"] == sha256_of(model_dir / name)
        assert corrected[name]["size"] == (model_dir / name).stat().st_size


def test_a_graph_file_that_disagrees_with_its_record_is_fetched_again_not_vouched_for(tmp_path, served, servers):
    """model.ckpt.meta of 774M has no published SHA-256 and only its framing is checked: a copy that disagrees
    with its manifest entry (a sign of damage) is set aside and fetched again, not recorded as verified."""
    download(tmp_path, servers)
    model_dir = tmp_path / SIZE
    meta = model_dir / "model.ckpt.meta"
    data = bytearray(meta.read_bytes())
    data[-1] ^= 0x01  # a changed byte inside the last field: the framing still holds
    meta.write_bytes(bytes(data))
    assert verify_file(model_dir, SIZE, "model.ckpt.meta", meta) is None  # content alone passes it
    download(tmp_path, servers)
    assert meta.read_bytes() == (served[0] / SIZE / "model.ckpt.meta").read_bytes()
    assert read_manifest(model_dir)["model.ckpt.meta"]["sha256"] == sha256_of(meta)
    assert not (model_dir / "model.ckpt.meta.rejected").exists()


@pytest.fixture(scope="module")
def next_revision(tmp_path_factory):
    """The same tiny model's files from other weights: another revision of the release."""
    root = tmp_path_factory.mktemp("next_revision")
    writer.write_gpt2_checkpoint(writer.random_gpt2_params(TINY, seed=2), TINY, root / SIZE)
    (root / SIZE / MANIFEST).unlink()
    return root


def test_when_the_index_is_replaced_the_data_file_is_checked_against_the_new_one(tmp_path, served, next_revision):
    """The local index is damaged; the server now has the next revision. Its new index passes its own
    checks, and the recorded data file (of the old revision) must then be checked against it, found
    wrong and fetched again, rather than left beside an index it does not match."""
    download_dir = tmp_path / "models"
    old = FakeGPT2Server(served[0], "gpt-2/models").start()
    new = FakeGPT2Server(next_revision, "gpt-2/models").start()
    try:
        download(download_dir, (old, old))
        index = download_dir / SIZE / "model.ckpt.index"
        index.write_bytes(flipped(index.read_bytes(), 5))
        hparams, params = download(download_dir, (new, new))
        assert {request.file for request in new.requests} == {"model.ckpt.index", DATA}
    finally:
        old.stop()
        new.stop()
    assert_same_files(next_revision, download_dir / SIZE)
    expected = flat(writer.random_gpt2_params(TINY, seed=2))
    assert all(np.array_equal(flat(params)[name], array) for name, array in expected.items())


# ---- 2. a resumed download continues only the same bytes -----------------------------------------

def test_connection_cut_mid_file_resumes_with_range_and_if_range(tmp_path, served, servers):
    primary, _ = servers
    size = len(served_bytes(served, DATA))
    primary.faults[DATA] = [("cut", size // 3)]
    download(tmp_path, servers)
    assert primary.gets(DATA) == [(None, 200), (f"bytes={size // 3}-", 206)]
    first, resumed = [request for request in primary.requests if request.file == DATA]
    assert resumed.if_range is not None and resumed.if_range.startswith('"')  # the ETag of the first answer
    assert_same_files(served[0], tmp_path / SIZE)


def test_a_file_that_changed_on_the_server_between_attempts_is_fetched_whole(tmp_path, served, servers):
    """The first attempt gets a third of an older revision; by the retry the server has a new one, so
    If-Range does not match and the server sends the whole new file: the two are never joined."""
    primary, mirror = servers
    data = served_bytes(served, DATA)
    primary.replace_body[DATA] = flipped(data, 10)  # differs inside the first third
    primary.faults[DATA] = [("cut", len(data) // 3)]

    def publish_the_new_revision(request):
        if request.file == DATA:
            primary.replace_body.pop(DATA, None)

    primary.after_request = publish_the_new_revision
    download(tmp_path, servers)
    assert primary.gets(DATA) == [(None, 200), (f"bytes={len(data) // 3}-", 200)]
    assert mirror.requests == []
    assert_same_files(served[0], tmp_path / SIZE)


def test_the_mirror_never_continues_a_partial_file_from_the_primary(tmp_path, served, servers):
    primary, mirror = servers
    size = len(served_bytes(served, DATA))
    primary.faults[DATA] = [("cut", size // 3)]
    download(tmp_path, servers, retries=1)
    assert primary.gets(DATA) == [(None, 200)]
    assert mirror.gets(DATA) == [(None, 200)]  # no Range: the primary's third was discarded
    assert read_manifest(tmp_path / SIZE)[DATA]["source"].startswith(mirror.url)
    assert_same_files(served[0], tmp_path / SIZE)


def leave_a_third_of_the_data_file(tmp_path, served, servers):
    """A run that gets a third of the data file from the primary, then fails (the mirror answers 503):
    the .part stays, to be continued. Returns the .part's path; the mirror answers again afterwards."""
    primary, mirror = servers
    data = served_bytes(served, DATA)
    primary.faults[DATA] = [("cut", len(data) // 3)]
    mirror.status_for_all = 503
    with pytest.raises(DownloadError):
        download(tmp_path, servers, retries=1)
    mirror.status_for_all = None
    part = tmp_path / SIZE / (DATA + ".part")
    assert part.read_bytes() == data[:len(data) // 3]
    return part


def test_a_resumed_part_with_wrong_bytes_is_discarded_and_fetched_whole_once(tmp_path, served, servers):
    primary, mirror = servers
    data = served_bytes(served, DATA)
    part = leave_a_third_of_the_data_file(tmp_path, served, servers)
    part.write_bytes(flipped(part.read_bytes(), 10))  # and then damaged on disk
    primary.requests.clear()
    mirror.requests.clear()
    download(tmp_path, servers)
    assert primary.gets(DATA) == [(f"bytes={len(data) // 3}-", 206), (None, 200)]
    assert mirror.requests == []
    assert_same_files(served[0], tmp_path / SIZE)


def test_a_complete_part_left_by_a_stopped_run_is_verified_without_a_request(tmp_path, served, servers,
                                                                            monkeypatch):
    primary, mirror = servers
    real_verify = gpt2_support.verify.check_file

    def stopped_while_verifying(model_dir, model_size, name, path, *args, **claims):
        if path.name.endswith(".part") and name == DATA:
            raise KeyboardInterrupt  # the reader pressed stop during the CRC32C pass
        return real_verify(model_dir, model_size, name, path, *args, **claims)

    monkeypatch.setattr(gpt2_support.verify, "check_file", stopped_while_verifying)
    with pytest.raises(KeyboardInterrupt):
        download(tmp_path, servers)
    monkeypatch.setattr(gpt2_support.verify, "check_file", real_verify)
    primary.requests.clear()
    download(tmp_path, servers)
    assert primary.requests == [] and mirror.requests == []  # the whole .part was there: no request
    assert_same_files(served[0], tmp_path / SIZE)


def test_a_tls_connection_cut_mid_body_is_retried(tmp_path, served, servers, monkeypatch):
    """A cut HTTPS stream raises ssl.SSLEOFError (an OSError, not an HTTPException) from the read."""
    real_read1, cuts = http.client.HTTPResponse.read1, []

    def read1(response, amount=-1):
        if not cuts:
            cuts.append(response)
            raise ssl.SSLEOFError(8, "EOF occurred in violation of protocol")
        return real_read1(response, amount)

    monkeypatch.setattr(http.client.HTTPResponse, "read1", read1)
    download(tmp_path, servers)
    assert len(servers[0].gets("checkpoint")) == 2  # the first file: cut once, then fetched again
    assert_same_files(served[0], tmp_path / SIZE)


def test_a_part_that_shares_its_bytes_with_another_name_is_never_appended_to(tmp_path, served, servers):
    data = served_bytes(served, DATA)
    part = leave_a_third_of_the_data_file(tmp_path, served, servers)
    victim = tmp_path / "elsewhere.bin"
    shutil.copyfile(part, victim)
    part.unlink()
    os.link(victim, part)  # a hard link planted where the .part was, with the right bytes so far
    download(tmp_path, servers)
    assert victim.read_bytes() == data[:len(data) // 3]
    assert_same_files(served[0], tmp_path / SIZE)


# ---- 3. servers that lie -------------------------------------------------------------------------

LIES = ["long", "no_length_cut", "bad_length", "superscript_length", "chunked_cut", "stall", "trickle", "html",
        "html_as_file", "redirect_loop", ("cut", 100)]


@pytest.mark.parametrize("lie", LIES, ids=str)
def test_a_lying_primary_never_yields_a_recorded_file_and_the_mirror_is_used(tmp_path, served, servers, lie):
    primary, mirror = servers
    primary.faults[DATA] = [lie] * 20
    primary.stall_seconds = 2.0
    started = time.perf_counter()
    download(tmp_path, servers, retries=2, timeout=0.5)
    assert time.perf_counter() - started < 15
    assert primary.gets(DATA), "the primary was not asked"
    assert read_manifest(tmp_path / SIZE)[DATA]["source"].startswith(mirror.url)
    assert_same_files(served[0], tmp_path / SIZE)


@pytest.mark.parametrize("lie", LIES, ids=str)
def test_a_lying_primary_and_no_mirror_give_a_clear_error_and_no_file(tmp_path, served, servers, lie):
    primary, mirror = servers
    primary.faults[DATA] = [lie] * 20
    primary.stall_seconds = 2.0
    mirror.status_for_all = 503
    with pytest.raises(DownloadError, match=f"Could not download {DATA}") as error:
        download(tmp_path, servers, retries=2, timeout=0.5)
    assert f"{primary.url}/{SIZE}/{DATA}: " in str(error.value)
    assert_not_recorded(tmp_path / SIZE, DATA)


@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://127.0.0.1:{port}/gpt2/model.ckpt"])
def test_a_redirect_to_a_refused_scheme_is_named_as_such_and_the_mirror_is_used(tmp_path, served, servers, capsys,
                                                                                target):
    primary, mirror = servers
    target = target.format(port=unused_local_port())  # urllib itself would follow ftp://
    primary.faults[DATA] = [("redirect", target)] * 5
    download(tmp_path, servers)
    assert primary.gets(DATA) == [(None, 302)]  # not retried: no later try can help
    said = capsys.readouterr().err
    scheme = target.split(":")[0]
    assert f"the server redirected to a refused address, {target!r} ({scheme} address" in said
    assert "loop" not in said
    assert read_manifest(tmp_path / SIZE)[DATA]["source"].startswith(mirror.url)
    assert_same_files(served[0], tmp_path / SIZE)


def test_a_body_without_content_length_is_accepted_once_verified(tmp_path, served, servers):
    primary, mirror = servers
    primary.faults[DATA] = ["no_length"]
    download(tmp_path, servers)
    assert primary.gets(DATA) == [(None, 200)] and mirror.requests == []
    assert_same_files(served[0], tmp_path / SIZE)


# ---- 4. one download per folder at a time --------------------------------------------------------

def test_two_processes_downloading_the_same_size_take_turns(tmp_path, served, servers):
    primary, mirror = servers
    second_is_waiting = threading.Event()

    def hold_the_first_download(request):  # the first process's first request waits for the second
        second_is_waiting.wait(timeout=60)

    primary.after_request = hold_the_first_download
    script = textwrap.dedent(f"""
        from gpt2_support.catalogue import KNOWN_HPARAMS
        from gpt2_support.ensure import ensure_gpt2_files
        del KNOWN_HPARAMS[{SIZE!r}]  # as the autouse fixture does
        ensure_gpt2_files({SIZE!r}, {str(tmp_path)!r}, base_url={primary.url!r}, mirror_url={mirror.url!r},
                          backoff=0.0, progress=False)
    """)
    first = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not primary.requests and time.monotonic() < deadline:  # the first holds the lock
        time.sleep(0.02)
    second = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    waiting_line = second.stderr.readline()  # blocks until the second says it waits
    second_is_waiting.set()
    primary.after_request = None
    first_err, second_err = first.communicate(timeout=60)[1], second.communicate(timeout=60)[1]
    assert first.returncode == 0, first_err
    assert second.returncode == 0, waiting_line + second_err
    assert waiting_line.startswith("Waiting for another process that is downloading into")
    gets = sorted(request.file for request in primary.requests if request.method == "GET")
    assert gets == sorted(FILES)  # each file once: the second process asked for nothing
    assert_same_files(served[0], tmp_path / SIZE)


# ---- 5. no writes through links ------------------------------------------------------------------

@pytest.mark.skipif(os.name == "nt", reason="creating symbolic links needs privileges on Windows")
def test_links_planted_in_the_folder_are_never_written_through(tmp_path, served, servers):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    models_dir = tmp_path / "models"
    model_dir = models_dir / SIZE
    model_dir.mkdir(parents=True)
    for name in (DATA + ".part", DATA + ".part.json", "hparams.json.part", f"manifest.json.{os.getpid()}.partial",
                 "vocab.bpe"):
        (model_dir / name).symlink_to(victim)
    (models_dir / f"{SIZE}.lock").symlink_to(victim)
    download(models_dir, servers)
    assert victim.read_text() == "precious"
    assert_same_files(served[0], model_dir)
    assert not [path for path in [*model_dir.iterdir(), *models_dir.iterdir()] if path.is_symlink()]


# ---- 6. every error names the file, the folder and what to do ------------------------------------

@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="finds the file behind a descriptor in /proc")
def test_a_full_disk_stops_with_an_error_naming_the_file_the_folder_and_the_fix(tmp_path, served, servers,
                                                                                monkeypatch):
    real_write = os.write

    def write(file_descriptor, data):  # the disk fills up while the weights are written
        if os.readlink(f"/proc/self/fd/{file_descriptor}").endswith(DATA + ".part"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(file_descriptor, data)

    monkeypatch.setattr(os, "write", write)
    with pytest.raises(DownloadError) as error:
        download(tmp_path, servers)
    message = str(error.value)
    assert str(tmp_path / SIZE / (DATA + ".part")) in message
    assert os.strerror(errno.ENOSPC) in message
    assert f"free space on the disk that holds {tmp_path / SIZE}/" in message and "models_dir=" in message
    assert_not_recorded(tmp_path / SIZE, DATA)
    assert len(servers[0].gets(DATA)) == 1 and servers[1].requests == []  # no retry can help


def test_a_folder_that_cannot_be_written_gives_an_error_naming_it_and_the_fix(tmp_path, servers, monkeypatch):
    deny_writes_under(tmp_path, monkeypatch)
    with pytest.raises(DownloadError) as error:
        download(tmp_path, servers)
    message = str(error.value)
    assert str(tmp_path / f"{SIZE}.lock") in message and os.strerror(errno.EACCES) in message
    assert f"make {tmp_path}/ and its files readable and writable for this user, or pass models_dir=" in message


def deny_writes_under(folder, monkeypatch, only=lambda path: True):
    """Make os.open refuse to open files under `folder` for writing, as a folder without write
    permission does (the tests run as root, for whom chmod would not)."""
    real_open = os.open

    def guarded_open(path, flags, *args, **kwargs):
        if Path(path).is_relative_to(folder) and flags & (os.O_WRONLY | os.O_RDWR) and only(Path(path)):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded_open)


def test_a_part_file_that_cannot_be_written_gives_an_error_naming_it(tmp_path, servers, monkeypatch):
    deny_writes_under(tmp_path, monkeypatch, only=lambda path: path.name.endswith(".part"))
    with pytest.raises(DownloadError) as error:
        download(tmp_path, servers)
    message = str(error.value)
    assert f"Could not open for writing {tmp_path / SIZE / 'checkpoint.part'} ({os.strerror(errno.EACCES)})" in message
    assert f"make {tmp_path / SIZE}/ and its files readable and writable" in message


def test_a_complete_folder_that_cannot_be_written_is_used_as_it_is(tmp_path, served, servers, monkeypatch):
    download(tmp_path / "recorded", servers)  # with a manifest
    shutil.copytree(served[0] / SIZE, tmp_path / "by_hand" / SIZE)  # without one
    deny_writes_under(tmp_path, monkeypatch)
    for server in servers:
        server.stop()
    for models_dir in (tmp_path / "recorded", tmp_path / "by_hand"):
        hparams, params = download(models_dir, servers)
        assert hparams == TINY
    assert not (tmp_path / "by_hand" / SIZE / MANIFEST).exists()  # verified, nothing written


@pytest.mark.parametrize("url", ["openaipublic.blob.core.windows.net/gpt-2/models", "ftp://example.com/gpt2"])
def test_a_server_address_that_is_not_an_http_url_is_refused(tmp_path, url):
    with pytest.raises(ValueError, match="must be http:// or https:// URLs"):
        ensure_gpt2_files(SIZE, tmp_path, base_url=url)
    assert not (tmp_path / SIZE).exists()


# ---- 7. each file read as few times as possible ------------------------------------------------

def counting_sha256(monkeypatch):
    """Count the downloader's SHA-256 computations from now on (each file hashed is one; the fake servers'
    own hashing of what they serve is left out)."""
    real, hashed = hashlib.sha256, []

    def sha256(*args, **kwargs):
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if caller == "gpt_download" or caller.startswith("gpt2_support."):
            hashed.append(caller)
        return real(*args, **kwargs)

    monkeypatch.setattr(hashlib, "sha256", sha256)
    return hashed


def age(model_dir, seconds=60):
    """Set every file's modification time `seconds` back, as for a folder downloaded a while ago."""
    for path in model_dir.iterdir():
        info = path.stat()
        os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns - seconds * 10**9))


def without_network(monkeypatch):
    monkeypatch.setattr(socket, "create_connection", lambda *args, **kwargs: pytest.fail("network used"))


def test_a_fresh_download_hashes_each_file_once(tmp_path, served, servers, monkeypatch):
    """The SHA-256 in the manifest comes from the read that verified the file (the data file's: from its
    CRC32C pass), not from a second read."""
    hashed = counting_sha256(monkeypatch)
    download(tmp_path, servers)
    assert len(hashed) == len(FILES)


def test_an_unchanged_folder_is_not_hashed_again(tmp_path, served, servers, monkeypatch):
    download(tmp_path, servers)
    model_dir = tmp_path / SIZE
    age(model_dir)  # so every file is hashed once more, then recorded as it is on disk
    for server in servers:
        server.stop()
    without_network(monkeypatch)
    download(tmp_path, servers)
    on_disk = {name: entry["on_disk"] for name, entry in read_manifest(model_dir).items()}
    assert sorted(on_disk) == sorted(FILES)
    assert on_disk[DATA]["inode"] == (model_dir / DATA).stat().st_ino
    hashed = counting_sha256(monkeypatch)
    hparams, params = download(tmp_path, servers)
    assert hashed == []  # no file read but to load it
    assert hparams == TINY
    for name, array in flat(served[1]).items():
        assert np.array_equal(flat(params)[name], array), name


def rewrite_in_place(path, data, mtime_ns):
    """Write `data` into the file at `path` itself (same inode), then give it this modification time."""
    with open(path, "r+b") as file:
        file.write(data)
        file.truncate()
    os.utime(path, ns=(mtime_ns, mtime_ns))


def recorded_folder(tmp_path, servers):
    """A folder downloaded, aged and recorded as it is on disk: (its data file, that file's on-disk record,
    its bytes), with the servers' request logs cleared."""
    download(tmp_path, servers)
    model_dir = tmp_path / SIZE
    age(model_dir)
    download(tmp_path, servers)
    data_file, recorded = model_dir / DATA, read_manifest(model_dir)[DATA]["on_disk"]
    servers[0].requests.clear()
    return data_file, recorded, data_file.read_bytes()


def test_a_file_rewritten_in_place_with_a_new_time_is_verified_again(tmp_path, served, servers, monkeypatch):
    data_file, recorded, good = recorded_folder(tmp_path, servers)
    model_dir = data_file.parent

    rewrite_in_place(data_file, good, recorded["mtime_ns"] + 10**9)  # the same bytes, a second later
    hashed = counting_sha256(monkeypatch)
    download(tmp_path, servers)
    assert len(hashed) == 1 and not servers[0].gets(DATA)  # hashed, found as recorded, nothing fetched
    assert read_manifest(model_dir)[DATA]["on_disk"]["mtime_ns"] == recorded["mtime_ns"] + 10**9

    rewrite_in_place(data_file, flipped(good, len(good) // 2), recorded["mtime_ns"] + 2 * 10**9)  # same size
    download(tmp_path, servers)
    assert servers[0].gets(DATA) == [(None, 200)]  # the damage was seen, and a good copy fetched
    assert data_file.read_bytes() == good


def test_a_file_changed_in_place_with_its_time_set_back_is_verified_again(tmp_path, served, servers):
    """Same size, same modification time (`touch -r`, `rsync --inplace -t`), same inode: only the
    status-change time, which no program can set back, shows the change."""
    data_file, recorded, good = recorded_folder(tmp_path, servers)
    time.sleep(0.05)  # past the file system clock's tick, so the status-change time moves
    rewrite_in_place(data_file, flipped(good, len(good) // 2), recorded["mtime_ns"])
    info = data_file.stat()
    assert (info.st_size, info.st_mtime_ns, info.st_ino) == (recorded["size"], recorded["mtime_ns"], recorded["inode"])
    download(tmp_path, servers)
    assert servers[0].gets(DATA) == [(None, 200)]  # the damage was seen, and a good copy fetched
    assert data_file.read_bytes() == good


def test_a_downloaded_file_is_recorded_as_it_is_under_its_final_name(tmp_path, served, servers):
    """Verified as its .part, a file is recorded with the status-change time its rename gave it, so the
    next call need not read it again."""
    download(tmp_path, servers)
    model_dir = tmp_path / SIZE
    records = {name: entry["on_disk"] for name, entry in read_manifest(model_dir).items() if "on_disk" in entry}
    assert DATA in records or len(records) >= len(FILES) - 1  # one file may be as new as the manifest
    for name, on_disk in records.items():
        assert on_disk["ctime_ns"] == (model_dir / name).stat().st_ctime_ns, name


def test_a_file_changed_while_it_is_verified_is_not_recorded(tmp_path, served, servers, monkeypatch):
    """hparams.json (774M: no published SHA-256) is read by its check, then hashed for the manifest: were it
    changed between the two reads, the manifest would vouch for bytes nobody checked."""
    check = gpt2_support.verify._content_problem
    changed = []

    def check_then_change(model_dir, model_size, name, path, digest):
        problem = check(model_dir, model_size, name, path, digest)
        if name == "hparams.json" and not changed:
            time.sleep(0.05)
            text = path.read_text()
            path.write_text(text.replace('16', '17', 1))  # n_ctx: one byte, the same size
            changed.append(path)
        return problem

    monkeypatch.setattr(gpt2_support.verify, "_content_problem", check_then_change)
    hparams, _ = download(tmp_path, servers)
    assert changed and hparams == TINY  # refused, fetched whole once more, verified
    assert (tmp_path / SIZE / "hparams.json").read_bytes() == served_bytes(served, "hparams.json")
    assert read_manifest(tmp_path / SIZE)["hparams.json"]["sha256"] == sha256_of(tmp_path / SIZE / "hparams.json")


def test_a_manifest_entry_with_unexpected_keys_is_read_like_any_other(tmp_path, served, servers, monkeypatch):
    download(tmp_path, servers)
    model_dir = tmp_path / SIZE
    manifest = json.loads((model_dir / MANIFEST).read_text())
    manifest["files"]["hparams.json"].update({"info": 1, "path": "elsewhere", "fields": None, "sha256x": ""})
    (model_dir / MANIFEST).write_text(json.dumps(manifest))
    without_network(monkeypatch)
    assert download(tmp_path, servers)[0] == TINY


def test_a_file_replaced_by_one_of_the_same_size_and_time_is_verified_again(tmp_path, served, servers):
    """Only the inode tells this one apart (a copy that kept the time, say): it is hashed, found wrong,
    and fetched again."""
    data_file, recorded, good = recorded_folder(tmp_path, servers)
    other = tmp_path / "other"
    other.write_bytes(flipped(good, len(good) // 2))
    os.utime(other, ns=(recorded["mtime_ns"], recorded["mtime_ns"]))
    os.replace(other, data_file)
    assert (data_file.stat().st_size, data_file.stat().st_mtime_ns) == (recorded["size"], recorded["mtime_ns"])
    download(tmp_path, servers)
    assert servers[0].gets(DATA) == [(None, 200)]
    assert data_file.read_bytes() == good


def test_a_file_as_new_as_the_manifest_is_not_vouched_for_by_its_time(tmp_path, served, servers, monkeypatch):
    """A file modified in the same tick of the disk's clock as the manifest is written could change again
    within that tick without its time changing: it is hashed next time rather than trusted (here its time
    is set ahead of the clock, the same case)."""
    download(tmp_path, servers)
    model_dir = tmp_path / SIZE
    age(model_dir)
    ahead = time.time_ns() + 3600 * 10**9
    os.utime(model_dir / DATA, ns=(ahead, ahead))
    download(tmp_path, servers)  # hashed again (its time changed) and found as recorded
    manifest = read_manifest(model_dir)
    assert "on_disk" not in manifest[DATA] and "on_disk" in manifest["hparams.json"]
    hashed = counting_sha256(monkeypatch)
    download(tmp_path, servers)
    assert hashed == ["gpt2_support.files"]  # the data file, and only it


def test_a_manifest_without_on_disk_records_still_works_and_gains_them(tmp_path, served, servers, monkeypatch):
    """A manifest written before files were recorded as they are on disk: every file is hashed once,
    offline, then recorded; the call after that reads none of them."""
    download(tmp_path, servers)
    model_dir = tmp_path / SIZE
    age(model_dir)
    manifest = json.loads((model_dir / MANIFEST).read_text())
    for entry in manifest["files"].values():
        del entry["on_disk"]
    (model_dir / MANIFEST).write_text(json.dumps(manifest))
    for server in servers:
        server.stop()
    without_network(monkeypatch)
    hashed = counting_sha256(monkeypatch)
    hparams, _ = download(tmp_path, servers)
    assert hparams == TINY and len(hashed) == len(FILES)
    assert all("on_disk" in entry for entry in read_manifest(model_dir).values())
    hashed.clear()
    download(tmp_path, servers)
    assert hashed == []


def test_a_folder_that_cannot_be_written_is_hashed_and_used_without_recording(tmp_path, served, servers,
                                                                            monkeypatch):
    download(tmp_path, servers)
    model_dir = tmp_path / SIZE
    age(model_dir)  # the records no longer match: every file is hashed again
    manifest = (model_dir / MANIFEST).read_bytes()
    deny_writes_under(tmp_path, monkeypatch)
    hashed = counting_sha256(monkeypatch)
    hparams, _ = download(tmp_path, servers)
    assert hparams == TINY and len(hashed) == len(FILES)
    assert (model_dir / MANIFEST).read_bytes() == manifest  # nothing written, and no error


def test_the_public_face_re_exports_the_package(tmp_path):
    import gpt2_support.catalogue
    import gpt2_support.hub
    import gpt2_support.tf_checkpoint

    for name in gpt_download.__all__:
        assert getattr(gpt_download, name) is not None, name
    assert gpt_download.KNOWN_HPARAMS is gpt2_support.catalogue.KNOWN_HPARAMS  # one table, not a copy
    assert gpt_download.load_gpt2_params_from_tf_ckpt is gpt2_support.tf_checkpoint.load_gpt2_params_from_tf_ckpt
    assert gpt_download.load_gpt2_params_from_safetensors is gpt2_support.hub.load_gpt2_params_from_safetensors


# ---- the reader and the writer ------------------------------------------------------------------

def test_writer_and_reader_round_trip_exactly(tmp_path):
    params = writer.random_gpt2_params(TINY, seed=7)
    model_dir = writer.write_gpt2_checkpoint(params, TINY, tmp_path / "tiny")
    assert sorted(p.name for p in model_dir.iterdir()) == sorted([*FILES, "manifest.json"])
    assert json.loads((model_dir / "hparams.json").read_text()) == TINY
    assert (model_dir / "checkpoint").read_text().startswith('model_checkpoint_path: "model.ckpt"')
    loaded = load_gpt2_params_from_tf_ckpt(model_dir / "model.ckpt", TINY)
    assert loaded["blocks"][1]["attn"]["c_attn"]["w"].shape == (8, 24)  # [1, in, out] squeezed
    assert loaded["g"].shape == (8,)  # ln_f at the top level
    for name, array in flat(params).items():
        assert np.array_equal(flat(loaded)[name], array), name


def test_writer_replaces_an_earlier_folder_only_when_it_succeeds(served, tmp_path):
    served_root, first = served
    model_dir = shutil.copytree(served_root / SIZE, tmp_path / "m")  # a folder the writer wrote
    broken = writer.random_gpt2_params(TINY, seed=2)
    broken["blocks"][0]["mlp"]["c_fc"]["w"] = np.zeros((3, 3), np.float32)
    with pytest.raises(ValueError, match="model/h0/mlp/c_fc/w"):
        writer.write_gpt2_checkpoint(broken, TINY, model_dir)
    loaded = load_gpt2_params_from_tf_ckpt(model_dir / "model.ckpt", TINY)
    assert np.array_equal(loaded["wte"], first["wte"])
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporary folder left


def test_written_124M_checkpoint_has_openai_names_shapes_and_byte_count(tmp_path):
    """OpenAI's 124M release: 148 variables, e.g. model/h0/attn/c_attn/w [1, 768, 2304], and a data
    file of 497,759,232 bytes. Our writer, given 124M hparams, must produce exactly that. (That our
    reader lists what TensorFlow's lists is tested in test_checkpoint_reader.py.)"""
    hparams = {"n_vocab": 50257, "n_ctx": 1024, "n_embd": 768, "n_head": 12, "n_layer": 12}
    shapes = openai_variable_shapes(hparams)
    params = variables_to_params(
        {name: np.zeros(shape, np.float32) for name, shape in shapes.items()}, hparams)
    model_dir = writer.write_gpt2_checkpoint(params, hparams, tmp_path / "124M")
    written = checkpoint_variables(model_dir / "model.ckpt")
    assert len(written) == 148
    assert written["model/h0/attn/c_attn/w"] == (1, 768, 2304)
    assert written["model/h11/mlp/c_proj/w"] == (1, 3072, 768)
    assert written["model/wte"] == (50257, 768) and written["model/wpe"] == (1024, 768)
    assert written["model/ln_f/g"] == (768,)
    assert written == shapes
    assert (model_dir / DATA).stat().st_size == 497_759_232
    for name in ("checkpoint", "hparams.json"):  # the small files are OpenAI's, byte for byte
        assert sha256_of(model_dir / name) == known_sha256("124M", name), name


def test_reader_names_a_variable_whose_shape_disagrees_with_hparams(served):
    served_root, _ = served
    model_dir = served_root / SIZE
    with pytest.raises(ValueError, match="model/wpe"):
        load_gpt2_params_from_tf_ckpt(model_dir / "model.ckpt", {**TINY, "n_ctx": 32})


def test_reader_names_variables_hparams_json_does_not_imply(served, tmp_path):
    # A checkpoint with three blocks read with hparams.json saying two: before, the third block was
    # silently dropped.
    three_blocks = {**TINY, "n_layer": 3}
    folder = writer.write_gpt2_checkpoint(writer.random_gpt2_params(three_blocks, seed=3), three_blocks, tmp_path / "m")
    with pytest.raises(ValueError, match=r"12 variables hparams.json does not imply, e\.g\. \['model/h2/attn/c_attn/b'"):
        load_gpt2_params_from_tf_ckpt(folder / "model.ckpt", TINY)
