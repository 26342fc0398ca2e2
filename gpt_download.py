"""Download OpenAI's GPT-2 checkpoints safely, verify them, and read them.

    hparams, params = download_and_load_gpt2("124M", "models/gpt2")

The weights come from OpenAI's TensorFlow checkpoints (seven files per size, in `models_dir/<size>/`) or
from the Hugging Face Hub's copy (config.json and model.safetensors, in `models_dir/huggingface/<size>/`);
both give the same params. What this module promises: a file under its final name, or recorded in the
folder's manifest, is the right file.
- Every file is verified before it gets its final name: by its published SHA-256 where one is known,
  otherwise by its contents (every tensor's CRC32C, the sizes OpenAI published, ...). A wrong file is
  kept aside as `<name>.rejected` until a good copy is in place.
- Downloads resume (Range with If-Range, only from the server that started them), retry what may
  succeed, fall back to a second server, and never write through a symbolic link.
- One process at a time downloads into a folder; once it is complete, every later call works offline,
  and reads nothing of a file that is unchanged on disk since it was verified.
- Every failure raises an error that names the file, the folder and what to do.
- Reading needs no TensorFlow (TensorFlow and triton cannot share a process: see tf_checkpoint).

Where each part lives, in the support package gpt2_support (docs/weights.md tells the whole story):
catalogue (sizes, files, hashes, servers), ensure (the folder), fetch (HTTP), verify (checks and the
manifest), files (safe writes, SHA-256, the lock), tf_checkpoint and crc32c (OpenAI's format), hub (the
Hub's names and safetensors), layout (the variables and the nested params both readers return).

Environment variables: GPT2_WEIGHTS_SOURCE (openai or huggingface), GPT2_BASE_URL and GPT2_MIRROR_URL
(OpenAI's files), HF_ENDPOINT and GPT2_HF_MIRROR_URL (the Hub's). `python gpt_download.py 124M
[--source huggingface]` downloads a size ahead of time (the same as `gpt2 download 124M`).
"""

import json
import sys

from gpt2_support.catalogue import (DATA_FILE, FILES, HF_ENDPOINT, HF_FILES, HF_FOLDER, HF_REPOS, HF_REVISIONS,
                                    HPARAMS_KEYS, KNOWN_HPARAMS, KNOWN_SHA256, KNOWN_SIZES, MODEL_SIZES, SOURCES,
                                    TOKENIZER_SHA256, VERIFY_ORDER, hf_file_url, known_sha256, model_folder,
                                    source_files, weights_source)
from gpt2_support.crc32c import crc32c, crc32c_masked
from gpt2_support.ensure import ensure_gpt2_files
from gpt2_support.files import DownloadError, atomic_write_path, sha256_of
from gpt2_support.hub import (hf_config_from_hparams, hparams_from_hf_config, load_gpt2_params_from_safetensors,
                              openai_name_of_hf, safetensors_variables)
from gpt2_support.layout import CheckpointError, openai_variable_shapes, variables_to_params
from gpt2_support.tf_checkpoint import (checkpoint_variables, load_gpt2_params_from_tf_ckpt, read_checkpoint_index,
                                        read_checkpoint_tensor)
from gpt2_support.verify import MANIFEST, read_manifest, record_written_files, verify_file


__all__ = [
    "download_and_load_gpt2", "ensure_gpt2_files", "DownloadError", "CheckpointError",
    # the readers
    "load_gpt2_params_from_tf_ckpt", "load_gpt2_params_from_safetensors", "checkpoint_variables",
    "safetensors_variables", "read_checkpoint_index", "read_checkpoint_tensor", "openai_variable_shapes",
    "variables_to_params", "hparams_from_hf_config", "hf_config_from_hparams", "openai_name_of_hf",
    # what was published, and where it goes
    "MODEL_SIZES", "KNOWN_HPARAMS", "HPARAMS_KEYS", "SOURCES", "FILES", "DATA_FILE", "VERIFY_ORDER",
    "KNOWN_SHA256", "KNOWN_SIZES", "TOKENIZER_SHA256", "HF_ENDPOINT", "HF_REPOS", "HF_REVISIONS", "HF_FILES",
    "HF_FOLDER", "weights_source", "model_folder", "source_files", "hf_file_url", "known_sha256",
    # the manifest, and the file helpers
    "MANIFEST", "read_manifest", "record_written_files", "verify_file", "sha256_of", "atomic_write_path",
    "crc32c", "crc32c_masked",
]


def download_and_load_gpt2(model_size, models_dir, *, source=None, base_url=None, mirror_url=None,
                           retries=3, backoff=0.5, timeout=30, progress=True):
    """Make sure the files of GPT-2 `model_size` are in models_dir, verified, then read the weights.

    source: "openai" (OpenAI's seven files in `models_dir/model_size`) or "huggingface" (the Hub's
    config.json and model.safetensors in `models_dir/huggingface/model_size`); None means the
    environment variable GPT2_WEIGHTS_SOURCE, else "openai". Both give the same result for the same
    weights: (hparams, params), hparams as in OpenAI's hparams.json (n_vocab, n_ctx, n_embd, n_head,
    n_layer), params as load_gpt2_params_from_tf_ckpt returns them. Files already recorded in the
    folder's manifest are checked on disk (unchanged since they were verified, or hashed again) and not
    downloaded again; no network request is made then. The other arguments: see ensure_gpt2_files.
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


if __name__ == "__main__":
    from gpt2_support.cli import main

    sys.exit(main(["download", *sys.argv[1:]]))
