"""02's loop under torchrun: two CPU processes (gloo) that each accumulate 2 batches per step train like
one process accumulating 4 on the same data order, and a run interrupted and resumed under two
processes equals an uninterrupted one, exactly.

The two-process runs go through the command line (`gpt2 pretrain`, as `-m gpt2_support`) started by
`python -m torch.distributed.run` (what the `torchrun` command runs). The one-process reference calls
train_model_improved directly, on the windows in the order the two processes read them together:
process 0's first batch, process 1's first batch, process 0's second, ...
"""

import contextlib
import dataclasses
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from gpt2_from_scratch.architecture import GPTModel, load_gpt2_tokenizer
from gpt2_from_scratch.pretraining import (learning_rate_at, load_checkpoint, make_optimizer, train_model_improved,
                                          with_fast_dropout)
from gpt2_support.cli import build_parser
from gpt2_support.cli_pretrain import model_config, read_text, training_data, training_settings

REPO = Path(__file__).resolve().parents[1]
TINY_RUN = ["--device", "cpu", "--preset", "tiny", "--context-length", "16", "--emb-dim", "32", "--layers", "2", "--heads", "2",
            "--batch-size", "2", "--lr", "1e-3", "--eval-freq", "3", "--eval-iter", "2", "--precision", "fp32",
            "--seed", "7", "--no-progress", "--start-context", "Every effort"]


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    """The first 3,000 characters of The Verdict: 42 training windows of 16 tokens (10 batches of 2 per
    process), 4 for validation."""
    path = tmp_path_factory.mktemp("text") / "verdict-start.txt"
    path.write_text((REPO / "data" / "the-verdict.txt").read_text(encoding="utf-8")[:3000], encoding="utf-8")
    return path


def torchrun(processes, *arguments):
    # One thread a process (two processes, two cores); no GPU, so that the test is the same everywhere.
    environment = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node", str(processes), "-m", "gpt2_support", "pretrain", *arguments],
                         env=environment, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    assert run.stdout.count("wrote ") == 1  # only process 0 writes (and says so)
    return run


def two_process_order(dataset, batch_size, seed, epochs):
    """The windows of `epochs` epochs in the order two processes with DistributedSampler read them
    together, batch by batch (each epoch its own order, as set_epoch gives it)."""
    order = []
    for epoch in range(epochs):
        shares = []
        for rank in (0, 1):
            sampler = DistributedSampler(dataset, num_replicas=2, rank=rank, shuffle=True, seed=seed, drop_last=True)
            sampler.set_epoch(epoch)
            shares.append(list(sampler))
        for start in range(0, len(shares[0]) - batch_size + 1, batch_size):
            for share in shares:
                order += share[start:start + batch_size]
    return order


def one_process_with_accumulation(text, out_dir, epochs):
    """What gpt2 pretrain does in one process, with 4 accumulation steps over two_process_order."""
    arguments = build_parser().parse_args(
        ["pretrain", "--text", str(text), "--out-dir", str(out_dir), *TINY_RUN, "--drop-rate", "0",
         "--epochs", str(epochs), "--accumulation-steps", "4"])
    config = model_config(arguments)
    torch.manual_seed(arguments.seed)
    tokenizer = load_gpt2_tokenizer()
    train_loader, val_loader = training_data(arguments, read_text(arguments.text), tokenizer, config,
                                             distributed=False)
    model = with_fast_dropout(GPTModel(config))  # as gpt2 pretrain builds it
    optimizer = make_optimizer(model, lr=arguments.lr, weight_decay=arguments.weight_decay)
    # All epochs' windows in one pass: the same steps and schedule, with no set_epoch to rely on.
    in_two_process_order = DataLoader(train_loader.dataset, batch_size=arguments.batch_size, sampler=two_process_order(
        train_loader.dataset, arguments.batch_size, arguments.seed, epochs))
    settings = dataclasses.replace(training_settings(arguments, precision="fp32"), num_epochs=1,
                                   checkpoint_path=None, best_checkpoint_path=None)  # nothing saved
    with contextlib.redirect_stdout(io.StringIO()):
        history = train_model_improved(model, in_two_process_order, val_loader, optimizer, "cpu", settings, tokenizer)
    return model.state_dict(), history


def test_two_processes_train_like_one_with_twice_the_accumulation(text, tmp_path):
    # Each process accumulates 2 batches per step (no_sync for the first): a step is 2 x 2 batches of 2.
    torchrun(2, "--text", str(text), "--out-dir", str(tmp_path / "ddp"), *TINY_RUN, "--drop-rate", "0",
             "--epochs", "2", "--accumulation-steps", "2")
    expected_weights, expected_history = one_process_with_accumulation(text, tmp_path / "one", epochs=2)
    weights = load_checkpoint(tmp_path / "ddp" / "last.pt")["model"]
    # The two runs add the same gradients in another order, so their gradients differ by rounding, and AdamW
    # moves each weight by about lr per step whatever its gradient's size (m / sqrt(v) is about +-1): after
    # the 10 steps the runs may differ by a fraction of the sum of the learning rates, the relative error of
    # the steps. For a gradient whose exact value is not 0 that is a few float32 roundoffs (2^-24) times the
    # cancellation in its sum; 2e-3 of the sum (1.1e-5) leaves room for cancellations of 1e4. Measured: the
    # largest difference 3.6e-7 (7e-5 of the sum) on AMD EPYC, the processes on AVX-512 kernels and the
    # reference on the default ones; 2e-7 with every gradient entry multiplied by 1 +- 2^-23. A real mistake
    # moves weights by about lr (3e-3 to 9e-3): an epoch in the other one's order, gradients left
    # unsynchronised, a loss not divided by the accumulation steps.
    # The attention's key biases are left out: their exact gradient is 0 (adding q . b_k to all of a query's
    # scores leaves the softmax unchanged), so they get rounding noise (about 1e-11), which Adam's division by
    # sqrt(v) turns into steps of up to lr. Noise of 1e-10 added to it, a rounding difference of other
    # kernels, moves them by 5e-5 to 9e-5 (the former bound was 1e-5) and no other weight by more than 2e-7.
    total_steps = 2 * 5  # 2 epochs of 5 steps: 10 batches of 2 per process, 2 batches a step
    total_lr = sum(learning_rate_at(step, total_steps, 1e-3, int(0.2 * total_steps)) for step in range(total_steps))
    emb_dim = expected_weights["tok_emb.weight"].shape[1]
    not_key = torch.ones(3 * emb_dim, dtype=torch.bool)
    not_key[emb_dim:2 * emb_dim] = False  # the fused qkv bias is [queries | keys | values]
    largest = max(((weights[name] - expected) if not name.endswith("attn.qkv.bias") else
                   (weights[name] - expected)[not_key]).abs().max().item() for name, expected in expected_weights.items())
    assert largest < 2e-3 * total_lr, f"two processes and one process with accumulation differ by {largest:.1e}"
    history = json.loads((tmp_path / "ddp" / "history.json").read_text())
    assert history["step"] == expected_history["step"] == [0, 3, 6, 9]  # 2 epochs of 5 steps, every 3rd
    assert history["tokens_seen"] == expected_history["tokens_seen"]  # counted over both processes
    assert history["val_loss"] == pytest.approx(expected_history["val_loss"], abs=1e-4)


def test_a_run_interrupted_and_resumed_under_two_processes_equals_an_uninterrupted_one(text, tmp_path):
    run = ["--text", str(text), *TINY_RUN, "--drop-rate", "0.1", "--epochs", "2"]  # dropout: each process its own
    torchrun(2, *run, "--out-dir", str(tmp_path / "uninterrupted"))
    torchrun(2, *run, "--out-dir", str(tmp_path / "resumed"), "--stop-after-epoch", "0")
    torchrun(2, *run, "--out-dir", str(tmp_path / "resumed"), "--resume")
    uninterrupted = load_checkpoint(tmp_path / "uninterrupted" / "last.pt")
    resumed = load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert resumed["step"] == uninterrupted["step"] == 2 * 10 - 1
    assert all(torch.equal(resumed["model"][name], tensor) for name, tensor in uninterrupted["model"].items())
    assert resumed["history"] == uninterrupted["history"]
    assert len(resumed["process_rng_states"]) == 2  # each process's random state, for the next resume
