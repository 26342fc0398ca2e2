"""The TensorFlow-free checkpoint reader (gpt2_support.tf_checkpoint, and its CRC32C), against TensorFlow's own reader.

Why the reader exists: TensorFlow and triton (installed beside PyTorch's default Linux build) cannot
share a process, so the process that runs the model must never import TensorFlow (gpt2_support/tf_checkpoint.py
explains). These tests check that the reader gives exactly what TensorFlow gives, that it verifies the
checksums TensorFlow stores, and, in a fresh process, that loading a checkpoint and then building a
model on the meta device (the path that crashed) works and leaves TensorFlow unloaded.
"""

import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import gpt2_from_scratch.weights as writer  # 03's checkpoint writer
import gpt2_support.crc32c
from gpt2_support.crc32c import crc32c, crc32c_masked
from gpt2_support.layout import CheckpointError, openai_variable_shapes
from gpt2_support.tf_checkpoint import (checkpoint_variables, load_gpt2_params_from_tf_ckpt, read_checkpoint_index,
                                        read_checkpoint_tensor)
from tensorflow_reference import tensorflow_tensors

TINY = {"n_vocab": 100, "n_ctx": 16, "n_embd": 8, "n_head": 2, "n_layer": 2}
DATA = "model.ckpt.data-00000-of-00001"


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A tiny random checkpoint written by TensorFlow (in write_gpt2_checkpoint's child process)."""
    folder = tmp_path_factory.mktemp("ckpt") / "tiny"
    params = writer.random_gpt2_params(TINY, seed=5)
    writer.write_gpt2_checkpoint(params, TINY, folder)
    return folder, params


def damaged_copy(tiny_checkpoint, tmp_path):
    """A copy of the tiny checkpoint's folder, to damage."""
    folder, _ = tiny_checkpoint
    return shutil.copytree(folder, tmp_path / "tiny")


# ---- CRC32C ---------------------------------------------------------------------------------------

def bitwise_crc32c(data):
    """CRC32C one bit at a time: slow, but independent of the module's tables and lanes."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def test_crc32c_gives_the_published_check_values():
    # RFC 3720 (iSCSI), appendix B.4, and the customary "123456789" check value.
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E
    assert crc32c(b"") == 0


@pytest.mark.parametrize("length", [1, 4095, 16 * 4096 - 1, 16 * 4096, 16 * 4096 + 3, 50 * 4096 + 4097])
def test_crc32c_of_long_inputs_equals_the_bitwise_definition(monkeypatch, length):
    """Long inputs go through numpy lanes, several passes of them (made small here), and a scalar tail."""
    monkeypatch.setattr(gpt2_support.crc32c, "_LANES_PER_PASS", 7)
    data = np.random.default_rng(length).integers(0, 256, length, dtype=np.uint8)
    assert crc32c(data) == bitwise_crc32c(data.tobytes())
    assert crc32c(data.tobytes()) == crc32c(data)


def test_crc32c_of_an_array_is_that_of_its_bytes_in_c_order():
    matrix = np.random.default_rng(0).standard_normal((300, 100)).astype(np.float32)
    for array in (matrix, matrix.T, matrix[:, ::2], np.asfortranarray(matrix), matrix.reshape(-1)[::3]):
        assert crc32c(array) == bitwise_crc32c(np.ascontiguousarray(array).tobytes())


# ---- the same tensors as TensorFlow ---------------------------------------------------------------

def test_reader_gives_exactly_what_tensorflow_reads(tiny_checkpoint, tmp_path):
    folder, params = tiny_checkpoint
    ckpt = folder / "model.ckpt"
    expected = tensorflow_tensors(ckpt, tmp_path)
    entries, n_shards = read_checkpoint_index(ckpt)
    assert n_shards == 1 and len(entries) == 28
    assert sorted(entries) == sorted(expected)
    assert checkpoint_variables(ckpt) == openai_variable_shapes(TINY)
    for name, array in expected.items():
        ours = read_checkpoint_tensor(ckpt, name, entries[name])
        assert ours.dtype == array.dtype and ours.shape == array.shape, name
        assert np.array_equal(ours, array), name
    # and the nested params are what was written
    loaded = load_gpt2_params_from_tf_ckpt(ckpt, TINY)
    written = writer.params_to_variables(params, TINY)
    for name, array in writer.params_to_variables(loaded, TINY).items():
        assert np.array_equal(array, written[name]), name


# An SSTable of several data blocks, written here from the format's definition (LevelDB's table format;
# TensorFlow's BundleHeaderProto and BundleEntryProto). TensorFlow's writer fills 256 KiB blocks, so its
# indexes for GPT-2 hold a single data block; this one splits a few records over three, with keys that
# share prefixes, a scalar, an empty tensor and an int32 tensor.

def varint(value):
    out = bytearray()
    while True:
        out.append(value & 0x7F | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def proto_varint(number, value):
    return varint(number << 3) + varint(value)


def proto_bytes(number, payload):
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def proto_fixed32(number, value):
    return varint(number << 3 | 5) + value.to_bytes(4, "little")


def sstable_block(records, restart_interval=2):
    body, restarts, previous = bytearray(), [], b""
    for position, (key, value) in enumerate(records):
        shared = 0
        if position % restart_interval:
            while shared < min(len(key), len(previous)) and key[shared] == previous[shared]:
                shared += 1
        else:
            restarts.append(len(body))
        body += varint(shared) + varint(len(key) - shared) + varint(len(value)) + key[shared:] + value
        previous = key
    for offset in restarts:
        body += offset.to_bytes(4, "little")
    return bytes(body + len(restarts).to_bytes(4, "little"))


def write_sstable(path, blocks_of_records):
    table = bytearray()

    def put(contents):  # a block, its trailer (no compression, masked CRC32C), and its handle
        handle = varint(len(table)) + varint(len(contents))
        table.extend(contents + b"\0" + crc32c_masked(contents + b"\0").to_bytes(4, "little"))
        return handle

    index = [(records[-1][0], put(sstable_block(records))) for records in blocks_of_records]
    footer = put(sstable_block([])) + put(sstable_block(index, restart_interval=1))  # meta-index, index
    table.extend(footer + bytes(40 - len(footer)) + (0xDB4775248B80FB57).to_bytes(8, "little"))
    path.write_bytes(bytes(table))


def test_an_index_of_several_blocks_is_read_record_by_record(tmp_path):
    arrays = {
        "model/h0/attn/b": np.arange(6, dtype=np.float32),
        "model/h0/attn/w": np.arange(12, dtype=np.float32).reshape(1, 3, 4) / 7,
        "model/h0/mlp/w": np.full((2, 5), -1.5, np.float32),
        "model/h1/count": np.array([3, -4, 5], np.int32),
        "model/h1/empty": np.zeros((0, 3), np.float32),
        "model/scalar": np.array(2.5, np.float32),
    }
    data, records, dtypes = bytearray(), [], {np.dtype(np.float32): 1, np.dtype(np.int32): 3}
    for name, array in arrays.items():
        shape = b"".join(proto_bytes(2, proto_varint(1, size)) for size in array.shape)
        entry = (proto_varint(1, dtypes[array.dtype]) + proto_bytes(2, shape) + proto_varint(4, len(data))
                 + proto_varint(5, array.nbytes) + proto_fixed32(6, crc32c_masked(array)))
        records.append((name.encode(), entry))
        data += array.tobytes()
    header = (b"", proto_varint(1, 1))  # num_shards 1; endianness and version left at their defaults
    write_sstable(tmp_path / "model.ckpt.index", [[header, *records[:2]], records[2:4], records[4:]])
    (tmp_path / DATA).write_bytes(bytes(data))

    entries, n_shards = read_checkpoint_index(tmp_path / "model.ckpt")
    assert n_shards == 1 and list(entries) == list(arrays)
    for name, array in arrays.items():
        assert entries[name].shape == array.shape, name
        read = read_checkpoint_tensor(tmp_path / "model.ckpt", name, entries[name])
        assert read.dtype == array.dtype and np.array_equal(read, array), name


# ---- damaged files are refused, naming the file and the fix ---------------------------------------

def test_a_flipped_byte_in_the_data_file_fails_that_tensors_crc(tiny_checkpoint, tmp_path):
    folder = damaged_copy(tiny_checkpoint, tmp_path)
    entries, _ = read_checkpoint_index(folder / "model.ckpt")
    wpe = entries["model/wpe"]
    with open(folder / DATA, "r+b") as file:
        file.seek(wpe.offset + wpe.size // 2)
        byte = file.read(1)
        file.seek(-1, os.SEEK_CUR)
        file.write(bytes([byte[0] ^ 0x01]))
    with pytest.raises(CheckpointError) as error:
        load_gpt2_params_from_tf_ckpt(folder / "model.ckpt", TINY)
    message = str(error.value)
    assert "model/wpe" in message and "CRC32C" in message and str(folder / DATA) in message
    assert "Delete" in message


def test_a_damaged_or_truncated_index_is_refused(tiny_checkpoint, tmp_path):
    folder = damaged_copy(tiny_checkpoint, tmp_path)
    index = folder / "model.ckpt.index"
    original = index.read_bytes()
    index.write_bytes(original[:40] + bytes([original[40] ^ 0x20]) + original[41:])
    with pytest.raises(CheckpointError, match="CRC32C mismatch"):
        checkpoint_variables(folder / "model.ckpt")
    index.write_bytes(original[:-10])
    with pytest.raises(CheckpointError, match="no SSTable footer"):
        checkpoint_variables(folder / "model.ckpt")
    index.unlink()
    with pytest.raises(FileNotFoundError, match="model.ckpt.index"):
        checkpoint_variables(folder / "model.ckpt")


def test_a_truncated_data_file_is_refused(tiny_checkpoint, tmp_path):
    folder = damaged_copy(tiny_checkpoint, tmp_path)
    data = folder / DATA
    data.write_bytes(data.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="the file ends at"):
        load_gpt2_params_from_tf_ckpt(folder / "model.ckpt", TINY)


# ---- TensorFlow stays out of the model's process --------------------------------------------------

def test_reading_needs_no_tensorflow(tiny_checkpoint, monkeypatch):
    folder, _ = tiny_checkpoint
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # any `import tensorflow` now fails
    params = load_gpt2_params_from_tf_ckpt(folder / "model.ckpt", TINY)
    assert params["wte"].shape == (100, 8)


def shadow_tensorflow(folder, source, monkeypatch):
    """Make child processes import folder/tensorflow/__init__.py (with this source) as `tensorflow`."""
    (folder / "tensorflow").mkdir(parents=True)
    (folder / "tensorflow" / "__init__.py").write_text(source)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")])))


def test_writing_without_tensorflow_says_how_to_install_it(tmp_path, monkeypatch):
    shadow_tensorflow(tmp_path / "no_tensorflow", "raise ImportError('No module named tensorflow')\n", monkeypatch)
    with pytest.raises(ImportError, match="pip install tensorflow") as error:
        writer.write_gpt2_checkpoint(writer.random_gpt2_params(TINY), TINY, tmp_path / "m")
    assert "No module named tensorflow" in str(error.value)  # the child's own reason is passed on
    assert not (tmp_path / "m").exists() and [p.name for p in tmp_path.iterdir()] == ["no_tensorflow"]


def test_a_failing_writer_leaves_the_earlier_folder_as_it_was(tiny_checkpoint, tmp_path, monkeypatch):
    folder = damaged_copy(tiny_checkpoint, tmp_path)  # an earlier, good checkpoint of that name
    before = {path.name: path.read_bytes() for path in folder.iterdir()}
    shadow_tensorflow(tmp_path / "broken_tensorflow",
                      "def __getattr__(name):\n    raise RuntimeError('simulated TensorFlow failure')\n", monkeypatch)
    with pytest.raises(RuntimeError, match="simulated TensorFlow failure"):
        writer.write_gpt2_checkpoint(writer.random_gpt2_params(TINY, seed=9), TINY, folder)
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken_tensorflow", "tiny"]  # no temporary folder


# The crash this module's design avoids (issue: "The README's own install crashes 03-05"): 03's path
# loads a checkpoint, then builds a model on the meta device, which makes PyTorch import triton. With
# TensorFlow loaded, that aborted the process wherever triton is installed (PyTorch's CUDA builds).
NOTEBOOK_PATH_SCRIPT = textwrap.dedent("""
    import importlib.util, sys
    import gpt2_from_scratch.weights as nb  # 03's module, and what it imports from gpt2_support and 01
    import torch
    from gpt_download import download_and_load_gpt2
    hparams, params = download_and_load_gpt2({size!r}, {models_dir!r}, progress=False)
    model = nb.gpt_for_checkpoint(hparams)  # the meta device
    nb.load_weights_into_gpt(model, params)
    with torch.device("meta"):
        nb.GPTModel(nb.GPTConfig(vocab_size=100, context_length=16, emb_dim=8, n_heads=2, n_layers=1))
    assert "tensorflow" not in sys.modules, "reading a checkpoint loaded TensorFlow into the process"
    has_triton = importlib.util.find_spec("triton") is not None
    if has_triton:
        import triton  # the import that aborted beside TensorFlow
    print("ok, triton", "imported" if has_triton else "not installed")
""")


def test_loading_then_the_meta_device_runs_and_never_loads_tensorflow(tiny_checkpoint, tmp_path):
    folder, _ = tiny_checkpoint
    size = "774M"  # a size with no known byte counts, so the tiny stand-in is accepted
    shutil.copytree(folder, tmp_path / size)
    script = NOTEBOOK_PATH_SCRIPT.format(size=size, models_dir=str(tmp_path))
    result = subprocess.run([sys.executable, "-X", "faulthandler", "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, timeout=300)
    assert result.returncode == 0, f"exit code {result.returncode}:\n{result.stdout[-4000:]}"
    assert result.stdout.strip().splitlines()[-1].startswith("ok, triton")
