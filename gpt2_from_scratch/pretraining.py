# Generated from 02_pretraining.ipynb; edit the notebook, then regenerate: python tools/export_package.py
"""The definitions of 02_pretraining.ipynb, for later notebooks, the tests and the benchmarks.

Each part below is one exported cell of the notebook, headed by the cell's number (counted from 0,
markdown cells included) and its section.
"""


__all__ = [
    "text_to_token_ids", "token_ids_to_text", "calc_loss_batch", "calc_loss_loader", "pick_precision",
    "AUTOCAST_DTYPES", "autocast", "evaluate_model", "generate_sample", "print_samples", "new_history", "record",
    "train_model_simple", "parameter_groups", "make_optimizer", "add_perplexity_axis", "plot_losses",
    "reinit_embeddings", "learning_rate_at", "content_sha256", "save_checkpoint", "checksum_path",
    "is_distributed", "is_main_process", "unwrap_model", "MUST_MATCH", "MAY_CHANGE", "TrainingSettings",
    "accumulate_gradients", "train_model_improved", "wait_for", "fastest_seconds", "matmul_flops_per_second",
    "training_memory", "top_k_filter", "top_p_filter", "penalize_repetition", "cached_attention",
    "forward_with_cache", "sample_next_token", "check_prompt", "check_decoding_options", "generate",
    "beam_search", "KVCache", "padding_and_positions", "forward_into_cache", "generate_batch", "bf16_weights",
    "load_checkpoint", "check_checkpoint", "config_from_checkpoint", "model_from_checkpoint", "check_resumable",
    "process_rng_states", "restore_rng_state", "save_for_resuming", "resume_training", "setup_distributed",
    "distributed_loader", "fast_dropout", "FastDropout", "causal_attention_with_dropout",
    "FastCausalSelfAttention", "with_fast_dropout", "reuse_freed_memory",
]


# 02_pretraining.ipynb, cell 5 (section "Setup")
import contextlib
import copy
import ctypes
import errno
import hashlib
import math
import os
import pickle
import sys
import time
from dataclasses import asdict, fields
from pathlib import Path

import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from gpt2_support.files import atomic_write_path  # write beside the file, then rename (see 01, section 1)
from gpt2_support.files import sha256_of  # a file's SHA-256, read in chunks
from gpt2_from_scratch.architecture import CausalSelfAttention  # 01, section 3.7: fused multi-head attention
from gpt2_from_scratch.architecture import GPTConfig, GPTModel  # 01, sections 4.5 and 5: the model
from gpt2_from_scratch.architecture import generate_greedy  # 01, section 5.3: greedy decoding


# 02_pretraining.ipynb, cell 11 (section "1. Text in, text out")
def text_to_token_ids(text, tokenizer):
    """Encode text as a (1, n_tokens) tensor of token ids."""
    return torch.tensor([tokenizer.encode(text, allowed_special={"<|endoftext|>"})])


def token_ids_to_text(token_ids, tokenizer):
    """Decode a (1, n_tokens) or (n_tokens,) tensor of token ids."""
    return tokenizer.decode(token_ids.flatten().tolist())


# 02_pretraining.ipynb, cell 29 (section "4. The loss over a batch and over a data set")
def calc_loss_batch(input_batch, target_batch, model, device):
    """Mean cross-entropy of the model's next-token predictions on one batch."""
    logits = model(input_batch.to(device))
    # .float(): under autocast the logits may be bf16/fp16; the loss is always computed in float32.
    return F.cross_entropy(logits.flatten(0, 1).float(), target_batch.to(device).flatten())


def calc_loss_loader(data_loader, model, device, num_batches=None):
    """Mean loss over the first `num_batches` batches of `data_loader` (all of them by default)."""
    if len(data_loader) == 0:
        raise ValueError("the data loader is empty: use more text or a shorter context")
    num_batches = len(data_loader) if num_batches is None else min(num_batches, len(data_loader))
    total = 0.0
    for index, (input_batch, target_batch) in enumerate(data_loader):
        if index >= num_batches:
            break
        total += calc_loss_batch(input_batch, target_batch, model, device).item()
    return total / num_batches


# 02_pretraining.ipynb, cell 32 (section "Cheaper steps: lower precision and a fused optimizer")
def pick_precision(device):
    """'bf16' where the device computes it natively, 'fp16' on older NVIDIA GPUs, else 'fp32'."""
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"
    if device.type == "cpu" and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()):
        return "bf16"
    return "fp32"


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device, precision):
    """A context in which matrix products run in `precision`; for 'fp32' it changes nothing."""
    return torch.autocast(torch.device(device).type, dtype=AUTOCAST_DTYPES.get(precision),
                          enabled=precision in AUTOCAST_DTYPES)


# 02_pretraining.ipynb, cell 35 (section "5. A simple training loop")
def evaluate_model(model, train_loader, val_loader, device, eval_iter, precision="fp32"):
    """Train and validation loss on the first `eval_iter` batches, in evaluation mode."""
    model.eval()
    with torch.inference_mode(), autocast(device, precision):
        train_loss = calc_loss_loader(train_loader, model, device, num_batches=eval_iter)
        val_loss = calc_loss_loader(val_loader, model, device, num_batches=eval_iter)
    model.train()
    return train_loss, val_loss


def generate_sample(model, tokenizer, device, start_context, max_new_tokens=50):
    """What the model writes after start_context (greedy), on one line."""
    model.eval()
    token_ids = generate_greedy(model, text_to_token_ids(start_context, tokenizer).to(device), max_new_tokens)
    model.train()
    return token_ids_to_text(token_ids, tokenizer).replace("\n", " ")


def print_samples(samples):
    """The sample of each epoch, printed once training is done, so that the progress bar stays one line."""
    for epoch, sample in samples:
        print(f"epoch {epoch + 1:>2}: {sample}")


def new_history():
    """Where a training loop records its evaluations, one entry per evaluation."""
    return {"step": [], "epoch": [], "tokens_seen": [], "train_loss": [], "val_loss": [], "lr": []}


def record(history, **values):
    for key, value in values.items():
        history[key].append(value)


# 02_pretraining.ipynb, cell 36 (section "5. A simple training loop")
def train_model_simple(model, train_loader, val_loader, optimizer, device, num_epochs,
                       eval_freq, eval_iter, start_context, tokenizer, precision="fp32"):
    """Train with a constant learning rate; evaluate every `eval_freq` steps; print a sample of each epoch."""
    history, tokens_seen, step, samples = new_history(), 0, -1, []
    scaler = torch.amp.GradScaler(torch.device(device).type, enabled=precision == "fp16")  # fp16 only: see 'Cheaper steps'
    # On stdout, with the samples printed after it: stored, the bar and the samples are one stream.
    progress = tqdm(total=num_epochs * len(train_loader), desc="training", file=sys.stdout)
    for epoch in range(num_epochs):
        model.train()
        for batch_index, (input_batch, target_batch) in enumerate(train_loader):
            optimizer.zero_grad()
            with autocast(device, precision):
                loss = calc_loss_batch(input_batch, target_batch, model, device)
            scaler.scale(loss).backward()  # without fp16 the scaler does nothing: loss.backward()
            scaler.step(optimizer)         # optimizer.step()
            scaler.update()
            tokens_seen += input_batch.numel()
            step += 1
            progress.update()
            if step % eval_freq == 0:
                train_loss, val_loss = evaluate_model(model, train_loader, val_loader, device, eval_iter, precision)
                record(history, step=step, epoch=epoch + (batch_index + 1) / len(train_loader),
                       tokens_seen=tokens_seen, train_loss=train_loss, val_loss=val_loss,
                       lr=optimizer.param_groups[0]["lr"])
                progress.set_postfix(train=f"{train_loss:.3f}", val=f"{val_loss:.3f}")
        samples.append((epoch, generate_sample(model, tokenizer, device, start_context)))
    progress.close()
    print_samples(samples)
    return history


# 02_pretraining.ipynb, cell 38 (section "Which parameters weight decay pulls towards zero")
def parameter_groups(model, weight_decay):
    """AdamW's two parameter groups: every trainable tensor of two or more dimensions (weight matrices and
    embeddings) decayed by weight_decay, the 1-dimensional ones (biases, layer norms' scales and shifts) not."""
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    return [{"params": [parameter for parameter in trainable if parameter.dim() >= 2], "weight_decay": weight_decay},
            {"params": [parameter for parameter in trainable if parameter.dim() < 2], "weight_decay": 0.0}]


def make_optimizer(model, lr, weight_decay):
    """AdamW over the trainable parameters, decayed as parameter_groups says, fused into one kernel where
    PyTorch has one (CPU, CUDA; section 4)."""
    groups = parameter_groups(model, weight_decay)
    parameters = groups[0]["params"] + groups[1]["params"]
    if not parameters:
        raise ValueError("the model has no trainable parameters (none with requires_grad=True) to optimise")
    fused = parameters[0].device.type in ("cpu", "cuda")
    return torch.optim.AdamW(groups, lr=lr, fused=True if fused else None)


# 02_pretraining.ipynb, cell 45 (section "Plotting the losses")
def add_perplexity_axis(axis, label="perplexity"):
    """A right-hand axis that reads the loss axis as perplexity, exp(loss), with ticks at round perplexities.
    Call it once the loss axis's limits are final: the ticks are chosen for them."""
    def loss_of(perplexity):  # the inverse of exp; matplotlib also asks it about 0, which has no logarithm
        return np.log(np.maximum(perplexity, np.finfo(float).tiny))

    perplexity_axis = axis.secondary_yaxis("right", functions=(np.exp, loss_of))
    low, high = np.exp(axis.get_ylim())
    decades = [10.0 ** k for k in range(int(np.floor(np.log10(low))), int(np.ceil(np.log10(high))) + 1)]
    ticks = [tick for tick in decades if low <= tick <= high]
    if len(ticks) < 2:  # a narrow range (the zoomed panel): round values inside it instead
        ticks = [tick for tick in matplotlib.ticker.MaxNLocator(5).tick_values(low, high) if low <= tick <= high]
    perplexity_axis.set_yticks(ticks)
    perplexity_axis.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(
        lambda value, _: f"{value:,.0f}" if value >= 100 else f"{value:.3g}"))
    perplexity_axis.set_ylabel(label)
    return perplexity_axis


def plot_losses(histories, path=None):
    """Train (dashed) and validation (solid) loss of one or more runs against epochs and tokens seen. With
    several runs, a second panel shows only their validation losses, on a y-range set by the second half of
    each run, where the curves would otherwise overlap."""
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    several = len(histories) > 1
    figure, axes = plt.subplots(1, 2 if several else 1, figsize=(12 if several else 7, 4), squeeze=False)
    axis = axes[0][0]
    for (name, history), color in zip(histories.items(), colors):
        axis.plot(history["epoch"], history["train_loss"], "--", color=color, label=f"{name}: train")
        axis.plot(history["epoch"], history["val_loss"], "-", color=color, label=f"{name}: validation")
    axis.set_xlabel("epoch")
    axis.set_ylabel("loss")
    add_perplexity_axis(axis)
    axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize="small")  # below, off the curves
    tokens_axis = axis.twiny()  # same curves, labelled in tokens seen
    reference = next(iter(histories.values()))
    tokens_axis.plot(reference["tokens_seen"], reference["train_loss"], alpha=0)
    tokens_axis.set_xlabel("tokens seen")
    if several:
        zoom, late_losses = axes[0][1], []
        for (name, history), color in zip(histories.items(), colors):
            zoom.plot(history["epoch"], history["val_loss"], "-", color=color, label=name)
            late_losses += history["val_loss"][len(history["val_loss"]) // 2:]
        zoom.set_ylim(min(late_losses) - 0.1, max(late_losses) + 0.1)
        zoom.set_xlabel("epoch")
        zoom.set_ylabel("validation loss")
        add_perplexity_axis(zoom, "validation perplexity")
        zoom.set_title("validation loss only (y-range: each run's second half)")
        zoom.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize="small")
    figure.tight_layout()
    if path is not None:
        for suffix in (".png", ".pdf"):
            figure.savefig(Path(path).with_suffix(suffix), bbox_inches="tight")
    plt.show()


# 02_pretraining.ipynb, cell 48 (section "Initialisation matters on a small corpus")
def reinit_embeddings(model, std=1.0):
    """Re-draw the token and position embeddings from N(0, std²); std=1 is PyTorch's nn.Embedding default."""
    if model.cfg.tie_weights:
        raise ValueError("the output head shares the token embedding (tie_weights=True) and would be re-drawn "
                         "too; use tie_weights=False")
    with torch.no_grad():
        nn.init.normal_(model.tok_emb.weight, mean=0.0, std=std)
        nn.init.normal_(model.pos_emb.weight, mean=0.0, std=std)
    return model


# 02_pretraining.ipynb, cell 56 (section "6. A better loop for the same budget")
def learning_rate_at(step, total_steps, peak_lr, warmup_steps, initial_lr=1e-5, min_lr=None):
    """Linear warmup from initial_lr to peak_lr, then cosine decay to min_lr (default: 10% of the peak)."""
    min_lr = 0.1 * peak_lr if min_lr is None else min_lr
    if step < warmup_steps:
        return initial_lr + (peak_lr - initial_lr) * step / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + 0.5 * (peak_lr - min_lr) * (1 + math.cos(math.pi * progress))


# 02_pretraining.ipynb, cell 59 (section "6. A better loop for the same budget")
def content_sha256(checkpoint):
    """The SHA-256 of what `checkpoint` holds, in order: each tensor's dtype, shape and bytes, each other
    value's type and repr, each dict's keys. Unlike the SHA-256 of a file, it can be stored in the file."""
    digest = hashlib.sha256()

    def add(value):
        if isinstance(value, torch.Tensor):
            digest.update(f"tensor {value.dtype} {tuple(value.shape)}\n".encode())
            flat = value.detach().cpu().contiguous().reshape(-1)  # one tensor at a time in CPU memory
            digest.update(flat.view(torch.uint8).numpy())  # its bytes (on the CPU, without a copy)
        elif isinstance(value, dict):
            digest.update(f"dict {len(value)}\n".encode())
            for key, item in value.items():
                add(key)
                add(item)
        elif isinstance(value, (list, tuple)):
            digest.update(f"list {len(value)}\n".encode())
            for item in value:
                add(item)
        else:  # a number, string, bool or None: its repr is exact (a float's gives the same float back)
            digest.update(f"{type(value).__name__} {value!r}\n".encode())

    add(checkpoint)
    return digest.hexdigest()


# 02_pretraining.ipynb, cell 61 (section "6. A better loop for the same budget")
def save_checkpoint(path, model, optimizer=None, step=None, **extra):
    """Save model, optimizer, config, step and RNG state to `path`, atomically, with the SHA-256 of its
    contents inside (content_sha256, which load_checkpoint checks) and the file's SHA-256 beside it
    (`path`.sha256, for `sha256sum -c`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {
        "config": asdict(model.cfg),
        "model": model.state_dict(),
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "step": step,
        "rng_state": torch.get_rng_state(),  # the CPU's: batch order, and dropout on the CPU
        "cuda_rng_state": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        **extra,
    }
    checkpoint["content_sha256"] = content_sha256(checkpoint)  # of all the entries above
    with atomic_write_path(path) as partial:
        try:
            torch.save(checkpoint, partial)
        except RuntimeError as error:  # how PyTorch reports a write that failed (a full disk, say)
            raise OSError(errno.EIO, f"the checkpoint could not be written ({' '.join(str(error).split())}); "
                          "nothing was replaced: free some space, or save elsewhere", str(path)) from error
        try:
            torch.load(partial, map_location="cpu", weights_only=True, mmap=True)  # it reads back (mmap: cheap)
        except Exception as error:
            raise RuntimeError(f"{path}: the saved checkpoint did not read back ({type(error).__name__}: "
                               f"{error}); nothing was replaced") from error
        file_sha256 = sha256_of(partial)
        checksum_path(path).unlink(missing_ok=True)  # the old file's SHA-256 goes before the old file does
    with atomic_write_path(checksum_path(path)) as partial:
        partial.write_text(f"{file_sha256}  {path.name}\n")  # the format of `sha256sum`
    return path


def checksum_path(path):
    """Where save_checkpoint writes the SHA-256 of the checkpoint file at `path`, for `sha256sum -c`."""
    return Path(path).with_name(Path(path).name + ".sha256")


# 02_pretraining.ipynb, cell 63 (section "6. A better loop for the same budget")
def is_distributed():
    """True in a process started by torchrun that has joined its process group (section 10)."""
    return dist.is_available() and dist.is_initialized()


def is_main_process():
    """True in a single process, and in process 0 of a distributed run: the one that evaluates, prints and saves."""
    return not is_distributed() or dist.get_rank() == 0


def unwrap_model(model):
    """The GPTModel inside a DistributedDataParallel wrapper, or the model itself."""
    return model.module if isinstance(model, DistributedDataParallel) else model


# 02_pretraining.ipynb, cell 65 (section "6. A better loop for the same budget")
from dataclasses import dataclass, field

MUST_MATCH = {"resume": "must match"}  # a resumed run must repeat it: it sets the learning rates or what a step is
MAY_CHANGE = {"resume": "may change"}  # a resumed run may set it anew


@dataclass
class TrainingSettings:
    """What train_model_improved is asked to do, besides the model, data, optimizer and device it is given."""
    num_epochs: int = field(metadata=MUST_MATCH)
    peak_lr: float = field(metadata=MUST_MATCH)  # the learning rate at the end of the warmup
    eval_freq: int = field(metadata=MAY_CHANGE)  # evaluate every eval_freq optimizer steps,
    eval_iter: int = field(metadata=MAY_CHANGE)  # on eval_iter batches of each loader
    start_context: str = field(metadata=MAY_CHANGE)  # the prompt of each epoch's sample
    warmup_fraction: float = field(default=0.2, metadata=MUST_MATCH)  # the share of the steps spent warming up
    accumulation_steps: int = field(default=1, metadata=MUST_MATCH)  # batches per optimizer step
    clip_norm: float = field(default=1.0, metadata=MAY_CHANGE)  # the gradient's largest norm, after the warmup
    precision: str = field(default="fp32", metadata=MAY_CHANGE)  # "fp32", "bf16" or "fp16" (section 4)
    best_checkpoint_path: Path | None = field(default=None, metadata=MAY_CHANGE)  # the best evaluation's weights
    checkpoint_path: Path | None = field(default=None, metadata=MAY_CHANGE)  # every epoch's end, for resuming
    stop_after_epoch: int | None = field(default=None, metadata=MAY_CHANGE)  # stop after this epoch (from 0)

    @classmethod
    def must_match(cls):
        """The names of the settings that a resumed run must repeat."""
        return [setting.name for setting in fields(cls) if setting.metadata["resume"] == "must match"]

    def schedule(self, steps_per_epoch, processes):
        """What sets every step's learning rate, and what a step is: the settings that must match (the warmup
        counted in steps), with the optimizer steps per epoch and the number of processes. Saved in the
        checkpoint for resuming; check_resumable compares it."""
        total_steps = self.num_epochs * steps_per_epoch
        return dict(num_epochs=self.num_epochs, steps_per_epoch=steps_per_epoch,
                    accumulation_steps=self.accumulation_steps, processes=processes, peak_lr=self.peak_lr,
                    warmup_steps=int(self.warmup_fraction * total_steps))


# 02_pretraining.ipynb, cell 67 (section "Gradient accumulation: a larger batch in the same memory")
def accumulate_gradients(model, batches, settings, device, scaler):
    """backward() on the next settings.accumulation_steps batches from the iterator `batches`, each loss divided
    by accumulation_steps, so that .grad holds the gradient of their mean loss; return how many tokens they held
    (in this process)."""
    tokens = 0
    for micro_step in range(settings.accumulation_steps):  # gradients add up in .grad until the step
        input_batch, target_batch = next(batches)
        # Across processes, DistributedDataParallel averages the gradients in backward() (section 10);
        # no_sync leaves that to the step's last batch.
        last = micro_step == settings.accumulation_steps - 1
        with contextlib.nullcontext() if last or model is unwrap_model(model) else model.no_sync():
            with autocast(device, settings.precision):
                loss = calc_loss_batch(input_batch, target_batch, model, device) / settings.accumulation_steps
            scaler.scale(loss).backward()
        tokens += input_batch.numel()
    return tokens


# 02_pretraining.ipynb, cell 69 (section "The improved loop and its run")
def train_model_improved(model, train_loader, val_loader, optimizer, device, settings, tokenizer, resume_from=None):
    """train_model_simple plus warmup, cosine decay, gradient clipping, a checkpoint of the best evaluation and
    gradient accumulation, as `settings` (a TrainingSettings) sets them.

    Section 9: with settings.checkpoint_path, save_for_resuming writes at the end of every epoch all that
    resuming needs; resume_from (such a checkpoint, as load_checkpoint returns it) continues with the next
    epoch and gives what an uninterrupted run would have, or is refused before anything changes.
    settings.stop_after_epoch stops after that epoch (from 0), as if interrupted.
    Section 10: in a distributed run (model wrapped in DistributedDataParallel, train_loader with a
    DistributedSampler) only the main process evaluates, prints and saves, and returns the history.
    """
    if settings.stop_after_epoch is not None and not 0 <= settings.stop_after_epoch < settings.num_epochs:
        raise ValueError(f"stop_after_epoch must be from 0 to {settings.num_epochs - 1}, "
                         f"got {settings.stop_after_epoch}")
    steps_per_epoch = len(train_loader) // settings.accumulation_steps  # optimizer steps
    if steps_per_epoch == 0:
        raise ValueError(f"an epoch has {len(train_loader)} batches, fewer than "
                         f"accumulation_steps={settings.accumulation_steps}")
    main, plain_model = is_main_process(), unwrap_model(model)  # plain_model: the GPTModel, to evaluate and save
    schedule = settings.schedule(steps_per_epoch, processes=dist.get_world_size() if is_distributed() else 1)
    total_steps, warmup_steps = settings.num_epochs * steps_per_epoch, schedule["warmup_steps"]
    scaler = torch.amp.GradScaler(torch.device(device).type, enabled=settings.precision == "fp16")  # section 4
    history, tokens_seen, step, best_val_loss, first_epoch = new_history(), 0, -1, float("inf"), 0
    if resume_from is not None:  # section 9
        history, tokens_seen, step, best_val_loss, first_epoch = resume_training(resume_from, plain_model,
                                                                                 optimizer, scaler, schedule)
    last_epoch = settings.num_epochs - 1 if settings.stop_after_epoch is None else settings.stop_after_epoch
    progress = tqdm(total=total_steps, initial=step + 1, desc="training", file=sys.stdout, disable=not main)
    samples = []
    for epoch in range(first_epoch, last_epoch + 1):
        model.train()
        if hasattr(train_loader.sampler, "set_epoch"):  # a DistributedSampler (section 10): a new order each
            train_loader.sampler.set_epoch(epoch)       # epoch, the same in every process
        batches = iter(train_loader)
        for step_in_epoch in range(steps_per_epoch):
            step += 1
            lr = learning_rate_at(step, total_steps, settings.peak_lr, warmup_steps)  # 1 and 2: warmup, cosine decay
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad()
            tokens_seen += accumulate_gradients(model, batches, settings, device, scaler) * schedule["processes"]
            if step >= warmup_steps:  # 3: clip the gradient norm once the warmup is over
                scaler.unscale_(optimizer)  # clip the true gradients, not fp16's scaled ones
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=settings.clip_norm)
            scaler.step(optimizer)
            scaler.update()
            progress.update()
            if main and step % settings.eval_freq == 0:
                train_loss, val_loss = evaluate_model(plain_model, train_loader, val_loader, device,
                                                      settings.eval_iter, settings.precision)
                record(history, step=step, epoch=epoch + (step_in_epoch + 1) / steps_per_epoch,
                       tokens_seen=tokens_seen, train_loss=train_loss, val_loss=val_loss, lr=lr)
                progress.set_postfix(train=f"{train_loss:.3f}", val=f"{val_loss:.3f}")
                if val_loss < best_val_loss and settings.best_checkpoint_path is not None:
                    # Weights only (no optimizer state): this file is for using the model, not for resuming.
                    save_checkpoint(settings.best_checkpoint_path, plain_model, step=step, val_loss=val_loss)
                best_val_loss = min(best_val_loss, val_loss)
        if main:
            samples.append((epoch, generate_sample(plain_model, tokenizer, device, settings.start_context)))
        if settings.checkpoint_path is not None:  # section 9; after the sample: the saved random state is the next epoch's
            save_for_resuming(settings.checkpoint_path, plain_model, optimizer, scaler, schedule, step=step,
                              epoch=epoch, tokens_seen=tokens_seen, history=history, best_val_loss=best_val_loss)
    progress.close()
    if main:
        print_samples(samples)
    return history


# 02_pretraining.ipynb, cell 88 (section "What a step costs: FLOP/s and memory")
def wait_for(device):
    """Wait for the device to finish what it was given (GPUs run asynchronously), so that a timer sees it."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def fastest_seconds(function, device, repeats=10):
    """The shortest wall time of `repeats` calls of function(), after one call to warm up, each call waited
    for. The fastest, not the median: a limit is what the hardware can reach, and a busy moment only ever
    makes a call slower."""
    function()
    wait_for(device)
    fastest = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        wait_for(device)
        fastest = min(fastest, time.perf_counter() - start)
    return fastest


def matmul_flops_per_second(dtype, device, size=2048, repeats=10):
    """The machine's rate for one size x size matrix product in dtype on device: 2 x size**3 FLOPs over
    fastest_seconds."""
    a, b = (torch.randn(size, size, device=device).to(dtype) for _ in range(2))
    return 2 * size**3 / fastest_seconds(lambda: a @ b, device, repeats)


# 02_pretraining.ipynb, cell 93 (section "What a step costs: FLOP/s and memory")
def training_memory(model, batch_size, n_tokens):
    """Bytes a float32 training step of a GPTModel holds, by part: the weights (4 bytes a parameter), the
    gradients and AdamW's two moments (4 and 8 bytes a trainable parameter), and the activations backward
    needs. The activations are counted for training as this chapter does on the CPU: with dropout
    (drop_rate > 0; without it no masks are kept) and attention computed step by step (fused attention on a
    GPU keeps less), at batches of 2 or more (at batch 1 a view kept for backward holds on to all of the
    queries, keys and values)."""
    cfg = model.cfg
    n_parameters = sum(parameter.numel() for parameter in model.parameters())
    n_trainable = sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
    d, h = cfg.emb_dim, cfg.n_heads
    values_per_token = cfg.n_layers * (18 * d + 3 * h * n_tokens) + 3 * d + cfg.vocab_size
    return {"weights": 4 * n_parameters, "gradients": 4 * n_trainable, "AdamW moments": 8 * n_trainable,
            "activations": 4 * batch_size * n_tokens * values_per_token}


# 02_pretraining.ipynb, cell 105 (section "Top-k and top-p sampling")
def top_k_filter(logits, top_k):
    """Set all but the `top_k` largest logits (along the last axis) to -inf."""
    kth_largest = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth_largest, float("-inf"))


def top_p_filter(probabilities, top_p):
    """Keep the smallest set of most likely tokens whose probabilities reach `top_p`; renormalise."""
    sorted_probabilities, order = probabilities.sort(dim=-1, descending=True)
    # A token is kept if the tokens ranked above it do not yet reach top_p (so the first one always is).
    keep_sorted = sorted_probabilities.cumsum(dim=-1) - sorted_probabilities < top_p
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)  # back to vocabulary order
    kept = probabilities * keep
    return kept / kept.sum(dim=-1, keepdim=True)


# 02_pretraining.ipynb, cell 108 (section "A penalty for repeating")
def penalize_repetition(scores, token_ids, penalty):
    """Make the tokens already in each row of token_ids (batch, n_tokens) less likely in scores (batch, vocab):
    divide their scores by `penalty` where positive, multiply where negative (CTRL's repetition penalty)."""
    seen = scores.gather(1, token_ids)
    seen = torch.where(seen < 0, seen * penalty, seen / penalty)
    return scores.scatter(1, token_ids, seen)


# 02_pretraining.ipynb, cell 112 (section "8. A key/value cache for fast generation")
def cached_attention(attn, x, layer_cache):
    """CausalSelfAttention `attn` on new tokens x, attending also to the cached (keys, values) of earlier ones."""
    batch, n_new, emb_dim = x.shape
    queries, keys, values = map(attn.split_heads, attn.qkv(x).split(emb_dim, dim=-1))
    if layer_cache is not None:
        keys = torch.cat([layer_cache[0], keys], dim=2)  # dim 2: the token axis of (batch, heads, tokens, head_dim)
        values = torch.cat([layer_cache[1], values], dim=2)
    n_past = keys.shape[2] - n_new
    # New token i sits at position n_past + i and may attend to positions 0 .. n_past + i.
    # A single new token may attend to everything, so it needs no mask.
    mask = None if n_new == 1 else torch.ones(n_new, keys.shape[2], dtype=torch.bool, device=x.device).tril(n_past)
    context = F.scaled_dot_product_attention(queries, keys, values, attn_mask=mask)
    return attn.out_proj(context.transpose(1, 2).reshape(batch, n_new, emb_dim)), (keys, values)


def forward_with_cache(model, token_ids, cache=None):
    """Logits for `token_ids`, which follow the tokens in `cache` (None: nothing before), and the extended cache.

    cache: one (keys, values) pair per block, as returned by the previous call.
    """
    n_past = 0 if cache is None else cache[0][0].shape[2]
    if n_past + token_ids.shape[1] > model.cfg.context_length:
        raise ValueError(f"{n_past} cached + {token_ids.shape[1]} new tokens exceed the context length "
                         f"({model.cfg.context_length}); start a new cache from the last tokens")
    positions = torch.arange(n_past, n_past + token_ids.shape[1], device=token_ids.device)
    x = model.drop_emb(model.tok_emb(token_ids) + model.pos_emb(positions))
    new_cache = []
    for block, layer_cache in zip(model.blocks, cache or [None] * len(model.blocks)):
        attended, layer_cache = cached_attention(block.attn, block.norm1(x), layer_cache)
        x = x + block.drop_resid(attended)
        x = x + block.drop_resid(block.ff(block.norm2(x)))
        new_cache.append(layer_cache)
    return model.out_head(model.final_norm(x)), new_cache


# 02_pretraining.ipynb, cell 116 (section "One `generate` for everything")
def sample_next_token(logits, temperature=0.0, top_k=None, top_p=None, generator=None):
    """Pick the next token from (batch, vocab) logits: greedy if temperature == 0, else sample."""
    # Below the smallest normal number of the logits' dtype (1.2e-38 in float32) a temperature can round to
    # 0 (1e-46 does), and dividing by it gives NaN. Sampling at it would be greedy anyway: every token but
    # the most likely has probability 0 there.
    if temperature < torch.finfo(logits.dtype).tiny:
        return logits.argmax(dim=-1, keepdim=True)
    # Subtract the largest logit first (softmax does too, so the probabilities are the same): it becomes 0 and
    # the others negative, so a tiny temperature sends them to -inf (probability 0). Dividing the logits
    # themselves by 1e-39 overflows to inf, and a softmax of inf is NaN.
    logits = (logits - logits.max(dim=-1, keepdim=True).values) / temperature
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    probabilities = torch.softmax(logits, dim=-1)
    if top_p is not None and top_p < 1.0:
        probabilities = top_p_filter(probabilities, top_p)
    return torch.multinomial(probabilities, num_samples=1, generator=generator)


def check_prompt(token_ids, vocab_size):
    """A ValueError unless token_ids is a (batch, n_tokens) tensor of at least one id from the vocabulary."""
    if token_ids.dim() != 2:
        raise ValueError(f"the prompt must be a (batch, n_tokens) tensor of token ids, got shape "
                         f"{tuple(token_ids.shape)}; for a single prompt, add the batch axis: token_ids.unsqueeze(0)")
    if token_ids.shape[1] == 0:
        raise ValueError("the prompt is empty: give at least one token")
    outside = token_ids[(token_ids < 0) | (token_ids >= vocab_size)]
    if outside.numel() > 0:
        raise ValueError(f"the prompt holds token id {outside[0].item()}, outside the vocabulary (0 to {vocab_size - 1})")


def check_decoding_options(vocab_size, temperature, top_k, top_p, eos_id):
    """A ValueError naming the first option outside what sample_next_token and an end token allow."""
    if eos_id is not None and not 0 <= eos_id < vocab_size:
        raise ValueError(f"eos_id must be a token id, from 0 to {vocab_size - 1} (or None: no end token), got {eos_id}")
    if not temperature >= 0:  # written so that NaN fails too
        raise ValueError(f"temperature must be >= 0 (0 means greedy), got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be at least 1 (or None for no top-k filter), got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1] (or None for no top-p filter), got {top_p}")


@torch.inference_mode()
def generate(model, token_ids, max_new_tokens, context_length=None, temperature=0.0, top_k=None, top_p=None,
             eos_id=None, use_cache=True, seed=None, repetition_penalty=1.0):
    """Extend `token_ids` (batch, n_tokens) by up to `max_new_tokens` tokens."""
    vocab_size = model.cfg.vocab_size
    check_prompt(token_ids, vocab_size)
    check_decoding_options(vocab_size, temperature, top_k, top_p, eos_id)
    if not repetition_penalty > 0:  # written so that NaN fails too
        raise ValueError(f"repetition_penalty must be > 0 (1 changes nothing), got {repetition_penalty}")
    if context_length is not None and context_length < 1:
        raise ValueError(f"context_length must be at least 1 (or None for the model's), got {context_length}")
    context_length = min(context_length or model.cfg.context_length, model.cfg.context_length)
    generator = None if seed is None else torch.Generator(device=token_ids.device).manual_seed(seed)
    finished = torch.zeros(token_ids.shape[0], dtype=torch.bool, device=token_ids.device)
    cache = None
    for _ in range(max_new_tokens):
        if not use_cache:
            logits = model(token_ids[:, -context_length:])
        elif cache is None or token_ids.shape[1] > context_length:  # prefill, or the window slid
            logits, cache = forward_with_cache(model, token_ids[:, -context_length:])
        else:
            logits, cache = forward_with_cache(model, token_ids[:, -1:], cache)
        next_logits = logits[:, -1]
        if repetition_penalty != 1.0:  # (section 7) on the raw logits, before temperature and the filters
            next_logits = penalize_repetition(next_logits, token_ids, repetition_penalty)
        next_token = sample_next_token(next_logits, temperature, top_k, top_p, generator)
        if eos_id is not None:
            next_token = next_token.masked_fill(finished.unsqueeze(1), eos_id)
            finished |= next_token.squeeze(1) == eos_id
        token_ids = torch.cat([token_ids, next_token], dim=1)
        if eos_id is not None and finished.all():
            break
    return token_ids


# 02_pretraining.ipynb, cell 127 (section "Beam search")
@torch.inference_mode()
def beam_search(model, token_ids, max_new_tokens, num_beams=4, length_penalty=1.0, early_stopping=False,
                eos_id=None, repetition_penalty=1.0):
    """The best continuation of one prompt (1, n_tokens) that beam search finds: (1, n_tokens + its new tokens)."""
    vocab_size, context_length = model.cfg.vocab_size, model.cfg.context_length  # (the head's outputs: vocab_size)
    check_prompt(token_ids, vocab_size)
    check_decoding_options(vocab_size, 0.0, None, None, eos_id)
    if token_ids.shape[0] != 1:
        raise ValueError(f"beam_search continues one prompt, shape (1, n_tokens); got {token_ids.shape[0]} rows")
    if num_beams < 2 or early_stopping not in (True, False, "never") or not repetition_penalty > 0:
        raise ValueError(f"need num_beams >= 2 (one beam is greedy decoding: generate), early_stopping True, False "
                         f"or 'never', repetition_penalty > 0; got {num_beams}, {early_stopping!r}, {repetition_penalty}")
    beams = token_ids  # the running beams, (n_beams, n_tokens): at first the prompt alone
    beam_scores = torch.zeros(1, device=token_ids.device)  # the sum of each beam's log-probabilities (float32)
    finished = []  # the best num_beams finished texts so far, as (score, token ids), best first
    for step in range(max_new_tokens):
        n_new = step + 1  # the new tokens of a text extended now
        log_probs = torch.log_softmax(model(beams[:, -context_length:])[:, -1].float(), dim=-1)
        if repetition_penalty != 1.0:
            log_probs = penalize_repetition(log_probs, beams, repetition_penalty)
        totals = (beam_scores[:, None] + log_probs).flatten()  # every beam extended by every token
        best_totals, best_indices = totals.topk(min(2 * num_beams, totals.numel()))
        last_step = n_new == max_new_tokens
        next_beams, next_scores = [], []
        for rank, (total, index) in enumerate(zip(best_totals, best_indices.tolist())):
            beam, token = divmod(index, vocab_size)
            text = torch.cat([beams[beam], token_ids.new_tensor([token])])
            if last_step or token == eos_id:  # finished: never extended again
                if rank < num_beams:  # only the best num_beams extensions may finish
                    finished.append((total / n_new ** length_penalty, text))
            elif len(next_beams) < num_beams:
                next_beams.append(text)
                next_scores.append(total)
        finished = sorted(finished, key=lambda scored: scored[0].item(), reverse=True)[:num_beams]
        if last_step:
            break
        beams, beam_scores = torch.stack(next_beams), torch.stack(next_scores)
        if len(finished) == num_beams:  # may a running beam still beat the worst finished text?
            if early_stopping is True:
                break
            longest = max_new_tokens if early_stopping == "never" and length_penalty > 0 else n_new
            if beam_scores[0] / longest ** length_penalty <= finished[-1][0]:
                break
    return finished[0][1].unsqueeze(0) if finished else token_ids


# 02_pretraining.ipynb, cell 132 (section "Many prompts at once, and a cache written in place")
class KVCache:
    """Keys and values of every block for a batch of sequences, allocated once for `max_tokens` tokens and
    written in place: each step fills the next free slots. `is_token` is False where a row is padded."""

    def __init__(self, model, batch, max_tokens, dtype, device):
        cfg = model.cfg
        shape = (cfg.n_layers, batch, cfg.n_heads, max_tokens, cfg.emb_dim // cfg.n_heads)
        self.keys = torch.empty(shape, dtype=dtype, device=device)
        self.values = torch.empty(shape, dtype=dtype, device=device)
        self.is_token = torch.zeros(batch, max_tokens, dtype=torch.bool, device=device)
        self.length = 0  # slots filled so far


def padding_and_positions(is_token, start):
    """For the slots from `start` on of is_token (batch, slots): each one's position (its row's real tokens
    before it) and which slots it may attend to, (batch, new slots, slots)."""
    positions = (is_token.cumsum(dim=1) - 1).clamp(min=0)[:, start:]
    query_slots = torch.arange(start, is_token.shape[1], device=is_token.device).unsqueeze(1)
    key_slots = torch.arange(is_token.shape[1], device=is_token.device)
    # The real tokens up to its own slot; a padding slot attends to itself alone, so that its row of
    # attention weights is not empty (a softmax over nothing but -inf is NaN, and NaN would spread).
    allowed = (key_slots <= query_slots) & is_token.unsqueeze(1) | (key_slots == query_slots)
    return positions, allowed


# 02_pretraining.ipynb, cell 136 (section "Many prompts at once, and a cache written in place")
def forward_into_cache(model, token_ids, is_token, cache):
    """Logits at the last slot of token_ids (batch, n_new), which follow the tokens in `cache`; writes their
    keys and values into it. is_token (batch, n_new): False where a row is padded. For inference only."""
    start, end = cache.length, cache.length + token_ids.shape[1]
    cache.is_token[:, start:end] = is_token
    positions, allowed = padding_and_positions(cache.is_token[:, :end], start)
    # (batch, 1: the same for every head, n_new, end); where every slot may attend to every earlier one (one
    # new token, no padding), no mask at all: scaled_dot_product_attention then takes its fastest path
    mask = None if allowed.all() else allowed.unsqueeze(1)
    x = model.tok_emb(token_ids) + model.pos_emb(positions)
    for layer, block in enumerate(model.blocks):
        attn = block.attn
        queries, keys, values = map(attn.split_heads, attn.qkv(block.norm1(x)).split(model.cfg.emb_dim, dim=-1))
        cache.keys[layer, :, :, start:end] = keys  # in place: the earlier slots are not copied
        cache.values[layer, :, :, start:end] = values
        context = F.scaled_dot_product_attention(queries, cache.keys[layer, :, :, :end],
                                                 cache.values[layer, :, :, :end], attn_mask=mask)
        x = x + attn.out_proj(context.transpose(1, 2).reshape(x.shape))
        x = x + block.ff(block.norm2(x))
    cache.length = end
    return model.out_head(model.final_norm(x[:, -1]))  # the last slot only: (batch, vocab_size)


# 02_pretraining.ipynb, cell 138 (section "Many prompts at once, and a cache written in place")
@torch.inference_mode()
def generate_batch(model, prompts, max_new_tokens, temperature=0.0, top_k=None, top_p=None, eos_id=None,
                   seed=None):
    """generate() for a list of prompts of any lengths at once (1-D tensors or lists of token ids). Returns one
    1-D tensor per prompt: the prompt and its new tokens, ending at its first eos_id (kept). For inference:
    no dropout, whatever the model's mode."""
    vocab_size, device = model.cfg.vocab_size, model.out_head.weight.device
    if len(prompts) == 0 or max_new_tokens < 0:
        raise ValueError(f"give at least one prompt and max_new_tokens >= 0 (got {len(prompts)} prompts, "
                         f"max_new_tokens {max_new_tokens})")
    prompts = [torch.as_tensor(prompt, device=device) for prompt in prompts]
    for index, prompt in enumerate(prompts):
        if prompt.dim() != 1 or (prompt.is_floating_point() and prompt.numel() > 0):  # ([] is a float tensor)
            raise ValueError(f"prompt {index} must be a 1-D sequence of token ids, got a {prompt.dtype} tensor of "
                             f"shape {tuple(prompt.shape)}")
        check_prompt(prompt.unsqueeze(0), vocab_size)
    prompts = [prompt.long() for prompt in prompts]
    check_decoding_options(vocab_size, temperature, top_k, top_p, eos_id)
    longest = max(len(prompt) for prompt in prompts)
    # The last new token is never fed back, so the cache holds at most longest + max_new_tokens - 1 tokens.
    slots = max(longest, longest + max_new_tokens - 1)
    if slots > model.cfg.context_length:
        raise ValueError(f"the longest prompt ({longest} tokens) and max_new_tokens ({max_new_tokens}) exceed the "
                         f"context length ({model.cfg.context_length}); generate() slides the window instead")
    token_ids = torch.zeros(len(prompts), longest, dtype=torch.long, device=device)  # padding: any valid id
    is_token = torch.zeros(len(prompts), longest, dtype=torch.bool, device=device)
    for row, prompt in enumerate(prompts):  # on the left: every prompt ends in the last column
        token_ids[row, longest - len(prompt):], is_token[row, longest - len(prompt):] = prompt, True
    weights_dtype = model.out_head.weight.dtype
    cache = KVCache(model, len(prompts), slots, weights_dtype, device)
    generator = None if seed is None else torch.Generator(device=device).manual_seed(seed)
    finished = torch.zeros(len(prompts), dtype=torch.bool, device=device)
    new_tokens = [token_ids[:, :0]]
    # With bf16 weights (bf16_weights, below), autocast hands the matrix products bf16 inputs.
    with autocast(device, "bf16" if weights_dtype == torch.bfloat16 else "fp32"):
        logits = forward_into_cache(model, token_ids, is_token, cache)
        for step in range(max_new_tokens):
            # bf16 logits are sampled in float32; float64 ones stay float64 (rounding could make a tie)
            next_token = sample_next_token(logits.to(torch.promote_types(logits.dtype, torch.float32)),
                                           temperature, top_k, top_p, generator)
            if eos_id is not None:
                next_token = next_token.masked_fill(finished.unsqueeze(1), eos_id)
                finished |= next_token.squeeze(1) == eos_id
            new_tokens.append(next_token)
            if step == max_new_tokens - 1 or (eos_id is not None and finished.all()):
                break
            logits = forward_into_cache(model, next_token, torch.ones_like(next_token, dtype=torch.bool), cache)
    outputs = []
    for prompt, row in zip(prompts, torch.cat(new_tokens, dim=1)):
        ends = (row == eos_id).nonzero().flatten() if eos_id is not None else row[:0]
        outputs.append(torch.cat([prompt, row[: ends[0] + 1] if len(ends) else row]))
    return outputs


# 02_pretraining.ipynb, cell 146 (section "bf16 weights, where they read faster")
def bf16_weights(model):
    """A copy of `model` whose linear layers hold bf16 weights and biases, for generate_batch."""
    # copy.deepcopy takes an object's copy from `memo` where it holds one: the linear layers' float32 weights
    # are never copied, only their bf16 versions made (a tied embedding gets the output head's).
    bf16_versions = {id(parameter): nn.Parameter(parameter.detach().to(torch.bfloat16, copy=True),
                                                  requires_grad=False)
                     for module in model.modules() if isinstance(module, nn.Linear)
                     for parameter in module.parameters(recurse=False)}
    return copy.deepcopy(model, memo=bf16_versions)


# 02_pretraining.ipynb, cell 152 (section "9. Checkpoints: load for inference, resume training")
def load_checkpoint(path, device="cpu"):
    """Read a checkpoint written by save_checkpoint, safely (tensors and plain values only), and check it
    (check_checkpoint); a ValueError naming the file if it holds code, is damaged, or is no such checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}: train first, or give the right path")
    advice = "restore it from a copy, or train and save it again"
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:  # weights_only met something that is neither a tensor nor a plain value
        names_code = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)  # PyTorch 2.5 on
        try:
            code = names_code(path) if names_code else ["objects PyTorch before 2.5 does not name"]  # none created
        except ValueError:  # not a file of torch.save at all
            code = []
        if code:
            raise ValueError(f"{path} holds code (objects other than tensors and plain values: {', '.join(code)}) "
                             "and was not loaded: save_checkpoint writes none; give a checkpoint that it wrote") from None
        raise ValueError(f"{path} is damaged or not a checkpoint (not a file of torch.save); {advice}") from None
    except Exception as error:  # empty, truncated, or not a checkpoint at all
        reason = " ".join(str(error).split())  # on one line
        raise ValueError(f"{path} is damaged or not a checkpoint ({type(error).__name__}: {reason}); {advice}") from error
    return check_checkpoint(checkpoint, path)


def check_checkpoint(checkpoint, path):
    """`checkpoint`, as torch.load read it from `path`, without its content_sha256, if save_checkpoint wrote
    it and its contents are the ones saved; otherwise a ValueError naming `path`."""
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path} is not a checkpoint of save_checkpoint: it holds a {type(checkpoint).__name__}, "
                         "not a dict with the model's config and weights; give a file that save_checkpoint wrote")
    for key in ("config", "model"):
        if key not in checkpoint:
            raise ValueError(f"{path} is not a checkpoint of save_checkpoint: it has no {key!r}; give a file that "
                             "save_checkpoint wrote")
    config_from_checkpoint(checkpoint, source=path)  # a config that builds a GPTModel
    recorded = checkpoint.pop("content_sha256", None)
    if recorded is None:  # written before checkpoints carried their own SHA-256: the file's, beside it, decides
        beside = checksum_path(path)
        if beside.is_file() and beside.read_text(encoding="utf-8").split()[:1] == [sha256_of(path)]:
            return checkpoint
        raise ValueError(f"{path} records no content_sha256, and no {beside.name} beside it matches it, so its "
                         "contents cannot be checked: give a file that save_checkpoint wrote, or train and save it again")
    if recorded != content_sha256(checkpoint):
        raise ValueError(f"{path} is damaged: its contents are not the ones whose SHA-256 was stored in it when it "
                         "was saved; restore it from a copy, or train and save it again")
    return checkpoint


def config_from_checkpoint(checkpoint, source="the checkpoint"):
    """The GPTConfig that `checkpoint` records; a ValueError naming `source` and the key if one is unknown or
    missing (a missing one would otherwise take GPTConfig's default)."""
    config, defaults = checkpoint["config"], {field.name: field.default for field in fields(GPTConfig)}
    if not isinstance(config, dict):
        raise ValueError(f"{source}: its config is a {type(config).__name__}, not a dict of GPTConfig's fields")
    problems = [f"unknown key {key!r}" for key in config if key not in defaults]
    problems += [f"missing key {name!r}" for name in defaults if name not in config]
    if problems:
        raise ValueError(f"{source}: its config is not a GPTConfig ({', '.join(problems)}); give a checkpoint "
                         "that save_checkpoint wrote for a GPTModel")

    def fits(value, default):  # a bool for a bool, a whole number for an int, any number for a float
        if isinstance(default, bool) or isinstance(value, bool):
            return isinstance(default, bool) and isinstance(value, bool)
        return isinstance(value, int) if isinstance(default, int) else isinstance(value, (int, float))

    wrong = [f"{name}={config[name]!r}" for name, default in defaults.items() if not fits(config[name], default)]
    if wrong:
        raise ValueError(f"{source}: its config has values of the wrong type ({', '.join(wrong)}); give a "
                         "checkpoint that save_checkpoint wrote for a GPTModel")
    try:
        return GPTConfig(**config)
    except (TypeError, ValueError) as error:  # a value GPTConfig refuses
        raise ValueError(f"{source}: its config is not a valid GPTConfig ({error})") from None


def model_from_checkpoint(checkpoint, device="cpu"):
    """A GPTModel rebuilt from a checkpoint's config, with its weights."""
    model = GPTModel(config_from_checkpoint(checkpoint)).to(device)
    model.load_state_dict(checkpoint["model"])
    return model


# 02_pretraining.ipynb, cell 156 (section "9. Checkpoints: load for inference, resume training")
def check_resumable(checkpoint, model, optimizer, schedule):
    """Raise ValueError, naming what differs, unless train_model_improved can continue `checkpoint` with this
    model (the GPTModel), optimizer and schedule (the dict TrainingSettings.schedule gives); change nothing."""
    if checkpoint.get("optimizer") is None:
        raise ValueError("the checkpoint is a weights-only checkpoint (saved without the optimizer's state, like "
                         "best.pt): it is for using the model; resume from the checkpoint saved at the end of every "
                         "epoch (checkpoint_path, e.g. last.pt)")

    def differences(saved, now):
        return [f"{name} {saved.get(name)!r} in the checkpoint, {value!r} now"
                for name, value in now.items() if saved.get(name) != value]

    changed = differences(checkpoint["config"], asdict(model.cfg))
    if changed:
        raise ValueError(f"the checkpoint is of another model configuration ({'; '.join(changed)}): build the "
                         "model from its config (model_from_checkpoint), or start afresh")
    if "schedule" not in checkpoint:
        raise ValueError("the checkpoint was written before checkpoints recorded their schedule, so resuming cannot "
                         "check that it continues the same one: load its weights for inference, or start afresh")
    changed = differences(checkpoint["schedule"], schedule)
    if changed:
        raise ValueError(f"the checkpoint's run has another schedule ({'; '.join(changed)}): resume with the "
                         "settings it started with, or start afresh")
    own_weights, saved_weights = model.state_dict(), checkpoint["model"]
    if saved_weights.keys() != own_weights.keys() or any(
            saved_weights[name].shape != tensor.shape for name, tensor in own_weights.items()):
        raise ValueError("the checkpoint's weights do not fit this model's (another output head?): resume a "
                         "GPTModel's checkpoint into a GPTModel of its config")
    saved_groups = [len(group["params"]) for group in checkpoint["optimizer"]["param_groups"]]
    own_groups = [len(group["params"]) for group in optimizer.param_groups]
    if saved_groups != own_groups:
        raise ValueError(f"the checkpoint's optimizer has parameter groups of {saved_groups} tensors, this one "
                         f"{own_groups}: build the optimizer as the run did (make_optimizer makes two, decayed and not; "
                         "torch.optim.AdamW(model.parameters()) makes one)")


# 02_pretraining.ipynb, cell 158 (section "9. Checkpoints: load for inference, resume training")
def process_rng_states():
    """In a distributed run, every process's random state, by rank; None in a single process. Every
    process must call it (it gathers from all of them)."""
    if not is_distributed():
        return None
    own = {"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None}
    states = [None] * dist.get_world_size()
    dist.all_gather_object(states, own)
    return states


def restore_rng_state(checkpoint):
    """Put the random number generators back where save_checkpoint found them; in a distributed run
    (section 10), each process's own, from the checkpoint's process_rng_states."""
    per_process = checkpoint.get("process_rng_states")
    if per_process is not None and is_distributed():
        if len(per_process) != dist.get_world_size():
            raise ValueError(f"the checkpoint was written by {len(per_process)} processes, and {dist.get_world_size()} "
                             f"are resuming it: resume with {len(per_process)} processes in all")
        own = per_process[dist.get_rank()]
        torch.set_rng_state(own["cpu"].cpu())
        if own["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state(own["cuda"].cpu())
        return
    torch.set_rng_state(checkpoint["rng_state"].cpu())
    if checkpoint.get("cuda_rng_state") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([state.cpu() for state in checkpoint["cuda_rng_state"]])


def save_for_resuming(path, model, optimizer, scaler, schedule, **where_training_stands):
    """At the end of an epoch, all that resuming needs, in one checkpoint at `path`: weights, optimizer, loss
    scaler, schedule, where_training_stands (step, epoch, tokens_seen, history, best_val_loss) and every
    process's random state. Every process calls it; the main one writes."""
    rng_states = process_rng_states()  # every process takes part
    if is_main_process():
        save_checkpoint(path, model, optimizer, schedule=schedule, scaler=scaler.state_dict(),
                        process_rng_states=rng_states, **where_training_stands)


def resume_training(checkpoint, model, optimizer, scaler, schedule):
    """Check that `checkpoint` (from save_for_resuming) fits this model, optimizer and schedule, changing
    nothing if not (check_resumable); then restore weights, optimizer, scaler and random state, and return
    where training stood: history, tokens_seen, step, best_val_loss and the epoch to continue with."""
    check_resumable(checkpoint, model, optimizer, schedule)  # before anything changes
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    if checkpoint["scaler"]:  # empty unless the run trained in fp16; without it, fp16 starts a new scaler
        scaler.load_state_dict(checkpoint["scaler"])
    restore_rng_state(checkpoint)  # the next epoch's batch order and dropout masks, as if never stopped
    return (checkpoint["history"], checkpoint["tokens_seen"], checkpoint["step"], checkpoint["best_val_loss"],
            checkpoint["epoch"] + 1)


# 02_pretraining.ipynb, cell 165 (section "10. Several GPUs: distributed data parallel")
def setup_distributed(use_cuda=None):
    """Join the process group that torchrun describes in the environment; return this process's device:
    its own GPU (NCCL), or the CPU (gloo). use_cuda: None means "where PyTorch sees a GPU". Outside
    torchrun, do nothing and return None."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    if torch.cuda.is_available() if use_cuda is None else use_cuda:  # one GPU per process, by its rank here
        local_rank = int(os.environ["LOCAL_RANK"])
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"process {local_rank} of this machine has no GPU of its own ({torch.cuda.device_count()} "
                             "here): start at most that many with --nproc_per_node, or train on the CPU")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        dist.init_process_group("nccl")
    else:
        device = torch.device("cpu")
        dist.init_process_group("gloo")
    return device


def distributed_loader(dataset, batch_size, seed=0):
    """This process's share of `dataset`, shuffled each epoch from `seed` (train_model_improved calls
    set_epoch), in batches of batch_size; windows that do not fill a batch in every process are left out."""
    sampler = DistributedSampler(dataset, shuffle=True, seed=seed, drop_last=True)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=True)


# 02_pretraining.ipynb, cell 168 (section "Appendix: a cheaper dropout draw on the CPU")
def fast_dropout(x, p, training=True):
    """Dropout: zero each entry with probability p, scale the others by 1/(1 - p). Cheaper on the CPU."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, training=True)
    # random_() fills an int16 tensor with integers drawn uniformly from 0 .. 32767.
    keep = torch.empty(x.shape, dtype=torch.int16).random_() >= round(p * 32768)
    return x * keep / (1.0 - p)


class FastDropout(nn.Dropout):
    """nn.Dropout computed by fast_dropout."""

    def forward(self, x):
        return fast_dropout(x, self.p, self.training)


def causal_attention_with_dropout(queries, keys, values, p):
    """scaled_dot_product_attention(..., dropout_p=p, is_causal=True), written out, with fast_dropout."""
    n_tokens = queries.shape[-2]
    scores = queries @ keys.transpose(-2, -1) / math.sqrt(queries.shape[-1])
    causal_mask = torch.ones(n_tokens, n_tokens, dtype=torch.bool, device=queries.device).triu(1)
    weights = torch.softmax(scores.masked_fill(causal_mask, float("-inf")), dim=-1)
    return fast_dropout(weights, p) @ values


# 02_pretraining.ipynb, cell 174 (section "Appendix: a cheaper dropout draw on the CPU")
class FastCausalSelfAttention(CausalSelfAttention):
    """CausalSelfAttention whose attention dropout, when training on a CPU, uses fast_dropout."""

    def forward(self, x):
        if not (self.training and self.drop_rate > 0 and x.device.type == "cpu"):
            return super().forward(x)  # PyTorch's own kernels: nothing to gain
        batch, n_tokens, emb_dim = x.shape
        queries, keys, values = map(self.split_heads, self.qkv(x).split(emb_dim, dim=-1))
        context = causal_attention_with_dropout(queries, keys, values, self.drop_rate)
        return self.out_proj(context.transpose(1, 2).reshape(batch, n_tokens, emb_dim))


def with_fast_dropout(model):
    """Switch a model's dropout to the cheaper forms, in place, and return the model.

    Every nn.Dropout becomes a FastDropout and every CausalSelfAttention a FastCausalSelfAttention. The
    fast forms only replace `forward`, so a module can change its class and keep its weights (and an
    optimizer built before the switch still holds them).
    """
    fast_forms = {nn.Dropout: FastDropout, CausalSelfAttention: FastCausalSelfAttention}
    for module in model.modules():
        if type(module) in fast_forms:
            module.__class__ = fast_forms[type(module)]
    return model


# 02_pretraining.ipynb, cell 179 (section "Appendix: keeping freed memory for reuse (Linux)")
def reuse_freed_memory(keep_bytes=1 << 30):
    """Make glibc's malloc keep freed memory for reuse instead of returning it to the system (Linux).

    Large blocks come from malloc's own heap (M_MMAP_MAX = 0) rather than fresh pages from the operating
    system, and freed memory stays there up to keep_bytes (M_TRIM_THRESHOLD), so a training step reuses
    what the previous one freed. For the rest of the process; results are unchanged. Returns True where
    applied, False where the C library is not glibc (macOS, Windows, musl-based Linux): nothing changes there.
    """
    if not 0 <= keep_bytes < 2**31:  # mallopt takes a C int: a larger number would wrap around
        raise ValueError(f"keep_bytes must be from 0 to 2**31 - 1, got {keep_bytes}")
    try:
        os.confstr("CS_GNU_LIBC_VERSION")  # only glibc answers this
    except (AttributeError, ValueError, OSError):
        return False
    mallopt = ctypes.CDLL(None).mallopt  # the C library this process already runs with
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's <malloc.h>
    return mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, keep_bytes) == 1
