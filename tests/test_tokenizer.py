"""GPT-2's tokenizer works offline from data/gpt2-tokenizer/ through 01's load_gpt2_tokenizer."""

import hashlib
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

# Run in a fresh interpreter with every socket connection refused, so nothing can be downloaded.
OFFLINE_SCRIPT = textwrap.dedent(
    """
    import socket, sys

    def refuse(*args, **kwargs):
        raise OSError("network access is disabled in this test")

    socket.socket.connect = refuse
    socket.create_connection = refuse
    socket.getaddrinfo = refuse

    import gpt2_from_scratch.architecture as nb

    if sys.argv[3] == "helper":
        encoding = nb.load_gpt2_tokenizer(sys.argv[2])
    else:
        encoding = nb.tiktoken.get_encoding("gpt2")
    print(encoding.encode("Hello, world!"))
    """
)


def run_offline(repo_root, cache_dir, how):
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(cache_dir)}
    command = [sys.executable, "-c", OFFLINE_SCRIPT, str(repo_root), str(repo_root / "data" / "gpt2-tokenizer"), how]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def tokenizer(nb01, repo_root, tmp_path_factory):
    saved = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = str(tmp_path_factory.mktemp("tiktoken-cache"))
    try:
        yield nb01.load_gpt2_tokenizer(repo_root / "data" / "gpt2-tokenizer")
    finally:
        if saved is None:
            os.environ.pop("TIKTOKEN_CACHE_DIR", None)
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = saved


def test_loads_with_no_network_from_an_empty_cache(repo_root, tmp_path, nb01):
    cache = tmp_path / "cache"
    result = run_offline(repo_root, cache, "helper")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[15496, 11, 995, 0]"
    # The files sit where tiktoken looks for them: named by the SHA-1 of their download URL.
    for url, sha256 in nb01.GPT2_TOKENIZER_FILES.values():
        cached = cache / hashlib.sha1(url.encode()).hexdigest()
        assert hashlib.sha256(cached.read_bytes()).hexdigest() == sha256
    assert not list(cache.glob("*.tmp")), "no partial file may be left behind"


def test_without_the_helper_the_same_offline_load_fails(repo_root, tmp_path):
    # Control for the test above: it proves the network really is blocked there.
    result = run_offline(repo_root, tmp_path / "cache", "plain")
    assert result.returncode != 0
    assert "network access is disabled" in result.stderr


def test_hello_world(tokenizer):
    assert tokenizer.encode("Hello, world!") == [15496, 11, 995, 0]
    assert tokenizer.n_vocab == 50_257


def test_the_verdict_round_trip(tokenizer, repo_root):
    text = (repo_root / "data" / "the-verdict.txt").read_text(encoding="utf-8")
    token_ids = tokenizer.encode(text)
    assert len(token_ids) == 5_145
    assert tokenizer.decode(token_ids) == text


def test_end_of_text_is_special_only_when_allowed(tokenizer):
    with pytest.raises(ValueError):
        tokenizer.encode("<|endoftext|>")
    assert tokenizer.encode("<|endoftext|>", allowed_special={"<|endoftext|>"}) == [50_256]
    as_text = tokenizer.encode("<|endoftext|>", disallowed_special=())
    assert 50_256 not in as_text and len(as_text) > 1


@pytest.fixture
def tokenizer_copy(repo_root, tmp_path):
    folder = tmp_path / "gpt2-tokenizer"
    shutil.copytree(repo_root / "data" / "gpt2-tokenizer", folder)
    return folder


def test_tampered_file_is_rejected_naming_the_fix(nb01, tokenizer_copy, tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "cache"))
    vocab = tokenizer_copy / "vocab.bpe"
    vocab.write_bytes(vocab.read_bytes().replace(b"e", b"E", 1))
    with pytest.raises(ValueError, match=r"vocab\.bpe.*SHA-256.*git checkout"):
        nb01.load_gpt2_tokenizer(tokenizer_copy)


def test_missing_file_is_reported(nb01, tokenizer_copy, tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "cache"))
    (tokenizer_copy / "encoder.json").unlink()
    with pytest.raises(FileNotFoundError, match="encoder.json"):
        nb01.load_gpt2_tokenizer(tokenizer_copy)


def test_corrupt_cache_entry_is_replaced(nb01, repo_root, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    url, sha256 = nb01.GPT2_TOKENIZER_FILES["vocab.bpe"]
    cached = cache / hashlib.sha1(url.encode()).hexdigest()
    cache.mkdir()
    cached.write_bytes(b"half a file")
    nb01.load_gpt2_tokenizer(repo_root / "data" / "gpt2-tokenizer")
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == sha256


def test_disabled_cache_is_refused(nb01, repo_root, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")
    with pytest.raises(ValueError, match="TIKTOKEN_CACHE_DIR"):
        nb01.load_gpt2_tokenizer(repo_root / "data" / "gpt2-tokenizer")
