"""The downloader's second source: the Hugging Face Hub's model.safetensors and config.json, fetched from a
local server that answers as the Hub does (a redirect to storage carrying X-Linked-Etag), with the same
guarantees as OpenAI's files, and read into the same params.

The models are random and tiny. transformers writes the Hub's files (save_pretrained with
safe_serialization=True); 03's checkpoint writer writes the same weights in OpenAI's format. As in
test_gpt_download, the size "774M" is used because its files have no published hash, and the fact that its
published config (36 layers of 1280) would rightly refuse the tiny model is set aside.
"""

import shutil
import socket
import urllib.request

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

import gpt2_from_scratch.weights as nb03  # 03's writer, loader and Hugging Face bridge
import gpt_download  # the public face: download_and_load_gpt2
from gpt2_support.catalogue import HF_FILES, HF_REPOS, HF_REVISIONS, KNOWN_HPARAMS, KNOWN_SHA256, KNOWN_SIZES
from gpt2_support.files import DownloadError, sha256_of
from gpt2_support.verify import MANIFEST, read_manifest
from fake_openai_server import FakeGPT2Server

TINY = {"n_vocab": 100, "n_ctx": 16, "n_embd": 8, "n_head": 2, "n_layer": 2}
SIZE = "774M"
REPO = HF_REPOS[SIZE]
HUB_LAYOUT_SIZE = "1558M"  # served as the Hub's own file is laid out (see `published`)
WEIGHTS = "model.safetensors"


@pytest.fixture(autouse=True)
def size_without_published_hparams(monkeypatch):
    monkeypatch.delitem(KNOWN_HPARAMS, SIZE)
    monkeypatch.delitem(KNOWN_HPARAMS, HUB_LAYOUT_SIZE)


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """One random model published both ways: the Hub's files (by transformers) and OpenAI's (by 03)."""
    params = nb03.random_gpt2_params(TINY, seed=3)
    hub_root, openai_root = tmp_path_factory.mktemp("hub"), tmp_path_factory.mktemp("openai")
    hf_model = nb03.to_hugging_face(params, TINY)
    hf_model.save_pretrained(hub_root / REPO, safe_serialization=True)
    # The Hub's own files differ from what save_pretrained writes: no "transformer." before the names, and
    # each block's causal-mask buffers saved beside the weights (older versions of transformers kept them).
    hub_layout = {name.removeprefix("transformer."): array
                  for name, array in load_file(hub_root / REPO / WEIGHTS).items()}
    for block in range(TINY["n_layer"]):
        hub_layout[f"h.{block}.attn.bias"] = np.tril(np.ones((TINY["n_ctx"],) * 2, np.float32))[None, None]
        hub_layout[f"h.{block}.attn.masked_bias"] = np.array(-1e4, np.float32)
    (hub_root / HF_REPOS[HUB_LAYOUT_SIZE]).mkdir(parents=True)
    save_file(hub_layout, hub_root / HF_REPOS[HUB_LAYOUT_SIZE] / WEIGHTS, metadata={"format": "pt"})
    shutil.copyfile(hub_root / REPO / "config.json", hub_root / HF_REPOS[HUB_LAYOUT_SIZE] / "config.json")
    nb03.write_gpt2_checkpoint(params, TINY, openai_root / SIZE)
    (openai_root / SIZE / MANIFEST).unlink()  # a server has no manifest
    return {"params": params, "hf_model": hf_model, "hub_root": hub_root, "openai_root": openai_root}


@pytest.fixture
def hub(published):
    server = FakeGPT2Server(published["hub_root"], "hub", hub=True).start()
    yield server
    server.stop()


def download(models_dir, hub, size=SIZE, **kwargs):
    return gpt_download.download_and_load_gpt2(size, models_dir, source="huggingface", base_url=hub.url,
                                               backoff=0.0, progress=False, **kwargs)


def variables(params):
    return nb03.params_to_variables(params, TINY)


def assert_same_params(params, expected):
    actual, wanted = variables(params), variables(expected)
    assert sorted(actual) == sorted(wanted)
    for name in wanted:
        assert np.array_equal(actual[name], wanted[name]), name  # bit for bit


def test_the_hubs_files_give_the_same_params_as_openais_and_hugging_faces_logits(tmp_path, published, hub):
    hparams, params = download(tmp_path, hub)
    assert hparams == TINY
    openai_server = FakeGPT2Server(published["openai_root"], "gpt-2/models").start()
    try:
        openai_hparams, openai_params = gpt_download.download_and_load_gpt2(
            SIZE, tmp_path, source="openai", base_url=openai_server.url, mirror_url=openai_server.url,
            backoff=0.0, progress=False)
    finally:
        openai_server.stop()
    assert openai_hparams == hparams
    assert_same_params(params, openai_params)
    model = nb03.gpt_for_checkpoint(hparams)
    nb03.load_weights_into_gpt(model, params)
    token_ids = torch.randint(0, TINY["n_vocab"], (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        difference = (model.eval()(token_ids) - published["hf_model"](token_ids).logits).abs().max().item()
    assert difference < 1e-5


def test_files_are_fetched_from_the_resolve_address_verified_and_recorded(tmp_path, published, hub):
    download(tmp_path, hub)
    model_dir = tmp_path / "huggingface" / SIZE
    assert sorted(path.name for path in model_dir.iterdir()) == sorted([*HF_FILES, MANIFEST])
    manifest = read_manifest(model_dir)
    for name in HF_FILES:
        served = (published["hub_root"] / REPO / name).read_bytes()
        assert (model_dir / name).read_bytes() == served
        assert manifest[name]["sha256"] == sha256_of(model_dir / name)
        assert manifest[name]["source"] == f"{hub.url}/{REPO}/resolve/main/{name}"
        assert manifest[name]["revision"] == hub.commit  # which version "main" was
    assert hub.gets(WEIGHTS) == [(None, 302), (None, 200)]  # the Hub's redirect, then its storage
    assert hub.gets("config.json") == [(None, 200)]


def test_a_second_call_makes_no_request_at_all(tmp_path, hub, monkeypatch):
    download(tmp_path, hub)
    hub.stop()

    def no_network(*args, **kwargs):
        raise AssertionError("network used")

    monkeypatch.setattr(urllib.request.OpenerDirector, "open", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    hparams, _ = gpt_download.download_and_load_gpt2(SIZE, tmp_path, source="huggingface", progress=False)
    assert hparams == TINY


def test_a_cut_connection_resumes_from_the_storage_with_range_and_if_range(tmp_path, published, hub):
    size = (published["hub_root"] / REPO / WEIGHTS).stat().st_size
    hub.faults[WEIGHTS] = [("cut", size // 3)]
    download(tmp_path, hub)
    storage = [(request.range, request.if_range is not None, request.status)
               for request in hub.requests if request.file == WEIGHTS and request.status != 302]
    assert storage == [(None, False, 200), (f"bytes={size // 3}-", True, 206)]
    assert (tmp_path / "huggingface" / SIZE / WEIGHTS).read_bytes() == (published["hub_root"] / REPO / WEIGHTS).read_bytes()


def test_the_hubs_own_layout_loads_through_the_download(tmp_path, published, hub):
    hparams, params = download(tmp_path, hub, size=HUB_LAYOUT_SIZE)
    assert hparams == TINY
    assert_same_params(params, published["params"])


def test_bytes_that_do_not_have_the_sha256_the_hub_named_are_never_used(tmp_path, published, hub):
    good = (published["hub_root"] / REPO / WEIGHTS).read_bytes()
    at = len(good) - 10  # a bit of a weight: the file's structure stays valid, only the hash tells
    hub.storage_body[WEIGHTS] = good[:at] + bytes([good[at] ^ 1]) + good[at + 1:]
    with pytest.raises(DownloadError) as raised:
        download(tmp_path, hub)
    message = str(raised.value)
    assert "but the server named " + sha256_of(published["hub_root"] / REPO / WEIGHTS) in message
    assert "HF_ENDPOINT" in message and 'source="openai"' in message  # what to do next
    model_dir = tmp_path / "huggingface" / SIZE
    assert not (model_dir / WEIGHTS).exists() and WEIGHTS not in read_manifest(model_dir)
    assert len([request for request in hub.requests if request.file == WEIGHTS and request.status == 200]) == 2


def test_the_named_sha256_still_holds_after_a_resume(tmp_path, published, hub):
    good = (published["hub_root"] / REPO / WEIGHTS).read_bytes()
    hub.storage_body[WEIGHTS] = good[:-10] + bytes([good[-10] ^ 1]) + good[-9:]
    hub.faults[WEIGHTS] = [("cut", len(good) // 2)]  # the damaged byte arrives in the resumed part
    with pytest.raises(DownloadError, match="but the server named " + sha256_of(
            published["hub_root"] / REPO / WEIGHTS)):
        download(tmp_path, hub)
    assert [(request.range is not None, request.status) for request in hub.requests
            if request.file == WEIGHTS and request.status != 302][:2] == [(False, 200), (True, 206)]


@pytest.mark.parametrize("later_hop", ["the storage's answer", "a second redirect, on another host"])
def test_the_first_sha256_the_hub_names_binds_and_a_later_hop_naming_another_is_refused(tmp_path, published, hub,
                                                                                       later_hop):
    """Other bytes, well-formed, arrive with a hash of their own named after the Hub's: they must not be
    verified against that later hash."""
    bias = "transformer.h.0.ln_1.bias"
    other = rewritten_weights(published, tmp_path, lambda tensors: tensors.update({bias: tensors[bias] + 1}))
    hubs_sha256, others_sha256 = (sha256_of(published["hub_root"] / REPO / WEIGHTS),
                                  sha256_of(tmp_path / "changed.safetensors"))
    relay = None
    if later_hop == "the storage's answer":
        hub.storage_body[WEIGHTS] = other
        hub.storage_headers[WEIGHTS] = {"X-Linked-Etag": f'"{others_sha256}"'}
    else:  # a second Hub-like server, which redirects to its own storage naming the other file's hash
        (tmp_path / "relay" / REPO).mkdir(parents=True)
        (tmp_path / "relay" / REPO / WEIGHTS).write_bytes(other)
        relay = FakeGPT2Server(tmp_path / "relay", "relay", hub=True).start()
        hub.redirect_to[WEIGHTS] = f"{relay.url}/{REPO}/resolve/main/{WEIGHTS}"
    try:
        with pytest.raises(DownloadError) as raised:
            download(tmp_path / "models", hub)
    finally:
        if relay is not None:
            relay.stop()
    message = str(raised.value)
    assert f"{WEIGHTS}: {hub.url}/{REPO}/resolve/main/{WEIGHTS} named SHA-256 {hubs_sha256}" in message
    assert f"names {others_sha256}; the first binds, so these bytes are refused. Try again later" in message
    model_dir = tmp_path / "models" / "huggingface" / SIZE
    assert not (model_dir / WEIGHTS).exists() and WEIGHTS not in read_manifest(model_dir)
    assert not list(model_dir.glob("*.part*"))
    assert hub.gets(WEIGHTS)[0] == (None, 302) and len(hub.gets(WEIGHTS)) <= 2  # asked once: no retry


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"n_embd": ' * 100_000], ids=["arrays", "objects"])
def test_a_config_nested_past_any_parser_is_refused_and_a_fixed_server_then_succeeds(tmp_path, hub, body):
    hub.replace_body["config.json"] = body
    with pytest.raises(DownloadError, match=r"(?s)Could not download config.json.*not a GPT-2 config"):
        download(tmp_path, hub)
    model_dir = tmp_path / "huggingface" / SIZE
    assert not (model_dir / "config.json").exists() and not list(model_dir.glob("*.part*"))
    del hub.replace_body["config.json"]
    hparams, _ = download(tmp_path, hub)
    assert hparams == TINY


def test_a_server_that_names_no_sha256_is_refused_for_the_weights(tmp_path, hub):
    hub.name_no_sha256 = True  # say, a mirror that passes the file on without the Hub's headers
    with pytest.raises(DownloadError, match="the server named no SHA-256 for it"):
        download(tmp_path, hub)
    assert not (tmp_path / "huggingface" / SIZE / WEIGHTS).exists()


def rewritten_weights(published, tmp_path, change):
    tensors = load_file(published["hub_root"] / REPO / WEIGHTS)
    change(tensors)
    save_file(tensors, tmp_path / "changed.safetensors")
    return (tmp_path / "changed.safetensors").read_bytes()


@pytest.mark.parametrize("change, finding", [
    (lambda tensors: tensors.pop("transformer.h.1.attn.c_proj.bias"),
     "lacks 1 tensors config.json implies, e.g. ['model/h1/attn/c_proj/b']"),
    (lambda tensors: tensors.update({"transformer.h.0.mlp.c_fc.weight": np.zeros((8, 31), np.float32)}),
     "transformer.h.0.mlp.c_fc.weight in model.safetensors.part is float32 [8, 31]; config.json implies float32 [8, 32]"),
])
def test_a_file_with_a_missing_or_misshapen_tensor_is_refused_naming_it(tmp_path, published, hub, change, finding):
    hub.replace_body[WEIGHTS] = rewritten_weights(published, tmp_path, change)  # the Hub names its hash
    with pytest.raises(DownloadError) as raised:
        download(tmp_path / "models", hub)
    assert finding in str(raised.value).replace(str(tmp_path / "models" / "huggingface" / SIZE) + "/", "")
    assert not (tmp_path / "models" / "huggingface" / SIZE / WEIGHTS).exists()


def test_124M_is_pinned_to_a_revision_and_checked_against_the_published_sha256(tmp_path, published, hub,
                                                                              monkeypatch):
    monkeypatch.delitem(KNOWN_HPARAMS, "124M")  # let the tiny config.json pass
    shutil.copytree(published["hub_root"] / REPO, published["hub_root"] / HF_REPOS["124M"],
                    dirs_exist_ok=True)
    revision = HF_REVISIONS["124M"]
    hub.revisions = {revision}  # any other revision is a 404
    with pytest.raises(DownloadError, match="bytes, expected 548,105,171"):  # its size first
        download(tmp_path, hub, size="124M")
    monkeypatch.delitem(KNOWN_SIZES, ("124M", WEIGHTS))
    with pytest.raises(DownloadError) as raised:
        download(tmp_path, hub, size="124M")
    assert "expected " + KNOWN_SHA256[("124M", WEIGHTS)] in str(raised.value)
    assert f"/resolve/{revision}/{WEIGHTS}" in str(raised.value)
    assert read_manifest(tmp_path / "huggingface" / "124M").keys() == {"config.json"}


def test_a_config_with_other_numbers_than_published_is_refused(tmp_path, published, hub):
    shutil.copytree(published["hub_root"] / REPO, published["hub_root"] / HF_REPOS["355M"],
                    dirs_exist_ok=True)  # the tiny model, served under 355M's repository
    with pytest.raises(DownloadError, match=r"config.json.*but OpenAI published .*'n_embd': 1024"):
        download(tmp_path, hub, size="355M")
    assert read_manifest(tmp_path / "huggingface" / "355M") == {}


def test_the_environment_picks_the_source_and_the_servers(tmp_path, published, hub, monkeypatch):
    down = FakeGPT2Server(published["hub_root"], "down", hub=True).start()
    down.status_for_all = 503
    try:
        monkeypatch.setenv("GPT2_WEIGHTS_SOURCE", "huggingface")
        monkeypatch.setenv("HF_ENDPOINT", down.url)
        monkeypatch.setenv("GPT2_HF_MIRROR_URL", hub.url)
        hparams, _ = gpt_download.download_and_load_gpt2(SIZE, tmp_path, backoff=0.0, progress=False)
    finally:
        down.stop()
    assert hparams == TINY
    # 3 tries for each file, then the mirror
    assert [(request.file, request.status) for request in down.requests] == [("config.json", 503)] * 3 + [(WEIGHTS, 503)] * 3
    assert (tmp_path / "huggingface" / SIZE / WEIGHTS).is_file() and not (tmp_path / SIZE).exists()
    monkeypatch.setenv("GPT2_WEIGHTS_SOURCE", "hub")
    with pytest.raises(ValueError, match="GPT2_WEIGHTS_SOURCE must be 'openai' or 'huggingface'; got 'hub'"):
        gpt_download.download_and_load_gpt2(SIZE, tmp_path)


def test_files_placed_by_hand_are_verified_by_content_then_used_offline(tmp_path, published, monkeypatch):
    model_dir = tmp_path / "huggingface" / SIZE
    model_dir.mkdir(parents=True)
    for name in HF_FILES:
        shutil.copyfile(published["hub_root"] / REPO / name, model_dir / name)
    monkeypatch.setattr(socket, "create_connection", lambda *args, **kwargs: pytest.fail("network used"))
    hparams, params = gpt_download.download_and_load_gpt2(SIZE, tmp_path, source="huggingface", progress=False)
    assert hparams == TINY
    assert_same_params(params, published["params"])
    assert {entry["source"] for entry in read_manifest(model_dir).values()} == {"found on disk"}


def test_03s_hub_writer_writes_what_the_reader_and_transformers_read(tmp_path, published):
    from transformers import GPT2LMHeadModel

    model_dir = nb03.write_gpt2_weights(published["params"], TINY, tmp_path, SIZE, source="huggingface")
    assert model_dir == tmp_path / "huggingface" / SIZE
    hparams, params = gpt_download.download_and_load_gpt2(SIZE, tmp_path, source="huggingface", progress=False)
    assert hparams == TINY
    assert_same_params(params, published["params"])
    reloaded = GPT2LMHeadModel.from_pretrained(model_dir).eval()  # transformers reads the written files too
    token_ids = torch.arange(10)[None]
    with torch.inference_mode():
        assert torch.allclose(reloaded(token_ids).logits, published["hf_model"](token_ids).logits, atol=1e-6)
