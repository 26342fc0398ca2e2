"""CRC32C (Castagnoli), the checksum TensorFlow stores for every block of a checkpoint's index and for
every tensor in its data file, computed with NumPy.

Python has no built-in CRC32C, and a byte-at-a-time loop in Python would take minutes for 500 MB, so
long inputs are cut into lanes of _LANE_BYTES that numpy advances together, 4 bytes a step, through two
tables of 65,536 entries (one per half of the 4 bytes). The lanes' CRCs are then joined using the fact
that a CRC is linear: continuing a CRC over more bytes is a fixed linear map of the old value (advancing
it over that many zero bytes: over_lane below) XOR the CRC of the new bytes alone.
"""

import numpy as np

__all__ = ["crc32c", "crc32c_masked"]

_CRC32C_POLYNOMIAL = 0x82F63B78  # bit-reversed 0x1EDC6F41
_LANE_BYTES = 4096
_LANES_PER_PASS = 8192  # 32 MB at a time: a step reads one word per lane, and the 8192 cache lines it
# reads from (512 KB) stay in the CPU cache for the next 15 steps


def _crc32c_tables():
    byte_table = np.zeros(256, np.uint32)  # one byte's effect on the CRC register
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (_CRC32C_POLYNOMIAL if crc & 1 else 0)
        byte_table[byte] = crc

    def advance(register, n_bytes):  # the register after n_bytes zero bytes
        for _ in range(n_bytes):
            register = byte_table[register & 0xFF] ^ (register >> 8)
        return register

    halves = np.arange(65536, dtype=np.uint32)
    first_half = advance(halves, 4)  # bytes 0-1 of a 4-byte step, then bytes 2-3 still to come
    second_half = advance(halves << 16, 4)
    # Advancing a register over one lane of zero bytes, as 4 tables indexed by the register's bytes.
    bits = advance(np.uint32(1) << np.arange(32, dtype=np.uint32), _LANE_BYTES)  # where each bit goes
    over_lane = [[0] * 256 for _ in range(4)]
    for position in range(4):
        for byte in range(256):
            for bit in range(8):
                if byte >> bit & 1:
                    over_lane[position][byte] ^= int(bits[8 * position + bit])
    return byte_table.tolist(), first_half, second_half, over_lane


_CRC32C = None  # the tables, built on first use (about 0.1 s)


def crc32c(data):
    """CRC32C of bytes (or of a numpy array's bytes), as TensorFlow and LevelDB compute it."""
    global _CRC32C
    if _CRC32C is None:
        _CRC32C = _crc32c_tables()
    byte_table, first_half, second_half, over_lane = _CRC32C
    if isinstance(data, np.ndarray):
        view = np.ascontiguousarray(data).reshape(-1).view(np.uint8)  # the bytes in C order
    else:
        view = np.frombuffer(data, np.uint8)
    n_lanes = len(view) // _LANE_BYTES if len(view) >= 16 * _LANE_BYTES else 0
    crc = 0xFFFFFFFF
    for first in range(0, n_lanes, _LANES_PER_PASS):
        lanes = view[first * _LANE_BYTES:min(first + _LANES_PER_PASS, n_lanes) * _LANE_BYTES]
        words = lanes.view("<u4").reshape(-1, _LANE_BYTES // 4)  # [lane, step]
        registers = np.zeros(len(words), np.uint32)  # each lane's CRC register, from 0
        index, low, high = (np.empty_like(registers) for _ in range(3))
        for step in range(words.shape[1]):
            registers ^= words[:, step]
            np.take(first_half, np.bitwise_and(registers, 0xFFFF, out=index), out=low)
            np.take(second_half, np.right_shift(registers, 16, out=index), out=high)
            np.bitwise_xor(low, high, out=registers)
        for register in registers.tolist():
            crc = (over_lane[0][crc & 0xFF] ^ over_lane[1][(crc >> 8) & 0xFF]
                   ^ over_lane[2][(crc >> 16) & 0xFF] ^ over_lane[3][crc >> 24] ^ register)
    for byte in view[n_lanes * _LANE_BYTES:].tobytes():
        crc = byte_table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def crc32c_masked(data):
    """The masked CRC32C that TensorFlow and LevelDB store (rotated and offset, so that a CRC of data
    that itself contains CRCs stays well distributed)."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
