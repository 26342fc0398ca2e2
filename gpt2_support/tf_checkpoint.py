"""OpenAI's TensorFlow checkpoints, read without TensorFlow: the index, each tensor, and whole files checked.

Why not tf.train.load_checkpoint: TensorFlow and triton (which pip installs beside PyTorch's default
Linux build, and which Colab has) each carry their own copy of LLVM. Once TensorFlow's native libraries
are loaded into a process, the first import of triton there aborts the whole process ("LLVM ERROR:
inconsistency in registered CommandLine options"), and PyTorch imports triton lazily, for instance the
first time a model is built on the meta device. So the process that runs the model never imports
TensorFlow: this module reads the checkpoint's files itself, and 03_pretrained_weights'
write_gpt2_checkpoint runs TensorFlow in a child process to write them.

The format, TensorFlow's "tensor bundle" (what tf.train.Saver writes):
- model.ckpt.index is an SSTable (LevelDB's table format): sorted key/value records in blocks, each
  block followed by a 1-byte compression type and a CRC32C, and a 48-byte footer that points at the
  block index. The record with key "" holds a BundleHeaderProto; every other key is a variable name
  whose value is a BundleEntryProto: dtype, shape, shard, offset and size in the data file, and a
  CRC32C of the tensor's bytes.
- model.ckpt.data-00000-of-00001 holds each tensor's raw little-endian bytes at that offset.
- model.ckpt.meta is a MetaGraphDef, TensorFlow's graph; no reader needs it (meta_graph_problem checks
  its framing, the only check there is for a size whose SHA-256 is not published).
The messages are protocol buffers, decoded below with a few lines of our own. Every read checks the
CRC32Cs it passes: a damaged file raises a CheckpointError naming it and saying what to do.
"""

import collections
from pathlib import Path

import numpy as np

from gpt2_support.crc32c import crc32c_masked
from gpt2_support.layout import CheckpointError, openai_variable_shapes, variables_to_params

__all__ = ["TensorEntry", "read_checkpoint_index", "checkpoint_variables", "read_checkpoint_tensor",
           "check_checkpoint_data", "load_gpt2_params_from_tf_ckpt", "meta_graph_problem"]

_TF_DTYPES = {1: "<f4", 2: "<f8", 3: "<i4", 4: "u1", 5: "<i2", 6: "i1", 9: "<i8", 10: "?", 19: "<f2"}
_SSTABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_BYTES = 48


def _damaged(path, what):
    error = CheckpointError(f"{path} is damaged or not a TensorFlow checkpoint ({what}). Delete the "
                            f"model's folder {Path(path).parent}/ and run again to download it afresh.")
    error.what = what  # the bare finding, for the downloader's own messages
    return error


def _varint(buffer, position):
    """Decode a protocol-buffer varint at `position`: (value, position after it)."""
    value = shift = 0
    while True:
        byte = buffer[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7
        if shift >= 70:  # a 64-bit varint takes at most 10 bytes; a longer one would grow without end
            raise ValueError(f"a varint longer than 10 bytes at byte {position - 10:,}")


def _protobuf_fields(message):
    """Yield (field number, value) for each field of a serialized protocol-buffer message. Varints
    come out as ints, fixed32 as ints, length-delimited fields as bytes (fixed64 as bytes)."""
    position = 0
    while position < len(message):
        key, position = _varint(message, position)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, position = _varint(message, position)
        elif wire_type == 1:
            value, position = message[position:position + 8], position + 8
        elif wire_type == 2:
            length, position = _varint(message, position)
            value, position = message[position:position + length], position + length
        elif wire_type == 5:
            value, position = int.from_bytes(message[position:position + 4], "little"), position + 4
        else:
            raise ValueError(f"unsupported protocol-buffer wire type {wire_type}")
        yield number, value


def _block(data, handle, path):
    """The contents of the SSTable block at `handle` (offset, size), after checking its CRC32C."""
    offset, size = handle
    if offset + size + 5 > len(data):
        raise _damaged(path, "a block runs past the end of the file")
    contents, compression = data[offset:offset + size], data[offset + size]
    stored = int.from_bytes(data[offset + size + 1:offset + size + 5], "little")
    if crc32c_masked(data[offset:offset + size + 1]) != stored:
        raise _damaged(path, f"CRC32C mismatch in the block at byte {offset}")
    if compression != 0:
        raise _damaged(path, f"block compression type {compression}; only uncompressed blocks are read")
    return contents


def _block_records(contents):
    """Yield (key, value) for each record of an SSTable block: keys share a prefix with the key before."""
    n_restarts = int.from_bytes(contents[-4:], "little")
    end = len(contents) - 4 * (n_restarts + 1)  # the restart points after the records are not needed
    position, key = 0, b""
    while position < end:
        shared, position = _varint(contents, position)
        unshared, position = _varint(contents, position)
        value_length, position = _varint(contents, position)
        key = key[:shared] + contents[position:position + unshared]
        position += unshared
        yield key, contents[position:position + value_length]
        position += value_length


def _sstable_records(path):
    """Every (key, value) record of an SSTable file, in key order."""
    data = Path(path).read_bytes()
    if len(data) < _FOOTER_BYTES or int.from_bytes(data[-8:], "little") != _SSTABLE_MAGIC:
        raise _damaged(path, "no SSTable footer")
    footer = data[-_FOOTER_BYTES:]
    _, position = _varint(footer, _varint(footer, 0)[1])  # skip the meta-index block's handle
    index_offset, position = _varint(footer, position)
    index_size, _ = _varint(footer, position)
    for _, handle in _block_records(_block(data, (index_offset, index_size), path)):
        offset, position = _varint(handle, 0)
        size, _ = _varint(handle, position)
        yield from _block_records(_block(data, (offset, size), path))


# Where one variable lies, from the index file. crc32c is the masked CRC32C of its bytes.
TensorEntry = collections.namedtuple("TensorEntry", "dtype shape shard offset size crc32c")


def _tensor_entry(name, value, path):
    fields = {1: 0, 2: b"", 3: 0, 4: 0, 5: 0, 6: 0}  # proto3 leaves out fields that are 0
    shape = []
    for number, field in _protobuf_fields(value):
        if number == 2:  # TensorShapeProto: repeated Dim (field 2), each with size (field 1)
            shape = [dict(_protobuf_fields(dim)).get(1, 0) for n, dim in _protobuf_fields(field) if n == 2]
        elif number == 7:
            raise CheckpointError(f"{path}: {name} is stored in slices (a partitioned variable); "
                                  "this reader reads whole tensors only")
        else:
            fields[number] = field
    if not all(type(value) is int for value in (*shape, *(fields[number] for number in (1, 3, 4, 5, 6)))):
        raise ValueError(f"{name}: a field of the wrong wire type")  # e.g. an offset sent as bytes
    return TensorEntry(dtype=fields[1], shape=tuple(shape), shard=fields[3], offset=fields[4],
                       size=fields[5], crc32c=fields[6])


def read_checkpoint_index(ckpt_path, index_path=None):
    """The variables of a TensorFlow checkpoint, from its .index file: ({name: TensorEntry}, number of
    data shards). Reads only the index; needs no TensorFlow. index_path: read the index from this file
    instead of `<ckpt_path>.index` (a download not yet under its final name)."""
    path = Path(index_path or str(ckpt_path) + ".index")
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: a TensorFlow checkpoint `{ckpt_path}` needs "
                                f"{path.name} beside its data file")
    entries, n_shards = {}, None
    try:
        for key, value in _sstable_records(path):
            if key == b"":  # BundleHeaderProto: num_shards (1), endianness (2: 0 little, 1 big)
                header = dict(_protobuf_fields(value))
                if header.get(2, 0) != 0:
                    raise CheckpointError(f"{path}: a big-endian checkpoint; this reader reads little-endian ones")
                n_shards = header.get(1, 1)
            else:
                name = key.decode("utf-8")
                entries[name] = _tensor_entry(name, value, path)
    except CheckpointError:
        raise
    except (IndexError, TypeError, ValueError, UnicodeDecodeError) as error:  # malformed records
        raise _damaged(path, f"unreadable index: {error}") from error
    if n_shards is None:
        raise _damaged(path, "no bundle header")
    return entries, n_shards


def checkpoint_variables(ckpt_path):
    """The variables stored in a TensorFlow checkpoint: {name: shape}, sorted by name."""
    entries, _ = read_checkpoint_index(ckpt_path)
    return {name: entry.shape for name, entry in sorted(entries.items())}


def read_checkpoint_tensor(ckpt_path, name, entry, n_shards=1, data_path=None):
    """Read one variable's bytes from the data file, check them against the index's CRC32C, and return
    them as a numpy array of the entry's dtype and shape. data_path: read from this file instead of the
    shard the entry names (a download not yet under its final name)."""
    data_path = Path(data_path or f"{ckpt_path}.data-{entry.shard:05d}-of-{n_shards:05d}")
    dtype = _tensor_dtype(ckpt_path, name, entry, data_path)
    if not data_path.is_file():
        raise FileNotFoundError(f"{data_path} is missing, and the checkpoint's index places {name} in it: "
                                f"put that file in {data_path.parent}/, or delete the folder and download again")
    with open(data_path, "rb") as file:
        raw = _read_tensor_bytes(file, data_path, name, entry)
    return raw.view(dtype).reshape(entry.shape).astype(dtype.newbyteorder("="), copy=False)


def _tensor_dtype(ckpt_path, name, entry, data_path):
    """The numpy dtype of a variable, after checking that its byte count fits its shape."""
    if entry.dtype not in _TF_DTYPES:
        raise CheckpointError(f"{data_path}: {name} has TensorFlow dtype {entry.dtype}, which this reader "
                              "does not read")
    dtype = np.dtype(_TF_DTYPES[entry.dtype])
    if entry.size != dtype.itemsize * int(np.prod(entry.shape)):
        raise _damaged(Path(f"{ckpt_path}.index"), f"{name}: {entry.size} bytes for shape {entry.shape}")
    return dtype


def _read_tensor_bytes(file, data_path, name, entry):
    """One variable's raw bytes (uint8) from the open data file, checked against the index's CRC32C."""
    raw = np.empty(entry.size, np.uint8)
    file.seek(entry.offset)
    n_read = file.readinto(raw)
    if n_read != entry.size:
        raise _damaged(data_path, f"{name} needs bytes {entry.offset:,} to {entry.offset + entry.size:,}, "
                                  f"the file ends at {entry.offset + n_read:,}")
    if crc32c_masked(raw) != entry.crc32c:
        raise _damaged(data_path, f"the bytes of {name} fail their CRC32C check")
    return raw


def check_checkpoint_data(ckpt_path, data_path=None, digest=None):
    """Check a checkpoint's data file whole, in one read from front to back: every tensor the index lists
    must pass its CRC32C, and the file must end where the last tensor does. digest: a hashlib object fed
    every byte of the file in order, so that its SHA-256 comes from the same read. data_path: check this
    file instead of `<ckpt_path>.data-00000-of-00001` (a download not yet under its final name).
    A CheckpointError (its `what`: the bare finding) says what is wrong."""
    entries, n_shards = read_checkpoint_index(ckpt_path)
    data_path = Path(data_path or f"{ckpt_path}.data-00000-of-{n_shards:05d}")
    if n_shards != 1:
        raise _damaged(Path(f"{ckpt_path}.index"), f"the weights are spread over {n_shards} data files")
    end = max((entry.offset + entry.size for entry in entries.values()), default=0)
    size = data_path.stat().st_size
    if size != end:
        raise _damaged(data_path, f"{size:,} bytes, but the index places the tensors in the first {end:,}")
    position = 0  # every byte before it has gone into the digest
    with open(data_path, "rb") as file:
        for name, entry in sorted(entries.items(), key=lambda item: item[1].offset):
            _tensor_dtype(ckpt_path, name, entry, data_path)
            if digest is not None and entry.offset > position:  # bytes between two tensors
                file.seek(position)
                digest.update(file.read(entry.offset - position))
            raw = _read_tensor_bytes(file, data_path, name, entry)
            if digest is not None and entry.offset + entry.size > position:
                digest.update(raw[max(0, position - entry.offset):])
            position = max(position, entry.offset + entry.size)


def load_gpt2_params_from_tf_ckpt(ckpt_path, hparams):
    """Read an OpenAI GPT-2 checkpoint into nested numpy arrays:

    {"wte", "wpe", "g", "b", "blocks": [{"ln_1": {"g", "b"}, "attn": {"c_attn": {"w", "b"}, ...},
                                         "ln_2": ..., "mlp": {"c_fc": ..., "c_proj": ...}}, ...]}

    ("g" and "b" at the top are the final layer norm, ln_f.) The leading singleton axis of every
    [1, in, out] weight is squeezed away, so a "w" is [in, out]. Every tensor's bytes are checked
    against the CRC32C in the index. Needs no TensorFlow.
    """
    entries, n_shards = read_checkpoint_index(ckpt_path)
    expected = openai_variable_shapes(hparams)
    missing = sorted(set(expected) - set(entries))
    if missing:
        raise ValueError(f"{ckpt_path} lacks {len(missing)} variables hparams.json implies, "
                         f"e.g. {missing[:3]}; do hparams.json and the checkpoint belong together?")
    extra = sorted(set(entries) - set(expected))
    if extra:
        raise ValueError(f"{ckpt_path} has {len(extra)} variables hparams.json does not imply, e.g. {extra[:3]}; "
                         "do hparams.json and the checkpoint belong together?")
    for name, shape in expected.items():
        if entries[name].shape != shape:
            raise ValueError(f"{name} has shape {entries[name].shape} in {ckpt_path}; "
                             f"hparams.json implies {shape}")
    variables = {name: read_checkpoint_tensor(ckpt_path, name, entries[name], n_shards) for name in expected}
    return variables_to_params(variables, hparams)


def meta_graph_problem(path):
    """What is wrong with model.ckpt.meta's framing, or None. It is a MetaGraphDef: a protocol-buffer
    message whose fields (1 to 7) are all length-delimited, with the graph (field 2) among them; the whole
    file must be such fields (the graph itself is not read). Catches a file cut short and a web page."""
    data = Path(path).read_bytes()
    position, seen = 0, set()
    try:
        while position < len(data):
            start = position
            key, position = _varint(data, position)
            number, wire_type = key >> 3, key & 7
            if wire_type != 2 or not 1 <= number <= 7:
                return f"not a TensorFlow MetaGraphDef (field {number}, wire type {wire_type} at byte {start:,})"
            length, position = _varint(data, position)
            position += length
            seen.add(number)
    except (IndexError, ValueError):  # cut short, or a varint longer than 10 bytes
        position = len(data) + 1
    if position != len(data):
        return "it ends in the middle of a field (cut short?)"
    return None if 2 in seen else "it holds no graph"
