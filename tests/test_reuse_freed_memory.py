"""02's reuse_freed_memory: glibc keeps a freed large block for the next one, so writing it faults no pages."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

# In a child process (the setting lasts for the whole process): 20 times, a fresh 64 MiB tensor (above glibc's
# largest mmap threshold, 32 MiB, as the logits and embedding gradients of a GPT-2 training step are) is
# written through and freed; the minor page faults of the last 10 are counted.
CHILD = textwrap.dedent("""
    import json, resource, sys
    import torch
    from gpt2_from_scratch.pretraining import reuse_freed_memory
    applied = reuse_freed_memory() if sys.argv[1] == "reuse" else None
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for round in range(20):
        if round == 10:
            start = faults()
        torch.ones(16 << 20)  # 64 MiB of float32, written, then freed at once
    print(json.dumps(dict(applied=applied, faults_per_block=(faults() - start) / 10)))
""")
PAGES_PER_BLOCK = (64 << 20) // 4096  # 16,384 pages of 4 KiB


def child_result(mode):
    result = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    return json.loads(result.stdout)


def glibc():
    try:
        return bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (AttributeError, ValueError, OSError):
        return False


@pytest.mark.skipif(not glibc(), reason="reuse_freed_memory changes glibc's malloc only")
def test_a_freed_large_block_is_reused_without_page_faults():
    as_is, reused = child_result("as-is"), child_result("reuse")
    # As is, every block is mapped afresh: each of its pages faults once when written (fewer only where the
    # system hands out huge pages, 2 MiB each, 32 to a block).
    assert as_is["faults_per_block"] >= 32, as_is
    assert reused["applied"] is True
    assert reused["faults_per_block"] < 0.01 * PAGES_PER_BLOCK, reused  # the block is reused: next to no faults
    assert reused["faults_per_block"] < as_is["faults_per_block"] / 10


def test_nothing_is_changed_where_the_c_library_is_not_glibc(nb02, monkeypatch):
    def not_glibc(name):
        raise ValueError(f"unrecognized configuration name {name!r}")

    monkeypatch.setattr(nb02.os, "confstr", not_glibc)
    monkeypatch.setattr(nb02.ctypes, "CDLL", lambda name: pytest.fail("the C library was called"))
    assert nb02.reuse_freed_memory() is False


@pytest.mark.parametrize("keep_bytes", [-1, 1 << 31, 1 << 32])
def test_a_threshold_a_c_int_cannot_hold_is_refused(nb02, keep_bytes, monkeypatch):
    # (1 << 32 would reach mallopt as 0, "give everything back": the opposite of what was asked)
    monkeypatch.setattr(nb02.ctypes, "CDLL", lambda name: pytest.fail("the C library was called"))
    with pytest.raises(ValueError, match="keep_bytes must be from 0 to 2\\*\\*31 - 1"):
        nb02.reuse_freed_memory(keep_bytes)
