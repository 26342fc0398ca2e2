"""Download OpenAI's GPT-2 checkpoints safely, read them, and write checkpoints in the same layout.

    settings, params = download_and_load_gpt2("124M", "models/gpt2")

OpenAI published GPT-2 as TensorFlow 1 checkpoints, one folder per model size:

    checkpoint                        which checkpoint is current (a small text file)
    encoder.json, vocab.bpe           the BPE tokenizer (the files tiktoken's "gpt2" encoding uses)
    hparams.json                      n_vocab, n_ctx, n_embd, n_head, n_layer
    model.ckpt.data-00000-of-00001    every weight, float32 (497,759,232 bytes for 124M)
    model.ckpt.index                  where each variable lies in the data file
    model.ckpt.meta                   TensorFlow's graph (not needed to read the weights)

The variables are named like "model/h0/attn/c_attn/w" (`openai_variable_shapes` lists them all).
The weights of the linear layers are stored as [1, in_features, out_features]: OpenAI implemented
them as 1-wide convolutions.

What this module promises:
- A file appears under its final name only after its size (and, where known, its SHA-256) has been
  checked. Downloads go to `<name>.part`; an interrupted download resumes with an HTTP Range request.
- Connection errors and 5xx answers are retried with backoff, then the mirror is tried.
- `manifest.json` records each verified file's size and SHA-256, so a later call checks the files
  on disk and makes no network request at all: after one download, everything works offline.
- Every failure raises an error that names the URL, the folder and how to place the files by hand.

Environment variables GPT2_BASE_URL and GPT2_MIRROR_URL (or the arguments base_url and mirror_url)
point the downloader at other servers; URLs are `{base}/{model_size}/{file}`.

Run `python gpt_download.py 124M` to download a model size ahead of time.
"""

import hashlib
import json
import os
import shutil
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.request
from http.client import HTTPException
from pathlib import Path

import numpy as np
from tqdm import tqdm

MODEL_SIZES = ("124M", "355M", "774M", "1558M")
FILES = (
    "checkpoint",
    "encoder.json",
    "hparams.json",
    "model.ckpt.data-00000-of-00001",
    "model.ckpt.index",
    "model.ckpt.meta",
    "vocab.bpe",
)
BASE_URL = "https://openaipublic.blob.core.windows.net/gpt-2/models"
MIRROR_URL = "https://f001.backblazeb2.com/file/LLMs-from-scratch/gpt2"

# The tokenizer files are the same for every size; these are the hashes tiktoken checks.
KNOWN_SHA256 = {
    "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
}
# Sizes of the weight files we know (float32: 4 bytes a parameter).
KNOWN_SIZES = {
    ("124M", "model.ckpt.data-00000-of-00001"): 497_759_232,
    ("355M", "model.ckpt.data-00000-of-00001"): 1_419_292_672,
}
MANIFEST = "manifest.json"
CHUNK_BYTES = 1 << 20
_RETRYABLE = (urllib.error.URLError, HTTPException, ConnectionError, TimeoutError, socket.timeout)


class DownloadError(RuntimeError):
    """A GPT-2 file could not be fetched or verified from any source."""


class _ServerError(Exception):
    """A 5xx answer or an interrupted body: worth retrying the same URL."""


class _SourceFailed(Exception):
    """This URL cannot give us the file (4xx, or its bytes failed verification): try the next one."""


# --------------------------------------------------------------------------------------------------
# Downloading
# --------------------------------------------------------------------------------------------------

def download_and_load_gpt2(model_size, models_dir, *, base_url=None, mirror_url=None, retries=3,
                           backoff=0.5, timeout=30, progress=True):
    """Make sure `models_dir/model_size` holds OpenAI's seven files, verified, then read the weights.

    Returns (settings, params): settings is hparams.json as a dict, params is what
    load_gpt2_params_from_tf_ckpt returns. Files already recorded in the folder's manifest are
    checked on disk (size and SHA-256) and not downloaded again; no network request is made then.
    """
    ensure_gpt2_files(model_size, models_dir, base_url=base_url, mirror_url=mirror_url,
                      retries=retries, backoff=backoff, timeout=timeout, progress=progress)
    model_dir = Path(models_dir) / model_size
    settings = json.loads((model_dir / "hparams.json").read_text(encoding="utf-8"))
    params = load_gpt2_params_from_tf_ckpt(model_dir / "model.ckpt", settings)
    return settings, params


def ensure_gpt2_files(model_size, models_dir, *, base_url=None, mirror_url=None, retries=3,
                      backoff=0.5, timeout=30, progress=True):
    """Download whatever is missing or wrong in `models_dir/model_size`; return the folder."""
    if model_size not in MODEL_SIZES:
        raise ValueError(f"model_size must be one of {', '.join(MODEL_SIZES)}; got {model_size!r}")
    model_dir = Path(models_dir) / model_size
    model_dir.mkdir(parents=True, exist_ok=True)
    bases = [base_url or os.environ.get("GPT2_BASE_URL") or BASE_URL,
             mirror_url or os.environ.get("GPT2_MIRROR_URL") or MIRROR_URL]
    manifest = read_manifest(model_dir)
    for name in FILES:
        urls = [f"{base.rstrip('/')}/{model_size}/{name}" for base in bases]  # URLs, not os.path.join
        path = model_dir / name
        if path.exists() and _is_verified(path, manifest.get(name)):
            continue
        if path.exists():
            entry = _adopt_existing(path, model_size, urls, manifest.get(name), timeout)
            if entry is not None:
                manifest[name] = entry
                write_manifest(model_dir, manifest)
                continue
            path.unlink()  # wrong size or hash: fetch it again
        manifest[name] = _download_from_any(urls, path, model_size, retries, backoff, timeout, progress)
        write_manifest(model_dir, manifest)
    return model_dir


def read_manifest(model_dir):
    path = Path(model_dir) / MANIFEST
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))["files"]
    except (ValueError, KeyError, TypeError):
        return {}  # unreadable: every file is checked again as if found without a record


def write_manifest(model_dir, files):
    text = json.dumps({"files": files}, indent=2, sort_keys=True)
    _atomic_write_text(Path(model_dir) / MANIFEST, text)


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_verified(path, entry):
    """True when the file on disk has the size and SHA-256 the manifest recorded."""
    if not entry:
        return False
    if path.stat().st_size != entry.get("size"):
        return False
    return sha256_of(path) == entry.get("sha256")


def _offline_problem(path, model_size, name=None):
    """What is wrong with a file by the checks that need no server (None if nothing). `name` is the
    file's final name when `path` is its .part."""
    name = name or path.name
    size = path.stat().st_size
    known_size = KNOWN_SIZES.get((model_size, name))
    if known_size is not None and size != known_size:
        return f"{size:,} bytes, expected {known_size:,}"
    known_sha = KNOWN_SHA256.get(name)
    if known_sha is not None and (actual := sha256_of(path)) != known_sha:
        return f"SHA-256 {actual}, expected {known_sha}"
    return None


def _adopt_existing(path, model_size, urls, entry, timeout):
    """A file found on disk without a matching manifest entry (placed by hand, or left by another
    downloader). Keep it if it passes the offline checks and, when a server answers, has the size the
    server reports. Return its manifest entry, or None if it must be downloaded again."""
    size = path.stat().st_size
    if entry:  # recorded before, and changed since: never trust it
        print(f"{path} does not match {MANIFEST} ({size:,} bytes, recorded {entry.get('size'):,}); "
              "downloading it again", file=sys.stderr)
        return None
    problem = _offline_problem(path, model_size)
    if problem:
        print(f"{path} is wrong ({problem}); downloading it again", file=sys.stderr)
        return None
    for url in urls:
        try:
            request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "gpt_download"})
            with urllib.request.urlopen(request, timeout=timeout) as response:
                remote = response.headers.get("Content-Length")
        except _RETRYABLE:
            continue
        if remote is not None and int(remote) != size:
            print(f"{path} has {size:,} bytes but {url} has {int(remote):,}; downloading it again",
                  file=sys.stderr)
            return None
        return {"size": size, "sha256": sha256_of(path), "source": url}
    print(f"{path}: found on disk; no server answered, so only its known size/hash were checked",
          file=sys.stderr)
    return {"size": size, "sha256": sha256_of(path), "source": "found on disk"}


def _download_from_any(urls, path, model_size, retries, backoff, timeout, progress):
    """Try each URL in turn (each with retries); return the manifest entry of the verified file."""
    failures = []
    for url in urls:
        try:
            return _download_one(url, path, model_size, retries, backoff, timeout, progress)
        except _SourceFailed as error:
            failures.append(f"  {url}: {error}")
    folder = path.parent
    raise DownloadError(
        f"Could not download {path.name} for GPT-2 {model_size} into {folder}/.\n"
        + "\n".join(failures) + "\n"
        f"To place the files by hand: download these {len(FILES)} files from any copy of OpenAI's "
        f"GPT-2 {model_size} release ({urls[0].rsplit('/', 1)[0]}/<file>): {', '.join(FILES)};\n"
        f"put them in {folder}/ and run this again: files found there are checked "
        "(known sizes and SHA-256) and then used without any network access.\n"
        "Other mirrors: set GPT2_BASE_URL / GPT2_MIRROR_URL, or pass base_url= / mirror_url=."
    )


def _download_one(url, path, model_size, retries, backoff, timeout, progress):
    part = path.with_name(path.name + ".part")
    for attempt in range(retries):
        try:
            _fetch_into(url, part, timeout, progress)
            break
        except urllib.error.HTTPError as error:
            if error.code < 500:
                raise _SourceFailed(f"HTTP {error.code} {error.reason}") from error
            last_error = f"HTTP {error.code} {error.reason}"
        except (_ServerError, *_RETRYABLE) as error:
            last_error = f"{type(error).__name__}: {error}"
        if attempt + 1 < retries:
            time.sleep(backoff * 2**attempt)
    else:
        raise _SourceFailed(f"failed {retries} times, last: {last_error}")

    problem = _offline_problem(part, model_size, path.name)
    if problem:
        part.unlink()  # bad bytes: never resume from them
        raise _SourceFailed(f"downloaded file rejected: {problem}")
    entry = {"size": part.stat().st_size, "sha256": sha256_of(part), "source": url}
    os.replace(part, path)  # only now does the file have its final name
    return entry


def _fetch_into(url, part, timeout, progress):
    """Fetch url into part, resuming from part's current size when the server honours Range."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "gpt_download"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416:  # our .part is not a prefix the server can continue: start over
            part.unlink()
            raise _ServerError("HTTP 416 for the resumed range; starting over") from error
        raise
    with response:
        if offset and response.status == 206:
            start, total = _parse_content_range(response.headers.get("Content-Range"))
            if start != offset:
                part.unlink()
                raise _ServerError(f"server resumed at byte {start}, not {offset}; starting over")
            mode = "ab"
        else:  # a full answer (200), also when the server ignored our Range header
            offset, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length is not None else None
        received = offset
        with open(part, mode) as file, tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                                            unit_divisor=1024, desc=part.name[:-5],
                                            disable=not progress) as bar:
            while chunk := response.read(CHUNK_BYTES):
                file.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if total is not None and received != total:
        # http.client returns b"" rather than raising when the connection drops early.
        raise _ServerError(f"connection closed after {received:,} of {total:,} bytes")


def _parse_content_range(value):
    """'bytes 100-199/1000' -> (100, 1000)."""
    try:
        unit, spec = value.split(" ", 1)
        span, total = spec.split("/")
        return int(span.split("-")[0]), int(total)
    except (AttributeError, ValueError) as error:
        raise _ServerError(f"unreadable Content-Range {value!r}") from error


def _atomic_write_text(path, text):
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------------
# Reading and writing OpenAI's TensorFlow checkpoints
# --------------------------------------------------------------------------------------------------

def _import_tensorflow():
    if "tensorflow" in sys.modules and sys.modules["tensorflow"] is not None:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        # TensorFlow's C++ start-up notes (oneDNN, "no CUDA drivers") are written straight to file
        # descriptor 2, before its log level applies; they are not errors, so hide them. Python
        # exceptions are unaffected.
        with _stderr_silenced():
            import tensorflow as tf

            tf.config.list_physical_devices()  # device discovery prints its notes now, not later
    except ImportError as error:
        raise ImportError(
            "Reading or writing OpenAI's GPT-2 checkpoints needs TensorFlow: pip install tensorflow "
            "(or pip install -r requirements.txt)"
        ) from error
    return tf


class _stderr_silenced:
    """Redirect file descriptor 2 to /dev/null inside a with block (where that is possible)."""

    def __enter__(self):
        try:
            sys.stderr.flush()
            self._saved = os.dup(2)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
        except OSError:
            self._saved = None
        return self

    def __exit__(self, *exc_info):
        if self._saved is not None:
            os.dup2(self._saved, 2)
            os.close(self._saved)
        return False


def openai_variable_shapes(settings):
    """Every variable of an OpenAI GPT-2 checkpoint with these hparams: {name: shape}."""
    d, vocab, ctx = settings["n_embd"], settings["n_vocab"], settings["n_ctx"]
    shapes = {"model/wte": (vocab, d), "model/wpe": (ctx, d)}
    for layer in range(settings["n_layer"]):
        prefix = f"model/h{layer}"
        shapes |= {
            f"{prefix}/ln_1/g": (d,), f"{prefix}/ln_1/b": (d,),
            f"{prefix}/attn/c_attn/w": (1, d, 3 * d), f"{prefix}/attn/c_attn/b": (3 * d,),
            f"{prefix}/attn/c_proj/w": (1, d, d), f"{prefix}/attn/c_proj/b": (d,),
            f"{prefix}/ln_2/g": (d,), f"{prefix}/ln_2/b": (d,),
            f"{prefix}/mlp/c_fc/w": (1, d, 4 * d), f"{prefix}/mlp/c_fc/b": (4 * d,),
            f"{prefix}/mlp/c_proj/w": (1, 4 * d, d), f"{prefix}/mlp/c_proj/b": (d,),
        }
    shapes |= {"model/ln_f/g": (d,), "model/ln_f/b": (d,)}
    return shapes


def checkpoint_variables(ckpt_path):
    """The variables stored in a TensorFlow checkpoint: {name: shape}, sorted by name."""
    tf = _import_tensorflow()
    return {name: tuple(shape) for name, shape in sorted(tf.train.list_variables(str(ckpt_path)))}


def load_gpt2_params_from_tf_ckpt(ckpt_path, settings):
    """Read an OpenAI GPT-2 checkpoint into nested numpy arrays:

    {"wte", "wpe", "g", "b", "blocks": [{"ln_1": {"g", "b"}, "attn": {"c_attn": {"w", "b"}, ...},
                                         "ln_2": ..., "mlp": {"c_fc": ..., "c_proj": ...}}, ...]}

    ("g" and "b" at the top are the final layer norm, ln_f.) The leading singleton axis of every
    [1, in, out] weight is squeezed away, so a "w" is [in, out].
    """
    tf = _import_tensorflow()
    reader = tf.train.load_checkpoint(str(ckpt_path))
    stored = reader.get_variable_to_shape_map()
    expected = openai_variable_shapes(settings)
    missing = sorted(set(expected) - set(stored))
    if missing:
        raise ValueError(f"{ckpt_path} lacks {len(missing)} variables hparams.json implies, "
                         f"e.g. {missing[:3]}; do hparams.json and the checkpoint belong together?")
    variables = {}
    for name, shape in expected.items():
        variables[name] = reader.get_tensor(name)
        if tuple(variables[name].shape) != shape:
            raise ValueError(f"{name} has shape {tuple(variables[name].shape)} in {ckpt_path}; "
                             f"hparams.json implies {shape}")
    return variables_to_params(variables, settings)


def params_to_variables(params, settings):
    """The inverse of load_gpt2_params_from_tf_ckpt's nesting: {OpenAI variable name: array}."""
    variables = {}
    for name, shape in openai_variable_shapes(settings).items():
        source, keys = _nested_location(params, name)
        for key in keys:
            source = source[key]
        array = np.asarray(source, dtype=np.float32)
        if array.shape == shape[1:] and len(shape) == 3:
            array = array[None]  # restore the leading axis of a [1, in, out] weight
        if array.shape != shape:
            raise ValueError(f"{name} has shape {array.shape}; these hparams need {shape} "
                             f"(or {shape[1:]} for a squeezed weight)" if len(shape) == 3 else
                             f"{name} has shape {array.shape}; these hparams need {shape}")
        variables[name] = array
    return variables


def write_gpt2_checkpoint(params, settings, model_dir, tokenizer_dir=None):
    """Write params (as load_gpt2_params_from_tf_ckpt returns them) in OpenAI's layout: checkpoint,
    hparams.json, model.ckpt.{data-00000-of-00001,index,meta}, encoder.json, vocab.bpe, plus a
    manifest, so download_and_load_gpt2 finds the folder complete and downloads nothing.

    The folder is built under a temporary name, read back and compared, then renamed: a failure
    leaves any earlier folder of that name as it was.
    """
    tf = _import_tensorflow()
    model_dir = Path(model_dir)
    tokenizer_dir = Path(tokenizer_dir) if tokenizer_dir else Path(__file__).parent / "data" / "gpt2-tokenizer"
    variables = params_to_variables(params, settings)
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=model_dir.name + ".partial-", dir=model_dir.parent))
    try:
        graph = tf.Graph()
        with graph.as_default():
            tf_variables, assigns = [], []
            for name, array in variables.items():
                variable = tf.compat.v1.get_variable(name, shape=array.shape, dtype=tf.float32,
                                                     initializer=tf.compat.v1.zeros_initializer())
                # Fill through a placeholder: an initializer constant would copy every weight
                # into the graph (model.ckpt.meta) as well.
                value = tf.compat.v1.placeholder(tf.float32, shape=array.shape)
                tf_variables.append(variable)
                assigns.append((variable.assign(value), value, array))
            saver = tf.compat.v1.train.Saver(tf_variables, save_relative_paths=True)
            with tf.compat.v1.Session(graph=graph) as session:
                session.run(tf.compat.v1.global_variables_initializer())
                for assign, value, array in assigns:
                    session.run(assign, feed_dict={value: array})
                saver.save(session, str(tmp_dir / "model.ckpt"), write_state=False)
        # The `checkpoint` file exactly as OpenAI's (relative paths).
        (tmp_dir / "checkpoint").write_text(
            'model_checkpoint_path: "model.ckpt"\nall_model_checkpoint_paths: "model.ckpt"\n')
        hparams = {key: settings[key] for key in ("n_vocab", "n_ctx", "n_embd", "n_head", "n_layer")}
        (tmp_dir / "hparams.json").write_text(json.dumps(hparams, indent=2))
        for name in ("encoder.json", "vocab.bpe"):
            shutil.copyfile(tokenizer_dir / name, tmp_dir / name)

        written = load_gpt2_params_from_tf_ckpt(tmp_dir / "model.ckpt", settings)
        for name, array in params_to_variables(written, settings).items():
            if not np.array_equal(array, variables[name]):
                raise RuntimeError(f"{name} read back differently from what was written")
        write_manifest(tmp_dir, {name: {"size": (tmp_dir / name).stat().st_size,
                                        "sha256": sha256_of(tmp_dir / name),
                                        "source": "write_gpt2_checkpoint"} for name in FILES})
        if model_dir.exists():
            old = model_dir.with_name(tmp_dir.name + "-old")
            os.replace(model_dir, old)
            os.replace(tmp_dir, model_dir)
            shutil.rmtree(old)
        else:
            os.replace(tmp_dir, model_dir)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return model_dir


def random_gpt2_params(settings, seed=0):
    """Random weights with OpenAI's shapes (N(0, 0.02), layer norms at 1 and 0): stand-in
    checkpoints for tests and the notebooks' smoke profile."""
    generator = np.random.default_rng(seed)
    variables = {}
    for name, shape in openai_variable_shapes(settings).items():
        if name.endswith("/g"):
            variables[name] = np.ones(shape, np.float32)
        elif name.endswith("/b"):
            variables[name] = np.zeros(shape, np.float32)
        else:
            variables[name] = generator.normal(0.0, 0.02, size=shape).astype(np.float32)
    return variables_to_params(variables, settings)


def variables_to_params(variables, settings):
    """{OpenAI variable name: array} -> the nested dict load_gpt2_params_from_tf_ckpt returns."""
    params = {"blocks": [{} for _ in range(settings["n_layer"])]}
    for name, array in variables.items():
        target, keys = _nested_location(params, name)
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        target[keys[-1]] = array[0] if array.ndim == 3 else array
    return params


def _nested_location(params, name):
    """Where an OpenAI variable lives in the nested params: (the dict to start from, the keys below it).
    "model/h3/attn/c_attn/w" -> (params["blocks"][3], ["attn", "c_attn", "w"]); "model/ln_f/g" -> (params, ["g"])."""
    parts = name.split("/")[1:]  # drop "model/"
    if parts[0].startswith("h"):
        return params["blocks"][int(parts[0][1:])], parts[1:]
    if parts[0] == "ln_f":
        return params, parts[1:]
    return params, parts


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Download (and verify) OpenAI's GPT-2 checkpoint files.")
    parser.add_argument("model_size", choices=MODEL_SIZES)
    parser.add_argument("--models-dir", default="models/gpt2")
    arguments = parser.parse_args()
    folder = ensure_gpt2_files(arguments.model_size, arguments.models_dir)
    print(f"GPT-2 {arguments.model_size}: all {len(FILES)} files verified in {folder}/")
