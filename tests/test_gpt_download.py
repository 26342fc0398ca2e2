"""gpt_download.py against a local HTTP server that serves OpenAI's layout, with faults injected.

Nothing here touches the internet: the primary and the mirror are two FakeGPT2Server instances on
127.0.0.1 serving a tiny random checkpoint written by gpt_download's own writer. The size "774M" is
used because its files have no known byte count (the 124M and 355M data files do, and a tiny stand-in
would rightly be rejected under those names: a test checks that too).
"""

import json
import shutil
import socket
import time
import urllib.request

import numpy as np
import pytest

from fake_openai_server import FakeGPT2Server, unused_local_port

import gpt2_from_scratch.weights as writer  # 03's checkpoint writer
import gpt_download  # on sys.path through conftest.py

TINY = {"n_vocab": 100, "n_ctx": 16, "n_embd": 8, "n_head": 2, "n_layer": 2}
SIZE = "774M"
DATA = "model.ckpt.data-00000-of-00001"


def flat(params):
    return writer.params_to_variables(params, TINY)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A folder holding <size>/<OpenAI's seven files> for a tiny random model, and its params."""
    root = tmp_path_factory.mktemp("served")
    params = writer.random_gpt2_params(TINY, seed=1)
    writer.write_gpt2_checkpoint(params, TINY, root / SIZE)
    (root / SIZE / gpt_download.MANIFEST).unlink()  # OpenAI's bucket has no manifest
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


def assert_same_files(served_root, model_dir, size=SIZE):
    for name in gpt_download.FILES:
        assert (model_dir / name).read_bytes() == (served_root / size / name).read_bytes(), name
    assert not list(model_dir.glob("*.part")), "a .part file was left behind"


def test_full_download_verifies_and_records_every_file(tmp_path, served, servers):
    root, params = served
    hparams, loaded = download(tmp_path, servers)
    assert hparams == TINY
    for name, array in flat(params).items():
        assert np.array_equal(flat(loaded)[name], array), name
    assert_same_files(root, tmp_path / SIZE)
    manifest = gpt_download.read_manifest(tmp_path / SIZE)
    assert sorted(manifest) == sorted(gpt_download.FILES)
    assert manifest[DATA]["size"] == (root / SIZE / DATA).stat().st_size
    assert manifest[DATA]["sha256"] == gpt_download.sha256_of(root / SIZE / DATA)
    assert servers[1].requests == []  # the mirror was not needed


def test_primary_answering_500_falls_back_to_the_mirror(tmp_path, served, servers):
    primary, mirror = servers
    primary.status_for_all = 500
    download(tmp_path, servers, retries=2)
    assert_same_files(served[0], tmp_path / SIZE)
    assert len(primary.gets("checkpoint")) == 2  # retried, then gave up on the primary
    sources = {entry["source"] for entry in gpt_download.read_manifest(tmp_path / SIZE).values()}
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


def test_connection_cut_mid_file_resumes_with_a_range_request(tmp_path, served, servers):
    primary, _ = servers
    size = (served[0] / SIZE / DATA).stat().st_size
    primary.cut_after[DATA] = size // 3
    download(tmp_path, servers)
    assert primary.gets(DATA) == [(None, 200), (f"bytes={size // 3}-", 206)]
    assert_same_files(served[0], tmp_path / SIZE)


def test_server_ignoring_range_restarts_the_file_cleanly(tmp_path, served, servers):
    primary, _ = servers
    primary.ignore_range = True
    model_dir = tmp_path / SIZE
    model_dir.mkdir()
    (model_dir / (DATA + ".part")).write_bytes(b"stale bytes from another file")
    download(tmp_path, servers)
    assert primary.gets(DATA) == [("bytes=29-", 200)]
    assert_same_files(served[0], model_dir)


def test_file_truncated_after_download_is_fetched_again(tmp_path, served, servers):
    primary, _ = servers
    download(tmp_path, servers)
    data_file = tmp_path / SIZE / DATA
    data_file.write_bytes(data_file.read_bytes()[:100])
    primary.requests.clear()
    download(tmp_path, servers)
    assert_same_files(served[0], tmp_path / SIZE)
    assert {file for _, file, _, _ in primary.requests} == {DATA}  # only the damaged file


def test_files_without_a_manifest_are_checked_against_the_server(tmp_path, served, servers):
    """Files left by another downloader (no manifest): intact ones are kept after a HEAD request,
    a truncated one is fetched again."""
    primary, _ = servers
    model_dir = tmp_path / SIZE
    shutil.copytree(served[0] / SIZE, model_dir)
    (model_dir / DATA).write_bytes((served[0] / SIZE / DATA).read_bytes()[:-1])
    download(tmp_path, servers)
    assert_same_files(served[0], model_dir)
    gets = {file for method, file, _, _ in primary.requests if method == "GET"}
    assert gets == {DATA}


def test_tampered_vocab_bpe_is_rejected(tmp_path, served, servers):
    for server in servers:
        server.replace_body["vocab.bpe"] = (served[0] / SIZE / "vocab.bpe").read_bytes() + b"x"
    with pytest.raises(gpt_download.DownloadError, match="vocab.bpe") as error:
        download(tmp_path, servers)
    assert "SHA-256" in str(error.value)
    assert not (tmp_path / SIZE / "vocab.bpe").exists()
    assert not (tmp_path / SIZE / "vocab.bpe.part").exists()


def test_second_call_needs_no_server_and_no_network(tmp_path, served, servers, monkeypatch):
    _, first = download(tmp_path, servers)
    for server in servers:
        server.stop()

    def no_network(*args, **kwargs):
        raise AssertionError("download_and_load_gpt2 made a network request")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    _, second = download(tmp_path, servers)
    for name, array in flat(first).items():
        assert np.array_equal(flat(second)[name], array)


def closed_port_url():
    return f"http://127.0.0.1:{unused_local_port()}/gpt-2/models"


def test_no_files_and_no_server_fails_quickly_and_says_what_to_do(tmp_path):
    url = closed_port_url()
    started = time.perf_counter()
    with pytest.raises(gpt_download.DownloadError) as error:  # default retries and backoff
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


def test_known_size_of_the_124M_weights_is_enforced(tmp_path, servers):
    """The tiny stand-in served as "124M" is not 497,759,232 bytes: rejected from both sources."""
    with pytest.raises(gpt_download.DownloadError, match="497,759,232"):
        download(tmp_path, servers, size="124M")
    assert not (tmp_path / "124M" / DATA).exists()


def test_urls_are_joined_as_strings_and_the_environment_can_override_them(tmp_path, served, servers,
                                                                         monkeypatch):
    primary, mirror = servers
    monkeypatch.setenv("GPT2_BASE_URL", primary.url + "/")  # a trailing slash is harmless
    monkeypatch.setenv("GPT2_MIRROR_URL", mirror.url)
    gpt_download.ensure_gpt2_files(SIZE, tmp_path, backoff=0.0, progress=False)
    assert len(primary.gets("checkpoint")) == 1
    entry = gpt_download.read_manifest(tmp_path / SIZE)["checkpoint"]
    assert entry["source"] == f"{primary.url}/{SIZE}/checkpoint"


# ---- the reader and the writer ------------------------------------------------------------------

def test_writer_and_reader_round_trip_exactly(tmp_path):
    params = writer.random_gpt2_params(TINY, seed=7)
    model_dir = writer.write_gpt2_checkpoint(params, TINY, tmp_path / "tiny")
    assert sorted(p.name for p in model_dir.iterdir()) == sorted([*gpt_download.FILES, "manifest.json"])
    assert json.loads((model_dir / "hparams.json").read_text()) == TINY
    assert (model_dir / "checkpoint").read_text().startswith('model_checkpoint_path: "model.ckpt"')
    loaded = gpt_download.load_gpt2_params_from_tf_ckpt(model_dir / "model.ckpt", TINY)
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
    loaded = gpt_download.load_gpt2_params_from_tf_ckpt(model_dir / "model.ckpt", TINY)
    assert np.array_equal(loaded["wte"], first["wte"])
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporary folder left


def test_written_124M_checkpoint_has_openai_names_shapes_and_byte_count(tmp_path):
    """OpenAI's 124M release: 148 variables, e.g. model/h0/attn/c_attn/w [1, 768, 2304], and a data
    file of 497,759,232 bytes. Our writer, given 124M hparams, must produce exactly that. (That our
    reader lists what TensorFlow's lists is tested in test_checkpoint_reader.py.)"""
    hparams = {"n_vocab": 50257, "n_ctx": 1024, "n_embd": 768, "n_head": 12, "n_layer": 12}
    shapes = gpt_download.openai_variable_shapes(hparams)
    params = gpt_download.variables_to_params(
        {name: np.zeros(shape, np.float32) for name, shape in shapes.items()}, hparams)
    model_dir = writer.write_gpt2_checkpoint(params, hparams, tmp_path / "124M")
    written = gpt_download.checkpoint_variables(model_dir / "model.ckpt")
    assert len(written) == 148
    assert written["model/h0/attn/c_attn/w"] == (1, 768, 2304)
    assert written["model/h11/mlp/c_proj/w"] == (1, 3072, 768)
    assert written["model/wte"] == (50257, 768) and written["model/wpe"] == (1024, 768)
    assert written["model/ln_f/g"] == (768,)
    assert written == shapes
    assert (model_dir / DATA).stat().st_size == 497_759_232


def test_reader_names_a_variable_whose_shape_disagrees_with_hparams(served):
    served_root, _ = served
    model_dir = served_root / SIZE
    with pytest.raises(ValueError, match="model/wpe"):
        gpt_download.load_gpt2_params_from_tf_ckpt(model_dir / "model.ckpt", {**TINY, "n_ctx": 32})


def test_reader_names_variables_hparams_json_does_not_imply(served, tmp_path):
    # A checkpoint with three blocks read with hparams.json saying two: before, the third block was
    # silently dropped.
    three_blocks = {**TINY, "n_layer": 3}
    folder = writer.write_gpt2_checkpoint(writer.random_gpt2_params(three_blocks, seed=3), three_blocks, tmp_path / "m")
    with pytest.raises(ValueError, match=r"12 variables hparams.json does not imply, e\.g\. \['model/h2/attn/c_attn/b'"):
        gpt_download.load_gpt2_params_from_tf_ckpt(folder / "model.ckpt", TINY)


def test_retries_must_be_at_least_one(tmp_path, servers):
    with pytest.raises(ValueError, match="retries must be at least 1"):
        download(tmp_path, servers, retries=0)
    assert not (tmp_path / SIZE).exists() or not any((tmp_path / SIZE).iterdir())


@pytest.mark.parametrize("manifest", [
    {"files": ["checkpoint"]},
    {"files": {"checkpoint": "not a record"}},
    {"files": {"checkpoint": {"size": "12", "sha256": None}}},
    ["not", "a", "manifest"],
])
def test_a_manifest_with_wrong_types_is_treated_as_absent(tmp_path, served, servers, manifest):
    root, _ = served
    download(tmp_path, servers)
    (tmp_path / SIZE / gpt_download.MANIFEST).write_text(json.dumps(manifest))
    hparams, _ = download(tmp_path, servers)  # every file is checked again, as if found without a record
    assert hparams == TINY
    assert sorted(gpt_download.read_manifest(tmp_path / SIZE)) == sorted(gpt_download.FILES)
    assert_same_files(root, tmp_path / SIZE)
