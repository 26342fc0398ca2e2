"""What was published: GPT-2's four sizes, their files, what is known of those files, and where they are.

OpenAI published GPT-2 as TensorFlow 1 checkpoints, one folder per model size:

    checkpoint                        which checkpoint is current (a small text file)
    encoder.json, vocab.bpe           the BPE tokenizer (the files tiktoken's "gpt2" encoding uses)
    hparams.json                      n_vocab, n_ctx, n_embd, n_head, n_layer
    model.ckpt.data-00000-of-00001    every weight, float32 (497,759,232 bytes for 124M)
    model.ckpt.index                  where each variable lies in the data file, with its CRC32C
    model.ckpt.meta                   TensorFlow's graph (not needed to read the weights)

at `{base}/{size}/{file}` of OpenAI's storage (BASE_URL) and of a public mirror (MIRROR_URL); the
environment variables GPT2_BASE_URL and GPT2_MIRROR_URL name others.

The Hugging Face Hub serves the same four models (HF_REPOS) as config.json and model.safetensors, at
`{endpoint}/{repo}/resolve/{revision}/{file}`; the endpoint is HF_ENDPOINT (the Hub's own environment
variable of that name overrides it), and GPT2_HF_MIRROR_URL names a second one (none by default).
A size's files from the Hub go to `models_dir/huggingface/<size>/`, beside OpenAI's `models_dir/<size>/`.
"""

import os
from pathlib import Path

__all__ = ["MODEL_SIZES", "KNOWN_HPARAMS", "HPARAMS_KEYS", "TOKENIZER_SHA256", "TOKENIZER_DIR", "SOURCES",
           "SOURCE_VARIABLE", "FILES", "DATA_FILE", "VERIFY_ORDER", "BASE_URL", "MIRROR_URL", "KNOWN_SHA256", "KNOWN_SIZES",
           "HF_ENDPOINT", "HF_REPOS", "HF_REVISIONS", "HF_FILES", "HF_FOLDER", "weights_source", "model_folder",
           "source_files", "hf_file_url", "file_url", "server_urls", "known_sha256"]

MODEL_SIZES = ("124M", "355M", "774M", "1558M")
# hparams.json of each size as OpenAI published it: THE table of the four sizes.
HPARAMS_KEYS = ("n_vocab", "n_ctx", "n_embd", "n_head", "n_layer")  # in hparams.json's order
KNOWN_HPARAMS = {
    "124M": {"n_vocab": 50257, "n_ctx": 1024, "n_embd": 768, "n_head": 12, "n_layer": 12},
    "355M": {"n_vocab": 50257, "n_ctx": 1024, "n_embd": 1024, "n_head": 16, "n_layer": 24},
    "774M": {"n_vocab": 50257, "n_ctx": 1024, "n_embd": 1280, "n_head": 20, "n_layer": 36},
    "1558M": {"n_vocab": 50257, "n_ctx": 1024, "n_embd": 1600, "n_head": 25, "n_layer": 48},
}

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

# GPT-2's BPE tokenizer, the same two files in every size's folder: their SHA-256 as tiktoken checks them.
TOKENIZER_SHA256 = {
    "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
}
# The repository's copy of those two files, found from any working folder: the project is installed
# editable from its clone (pip install -r requirements.txt), so this module is <clone>/gpt2_support/catalogue.py.
TOKENIZER_DIR = Path(__file__).resolve().parent.parent / "data" / "gpt2-tokenizer"
# Published SHA-256 of the files: (model size, file name); a size of None means every size.
# `checkpoint` is the same two lines in every size.
KNOWN_SHA256 = {
    (None, "checkpoint"): "dd1b025d2e155283f5e300ce95bf6d5b6bc0f7fe010db73daa6975eb896ab9cb",
    **{(None, name): sha256 for name, sha256 in TOKENIZER_SHA256.items()},
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

# The Hugging Face Hub's copies of the same models.
HF_ENDPOINT = "https://huggingface.co"
HF_REPOS = {"124M": "openai-community/gpt2", "355M": "openai-community/gpt2-medium",
            "774M": "openai-community/gpt2-large", "1558M": "openai-community/gpt2-xl"}
# Pinned where the file's SHA-256 is known, so the bytes can never change under us; the other sizes
# follow "main" and are checked against the SHA-256 the Hub names (X-Linked-Etag) and by content.
HF_REVISIONS = {"124M": "607a30d783dfa663caf39e06633721c8d4cfcd7e"}
HF_FILES = ("config.json", "model.safetensors")  # in this order: the weights are checked against the config
HF_FOLDER = "huggingface"  # the Hub's files go to models_dir/huggingface/<size>/, beside OpenAI's <size>/


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


def file_url(source, server, model_size, name):
    """The address of one file on one server of `source` (URLs are joined as strings, not paths)."""
    if source == "huggingface":
        return hf_file_url(server, model_size, name)
    return f"{server.rstrip('/')}/{model_size}/{name}"


def server_urls(source, base_url=None, mirror_url=None):
    """The servers of `source` to try, in order: base_url, else GPT2_BASE_URL, else OpenAI's storage; then
    mirror_url, else GPT2_MIRROR_URL, else the public mirror. For the Hub: base_url, else HF_ENDPOINT, else
    https://huggingface.co; then mirror_url, else GPT2_HF_MIRROR_URL, else none. Each must be http(s)://."""
    if source == "huggingface":
        servers = [base_url or os.environ.get("HF_ENDPOINT") or HF_ENDPOINT,
                   mirror_url or os.environ.get("GPT2_HF_MIRROR_URL")]
        settings = "base_url=, mirror_url=, HF_ENDPOINT or GPT2_HF_MIRROR_URL"
    else:
        servers = [base_url or os.environ.get("GPT2_BASE_URL") or BASE_URL,
                   mirror_url or os.environ.get("GPT2_MIRROR_URL") or MIRROR_URL]
        settings = "base_url=, mirror_url=, GPT2_BASE_URL or GPT2_MIRROR_URL"
    servers = tuple(server for server in servers if server)
    for server in servers:
        if not server.startswith(("http://", "https://")):
            raise ValueError(f"GPT-2's servers must be http:// or https:// URLs; got {server!r} (from {settings})")
    return servers


def known_sha256(model_size, name):
    """The published SHA-256 of a file of this model size, or None where none is known."""
    return KNOWN_SHA256.get((model_size, name)) or KNOWN_SHA256.get((None, name))
