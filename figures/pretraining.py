"""The figures of 02_pretraining.ipynb: one training step; the training and validation loss of the recorded
constant-rate run, where it starts memorising; the warmup-and-cosine schedule with the full profile's numbers;
gradient accumulation; six ways to pick the next token from one distribution; a generation step with a
key/value cache; and what the checkpoints of train_model_improved hold.

Their numbers come from 02 itself: its settings as the full profile sets them (notebook_value reads the
notebook), its exported code (learning_rate_at, TrainingSettings, train_model_improved, save_checkpoint) and the
run it records in recorded_runs/02_pretraining_full.json."""


import contextlib
import io
import json
import math
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Rectangle

from gpt2_from_scratch.architecture import GPTConfig, GPTModel, create_dataloader, load_gpt2_tokenizer
from gpt2_from_scratch.pretraining import (TrainingSettings, learning_rate_at, load_checkpoint, make_optimizer,
                                           top_k_filter, top_p_filter, train_model_improved)

from figures.drawing import COLORS, REPO_ROOT, arrow, box, canvas, grid, label, notebook_value, save, tokenizer


def fig_02_training_loop(path):
    fig, ax = canvas(22, 11)
    w, h = 6.4, 2.0
    steps = [
        (0.5, 7.4, "next batch from train_loader:\ninput_batch, target_batch", COLORS["token"]),
        (7.8, 7.4, "optimizer.zero_grad():\nclear last step's gradients", COLORS["layer"]),
        (15.1, 7.4, "loss = calc_loss_batch(input_batch,\ntarget_batch, model, device): the\nlogits "
         "model(input_batch), then their\ncross-entropy with target_batch", COLORS["target"]),
        (15.1, 2.8, "loss.backward():\na gradient in every .grad", COLORS["layer"]),
        (0.5, 2.8, "optimizer.step():\nAdamW updates the weights", COLORS["layer"]),
    ]
    for x, y, text, color in steps:
        box(ax, x, y, w, h, text, color=color, size=9)
    for (x0, y0, *_), (x1, y1, *_) in zip(steps, steps[1:] + steps[:1]):
        if y0 == y1:
            start = (x0 + w, y0 + h / 2) if x1 > x0 else (x0, y0 + h / 2)
            end = (x1, y1 + h / 2) if x1 > x0 else (x1 + w, y1 + h / 2)
        else:
            start, end = ((x0 + w / 2, y0), (x1 + w / 2, y1 + h)) if y1 < y0 else ((x0 + w / 2, y0 + h),
                                                                                   (x1 + w / 2, y1))
        arrow(ax, start, end)
    label(ax, 11.0, 10.3, "one training step (train_model_simple, section 5)", size=10.5)
    label(ax, 11.0, 6.0, "every eval_freq steps: evaluate_model, the loss on eval_iter training and\n"
          "validation batches in eval mode (no dropout, no gradients), recorded in the history", size=8.5,
          color=COLORS["muted"])
    label(ax, 11.0, 1.3, "after each epoch: generate_sample from start_context (printed when training ends)",
          size=8.5, color=COLORS["muted"])
    save(fig, path)


def fig_02_decoding(path):
    candidates = notebook_value("02_pretraining.ipynb", "candidates")
    logits = notebook_value("02_pretraining.ipynb", "next_token_logits")
    probabilities = torch.softmax(logits, dim=-1)
    panels = [
        ("the distribution: softmax of the logits", probabilities, None),
        ("greedy: always the most likely", torch.nn.functional.one_hot(logits.argmax(), len(candidates)).float(),
         None),
        ("temperature T = 0.5: sharper", torch.softmax(logits / 0.5, dim=-1), None),
        ("temperature T = 2: flatter", torch.softmax(logits / 2.0, dim=-1), None),
        ("top-k, k = 3: three most likely, renormalised", torch.softmax(top_k_filter(logits, 3), dim=-1), None),
        ("top-p, p = 0.9: smallest set reaching 0.9", top_p_filter(probabilities, 0.9), None),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.2), sharey=True)
    for axis, (title, values, _) in zip(axes.flat, panels):
        kept = values > 0
        axis.bar(range(len(candidates)), probabilities.numpy(), color=COLORS["masked"], width=0.8,
                 label="softmax of the logits")
        axis.bar(range(len(candidates)), values.numpy(), color=np.where(kept, "#3182bd", COLORS["masked"]), width=0.5,
                 label="what the token is picked from")
        for k, value in enumerate(values.tolist()):
            if value > 0:
                axis.text(k, value + 0.02, f"{value:.2f}", ha="center", va="bottom", fontsize=7.5)
        axis.set_title(title, fontsize=10)
        axis.set_xticks(range(len(candidates)), candidates, rotation=40, fontsize=8.5)
        axis.set_ylim(0, 1.1)
        axis.spines[["top", "right"]].set_visible(False)
    axes[0, 0].set_ylabel("probability")
    axes[1, 0].set_ylabel("probability")
    axes[0, 0].legend(fontsize=8, frameon=False, loc="upper right")
    fig.suptitle("One distribution over the next word after \"The painter picked up his\", six ways to pick "
                 "from it", fontsize=11)
    fig.tight_layout()
    save(fig, path)


def fig_02_kv_cache(path):
    fig, ax = canvas(25, 11.5)
    words = ["I", "␣had", "␣always", "␣thought", "␣Jack"]  # the start of 02's check sentence
    n_past = 4
    label(ax, 0.3, 10.9, "Generating with a key/value cache: one step, for one block and one head "
          "(forward_with_cache, cached_attention)", ha="left", size=10.5)
    # tokens
    for t, word in enumerate(words):
        new = t == n_past
        box(ax, 2.0 + t * 1.6, 9.0, 1.45, 0.8, word, color=COLORS["token"] if new else "white", size=8.5,
            family="monospace", lw=2.0 if new else 1.0)
    label(ax, 0.3, 9.4, "tokens", ha="left", size=9)
    label(ax, 2.0 + n_past * 1.6 + 1.8, 9.4, "← the one new token: the only model input this step", ha="left",
          size=8.5, color=COLORS["muted"])
    rows = [("keys", COLORS["key"], 7.2), ("values", COLORS["value"], 5.7)]
    for name, color, y in rows:
        label(ax, 0.3, y + 0.4, name, ha="left", size=9)
        for t in range(n_past + 1):
            new = t == n_past
            ax.add_patch(Rectangle((2.0 + t * 1.6, y), 1.45, 0.8, facecolor=color,
                                   edgecolor=COLORS["highlight"] if new else COLORS["edge"], lw=2.2 if new else 0.8,
                                   hatch=None if new else "///", alpha=1.0 if new else 0.55))
        ax.add_patch(Rectangle((1.85, y - 0.15), n_past * 1.6, 1.1, fill=False, edgecolor=COLORS["muted"], lw=1.2,
                               ls="--"))
    label(ax, 1.85, 4.95, "layer_cache = (keys, values) of the n_past = 4 earlier tokens: read, not recomputed;",
          size=8.5, color=COLORS["muted"], ha="left")
    label(ax, 1.85, 4.5, "each (batch, n_heads, n_past, head_dim), one pair per block", size=8.5,
          color=COLORS["muted"], ha="left")
    # the new query and its attention
    qx = 2.0 + n_past * 1.6
    box(ax, qx, 3.0, 1.45, 0.8, "query", color=COLORS["query"], size=8.5, rounded=False, lw=2.2,
        edge=COLORS["highlight"])
    label(ax, 0.3, 3.4, "new query", ha="left", size=9)
    weights = torch.softmax(torch.tensor([1.5, 0.2, 0.6, 0.9, 1.2]), dim=0).numpy()
    grid(ax, 2.0, 2.0, values=weights[None, :], cmap="viridis", fmt=None, cell=1.6, cell_h=0.7)
    label(ax, 0.3, 1.65, "weights", ha="left", size=9)
    label(ax, 10.5, 1.65, "softmax(query · keys / √head_dim), then weights @ values:\nattention over n_past + 1 "
          "keys and values, the only work that grows with the text", size=8.5, ha="left", color=COLORS["muted"])
    # what is computed per step
    box(ax, 16.2, 4.7, 8.4, 4.3, "", color="white")
    label(ax, 16.5, 8.5, "computed for the new token only:", ha="left", size=9.5, weight="bold")
    label(ax, 16.5, 7.0, "• tok_emb + pos_emb at position n_past\n• norm1, qkv: its query, key and value\n"
          "• out_proj, norm2, ff (the MLP)\n• final_norm, out_head: logits for the next token", ha="left", size=9)
    label(ax, 16.5, 5.3, "attention: 1 query against n_past + 1\nkeys and values", ha="left", size=9)
    label(ax, 0.3, 0.45, "Framed in black: computed this step. Hatched: from the cache. The new key and value are "
          "appended to the cache for the next step.", ha="left", size=9.5)
    save(fig, path)


# --------------------------------------------------------------------------- the full profile's numbers

PRETRAINING_NOTEBOOK = "02_pretraining.ipynb"
RECORDED_RUNS_FILE = REPO_ROOT / "recorded_runs" / "02_pretraining_full.json"


def full_profile_schedule():
    """02's full-profile training schedule, from its own settings and code: the epochs, the optimizer steps
    per epoch (its training loader's batches: windows of the context length, BATCH_SIZE per batch, over the
    first 90% of the-verdict, 02's training text) and TrainingSettings' warmup and clipping."""
    text = (REPO_ROOT / "data" / "the-verdict.txt").read_text(encoding="utf-8")
    train_text = text[:int(0.9 * len(text))]  # as 02 splits it: the last 10% is the validation text
    context_length = notebook_value(PRETRAINING_NOTEBOOK, "model_config").context_length
    batch_size = notebook_value(PRETRAINING_NOTEBOOK, "BATCH_SIZE")
    train_loader = create_dataloader(train_text, tokenizer(), batch_size=batch_size, max_length=context_length,
                                     stride=context_length, shuffle=False, drop_last=True)
    settings = TrainingSettings(num_epochs=notebook_value(PRETRAINING_NOTEBOOK, "NUM_EPOCHS"),
                                peak_lr=notebook_value(PRETRAINING_NOTEBOOK, "PEAK_LR"),
                                eval_freq=1, eval_iter=1, start_context="")  # the last three: not the schedule's
    schedule = settings.schedule(steps_per_epoch=len(train_loader), processes=1)
    return dict(schedule, total_steps=schedule["num_epochs"] * schedule["steps_per_epoch"],
                clip_norm=settings.clip_norm, batch_size=batch_size, context_length=context_length)


def recorded_runs():
    return json.loads(RECORDED_RUNS_FILE.read_text(encoding="utf-8"))


def powers_of_ten(value):
    """4e-4 as '4·10⁻⁴' (three significant digits at most)."""
    exponent = math.floor(math.log10(abs(value)))
    mantissa = f"{value / 10 ** exponent:.3g}"
    return f"{mantissa}·10{str(exponent).translate(str.maketrans('-0123456789', '⁻⁰¹²³⁴⁵⁶⁷⁸⁹'))}"


# --------------------------------------------------------------------------- training, the schedule, checkpoints

def fig_02_lr_schedule(path):
    plan = full_profile_schedule()
    total, warmup, peak = plan["total_steps"], plan["warmup_steps"], plan["peak_lr"]
    rates = [learning_rate_at(step, total, peak, warmup) for step in range(total)]
    # learning_rate_at's defaults: where the warmup starts, and where the cosine would end (step `total`)
    initial, minimum = learning_rate_at(0, total, peak, warmup), learning_rate_at(total, total, peak, warmup)
    run = recorded_runs()["runs"]["improved, N(0,1) embeddings"]["history"]
    for step, rate in zip(run["step"], run["lr"]):
        if not math.isclose(rate, rates[step], rel_tol=1e-12):
            raise ValueError(f"the recorded improved run took learning rate {rate} at step {step}, and 02's schedule "
                             f"gives {rates[step]}: record the run again (recorded_runs/README.md)")
    fig, axis = plt.subplots(figsize=(11, 4.6))
    axis.axvspan(0, warmup, color=COLORS["position"], alpha=0.6, lw=0)
    axis.plot(range(total), [rate * 1e4 for rate in rates], color="#3182bd", lw=2.0,
              label=f"learning_rate_at(step, {total}, {peak:g}, warmup_steps={warmup}): the rate of each optimizer step")
    axis.plot(run["step"], [rate * 1e4 for rate in run["lr"]], "o", color=COLORS["residual"], ms=5,
              label="the rate the recorded improved run (recorded_runs/02_pretraining_full.json) took at each evaluation")
    axis.set_xlim(0, total)
    axis.set_ylim(0, peak * 1e4 * 1.25)
    axis.set_xticks(range(0, total + 1, plan["steps_per_epoch"]))
    axis.set_xlabel(f"optimizer step ({plan['steps_per_epoch']} per epoch: {plan['num_epochs']} epochs, {total} steps, "
                    f"batches of {plan['batch_size']} windows of {plan['context_length']} tokens)")
    axis.set_ylabel("learning rate (×10⁻⁴)")
    axis.spines[["top", "right"]].set_visible(False)
    axis.text(warmup / 2 - 1, peak * 1e4 * 0.92, f"warmup: {warmup} steps\n({warmup / total:.0%} of {total}), a\n"
              f"straight line from\n{powers_of_ten(initial)} to the peak", ha="center", va="center", fontsize=8.5)
    axis.text(warmup + 1, peak * 1e4 * 1.03, f"peak_lr = {powers_of_ten(peak)} at step {warmup}; from here on "
              f"the gradient's norm is clipped to {plan['clip_norm']:g}", ha="left", va="bottom", fontsize=8.5)
    axis.text(total - 1, peak * 1e4 * 0.45, f"half a cosine down towards min_lr = {powers_of_ten(minimum)}\n"
              f"({minimum / peak:.0%} of the peak); the last step, {total - 1}, takes {powers_of_ten(rates[-1])}", ha="right",
              va="bottom", fontsize=8.5)
    axis.legend(fontsize=8.5, frameon=False, loc="lower left", bbox_to_anchor=(0.2, 0.02))
    axis.set_title("02's warmup and cosine decay in the full profile (train_model_improved)", fontsize=10.5)
    fig.tight_layout()
    save(fig, path)


def fig_02_train_val_gap(path):
    record = recorded_runs()
    name = "simple, N(0,1) embeddings"
    run = record["runs"][name]["history"]
    tokens, train, val = run["tokens_seen"], run["train_loss"], run["val_loss"]
    best = min(range(len(val)), key=val.__getitem__)
    tokens_per_epoch = round(tokens[0] / run["epoch"][0])  # the first evaluation comes after one step
    fig, axis = plt.subplots(figsize=(11, 4.8))
    axis.axvspan(tokens[best], tokens[-1], color=COLORS["masked"], alpha=0.5, lw=0)
    axis.plot(tokens, train, "--", color="#3182bd", lw=2.0,
              label=f"training loss (evaluate_model: {notebook_value(PRETRAINING_NOTEBOOK, 'EVAL_ITER')} training "
                    "batches, in eval mode)")
    axis.plot(tokens, val, "-", color="#e6550d", lw=2.0, label="validation loss (on the held-out last 10% of the story)")
    axis.plot([tokens[best]], [val[best]], "o", color="#e6550d", ms=7)
    axis.text(tokens[best], val[best] - 0.35, f"best validation loss {val[best]:.3f}\nat step {run['step'][best]}, "
              f"{tokens[best]:,} tokens seen\n({run['epoch'][best]:.1f} epochs)", ha="center", va="top", fontsize=8.5)
    middle = (tokens[best] + tokens[-1]) / 2
    axis.text(middle, 8.6, "after the best validation loss, more training only memorises\nthe training text: "
              f"its loss keeps falling ({train[best]:.2f} → {train[-1]:.2f}),\nthe validation loss rises "
              f"({val[best]:.2f} → {val[-1]:.2f})",
              ha="center", va="center", fontsize=8.5)
    # The gap as a line with end caps, not an arrow: an arrow's head is sized in points, so in axes that
    # tight_layout places (differently in each matplotlib release) its outline in data units would vary.
    axis.plot([tokens[-1], tokens[-1]], [train[-1], val[-1]], "-", color=COLORS["muted"], lw=1.3, marker="_", ms=10)
    axis.text(tokens[-1] - 600, (train[-1] + val[-1]) / 2, f"gap at the last\nevaluation: {val[-1] - train[-1]:.2f}",
              ha="right", va="center", fontsize=8.5, color=COLORS["muted"])
    axis.set_xlim(0, tokens[-1] + 1500)
    axis.set_ylim(0, 11)
    axis.set_yticks(range(0, 11, 2))
    epoch_ends = range(0, tokens[-1] + 1, tokens_per_epoch)
    axis.set_xticks(epoch_ends, [f"{seen:,}\n({seen // tokens_per_epoch})" for seen in epoch_ends], fontsize=8.5)
    axis.set_xlabel(f"tokens seen (epochs); one epoch is {tokens_per_epoch:,} tokens, and the loop evaluates every "
                    f"{run['step'][1] - run['step'][0]} steps")
    axis.set_ylabel("loss (cross-entropy)")
    axis.spines[["top", "right"]].set_visible(False)
    axis.legend(fontsize=8.5, frameon=False, loc="lower left")
    axis.set_title(f"train_model_simple, constant learning rate, from N(0, 1) embeddings: the recorded run "
                   f"({record['machine']}, {record['date']}, {record['precision']})", fontsize=10.5)
    fig.tight_layout()
    save(fig, path)


def fig_02_gradient_accumulation(path):
    plan = full_profile_schedule()
    fig, ax = canvas(26, 14.8)
    top = 14.2
    label(ax, 0.3, top, "Gradient accumulation in train_model_improved: two batches of 2 windows, one optimizer step, "
          "the gradient of a batch of 4", ha="left", size=10.5)

    def windows(x, y, indices):  # a batch: one strip of token cells per window
        for row, index in enumerate(indices):
            grid(ax, x, y - row * 0.55, shape=(1, 8), color=COLORS["token"], cell=0.4, cell_h=0.45)
            label(ax, x + 3.4, y - row * 0.55 - 0.22, f"window {index}", size=8, ha="left", color=COLORS["muted"])

    def step_box(x, y, w, text, color=COLORS["layer"]):
        box(ax, x, y, w, 1.1, text, color=color, size=8.5)

    # left: accumulation_steps = 1, one batch of 4
    label(ax, 5.0, top - 0.9, "accumulation_steps = 1: one batch of 4", weight="bold", size=9.5)
    step_box(1.2, top - 2.4, 7.6, "optimizer.zero_grad()")
    windows(2.6, top - 2.9, range(4))
    label(ax, 5.0, top - 5.5, "input_batch (4 windows)", size=8.5)
    arrow(ax, (5.0, top - 5.8), (5.0, top - 6.5))
    step_box(1.2, top - 7.7, 7.6, "loss = calc_loss_batch(...)\nthe mean over the 4 windows", color=COLORS["target"])
    arrow(ax, (5.0, top - 7.7), (5.0, top - 8.4))
    step_box(1.2, top - 9.6, 7.6, "loss.backward(): .grad = the\ngradient of the mean over 4")
    arrow(ax, (5.0, top - 9.6), (5.0, top - 10.3))
    step_box(1.2, top - 11.5, 7.6, "clip_grad_norm_ (after the warmup),\noptimizer.step(): one step")

    # right: accumulation_steps = 2, two batches of 2
    label(ax, 18.0, top - 0.9, "accumulation_steps = 2: two batches of 2", weight="bold", size=9.5)
    step_box(11.4, top - 2.4, 13.2, "optimizer.zero_grad(): once, before the step's first batch")
    for micro_step, x in enumerate((11.4, 18.4)):
        windows(x + 1.4, top - 2.9, range(2 * micro_step, 2 * micro_step + 2))
        label(ax, x + 3.1, top - 4.2, f"micro_step {micro_step}: input_batch (2 windows)", size=8.5)
        arrow(ax, (x + 3.1, top - 4.5), (x + 3.1, top - 6.5))
        step_box(x, top - 7.7, 6.2, "loss = calc_loss_batch(...)\n/ accumulation_steps: half the mean", color=COLORS["target"])
        arrow(ax, (x + 3.1, top - 7.7), (x + 3.1, top - 8.4))
        step_box(x, top - 9.6, 6.2, "loss.backward(): adds its\ngradient to what .grad holds")
    arrow(ax, (14.5, top - 9.6), (17.0, top - 10.3))
    arrow(ax, (21.5, top - 9.6), (19.0, top - 10.3))
    step_box(11.4, top - 11.5, 13.2, ".grad = ½ gradient of mean(windows 0, 1) + ½ gradient of mean(windows 2, 3)\n"
             "= the gradient of the mean over all 4: then clip_grad_norm_ and optimizer.step(), once")
    label(ax, 0.3, 1.7, "Both columns take one optimizer step, with the same gradient up to float32 rounding (02 checks "
          "it on four windows of a small model, dropout off).", ha="left", size=9)
    label(ax, 0.3, 1.15, "Steps, the warmup-and-cosine schedule and eval_freq count optimizer steps: in the full profile, "
          f"with accumulation_steps = 2, an epoch's {plan['steps_per_epoch']} batches", ha="left", size=9)
    label(ax, 0.3, 0.6, f"of {plan['batch_size']} windows would make {plan['steps_per_epoch'] // 2} steps of "
          f"{2 * plan['batch_size']} windows each, and its last batch would be left out.", ha="left", size=9)
    save(fig, path)


# What each entry of a checkpoint is for, by its key in the dict save_checkpoint writes; the figure takes the keys
# from checkpoints that train_model_improved really writes, and refuses one this table does not describe.
CHECKPOINT_ENTRIES = {
    "config": ("use", "asdict(model.cfg): the GPTConfig that rebuilds the model (model_from_checkpoint)"),
    "model": ("use", "model.state_dict(): the weights"),
    "optimizer": ("resume", "optimizer.state_dict(): AdamW's running averages; None in best.pt (weights only)"),
    "step": ("resume", "the optimizer step it was saved at: where the warmup-and-cosine schedule stands"),
    "rng_state": ("random", "torch.get_rng_state(): the CPU's random state (batch order; dropout on a CPU)"),
    "cuda_rng_state": ("random", "every GPU's random state (None without CUDA)"),
    "val_loss": ("use", "the validation loss that made this evaluation the best so far"),
    "epoch": ("resume", "the epoch just finished: resuming starts with the next one"),
    "schedule": ("resume", "TrainingSettings.schedule: epochs, steps per epoch, accumulation, processes, peak_lr,"
                           " warmup"),
    "tokens_seen": ("resume", "the tokens trained on so far"),
    "history": ("resume", "every evaluation so far: step, epoch, tokens seen, both losses, learning rate"),
    "best_val_loss": ("resume", "the best validation loss so far, so best.pt is replaced only by a better model"),
    "scaler": ("resume", "the GradScaler's state (empty unless the run trains in fp16)"),
    "process_rng_states": ("random", "in a distributed run, every process's random state (None in one process)"),
    "content_sha256": ("check", "the SHA-256 of all the entries above (content_sha256), checked by load_checkpoint"),
}
ENTRY_KINDS = {"use": ("using the model", COLORS["trained"]), "resume": ("resuming training", COLORS["layer"]),
               "random": ("random state, for resuming exactly", COLORS["position"]),
               "check": ("checking the contents", COLORS["key"])}


def checkpoints_of_a_short_run():
    """The files train_model_improved writes for a checkpoint_path (last.pt) and a best_checkpoint_path (best.pt),
    and the two checkpoints as torch.load reads them, from one epoch of a tiny model on the start of the-verdict
    (seconds; the global random state is left as it was)."""
    gpt2_tokenizer = load_gpt2_tokenizer(REPO_ROOT / "data" / "gpt2-tokenizer", REPO_ROOT / ".cache" / "tiktoken")
    text = (REPO_ROOT / "data" / "the-verdict.txt").read_text(encoding="utf-8")[:300]  # 4 windows: 2 steps
    config = GPTConfig(context_length=16, emb_dim=16, n_heads=2, n_layers=1)
    loader = create_dataloader(text, gpt2_tokenizer, batch_size=2, max_length=16, stride=16, shuffle=False)
    with (torch.random.fork_rng(devices=[]), tempfile.TemporaryDirectory() as folder,
          contextlib.redirect_stdout(io.StringIO())):  # its progress bar and sample are not the point
        torch.manual_seed(123)
        model = GPTModel(config)
        settings = TrainingSettings(num_epochs=1, peak_lr=1e-3, eval_freq=1, eval_iter=1, start_context="Every effort",
                                    checkpoint_path=Path(folder) / "last.pt", best_checkpoint_path=Path(folder) / "best.pt")
        train_model_improved(model, loader, loader, make_optimizer(model, lr=1e-3, weight_decay=0.1), "cpu", settings,
                             gpt2_tokenizer)
        files = sorted(path.name for path in Path(folder).iterdir())
        checkpoints = {}
        for name in ("last.pt", "best.pt"):
            load_checkpoint(Path(folder) / name)  # 02's own checks pass
            checkpoints[name] = torch.load(Path(folder) / name, weights_only=True)  # with its content_sha256
    return files, checkpoints


def fig_02_checkpoint_contents(path):
    files, checkpoints = checkpoints_of_a_short_run()
    keys = list(checkpoints["last.pt"])
    keys[-1:-1] = [key for key in checkpoints["best.pt"] if key not in keys]  # best.pt's own, before the SHA-256
    undescribed = [key for key in keys if key not in CHECKPOINT_ENTRIES]
    if undescribed or keys[-1] != "content_sha256":
        raise ValueError(f"a checkpoint now holds {undescribed}: describe it in CHECKPOINT_ENTRIES")
    row_h = 0.66
    height = 6.6 + row_h * len(keys)
    fig, ax = canvas(27.5, height)
    top = height - 0.6
    label(ax, 0.3, top, "The checkpoints train_model_improved writes with save_checkpoint: their keys, from a short "
          "run read back with torch.load", ha="left", size=10.5)
    columns = [(5.7, "last.pt", "checkpoint_path:\nevery epoch's end,\nfor resuming"),
               (9.0, "best.pt", "best_checkpoint_path:\neach new best,\nfor using the model")]
    header = top - 1.6
    label(ax, 0.3, header, "key in the dict", ha="left", size=9, weight="bold")
    for x, name, text in columns:
        label(ax, x + 1.4, header + 0.55, name, size=9, weight="bold", family="monospace")
        label(ax, x + 1.4, header - 0.35, text, size=8)
    label(ax, 12.6, header, "what it is for", ha="left", size=9, weight="bold")
    for row, key in enumerate(keys):
        y = header - 1.6 - row * row_h
        kind, description = CHECKPOINT_ENTRIES[key]
        box(ax, 0.3, y - 0.27, 5.0, 0.54, key, color=ENTRY_KINDS[kind][1], size=8.5, family="monospace", rounded=False)
        for x, name, _ in columns:
            held = key in checkpoints[name]
            # None where the code saves None on every machine (best.pt's optimizer); cuda_rng_state and
            # process_rng_states are None or not depending on the machine and the number of processes.
            nothing = held and checkpoints[name][key] is None and key not in ("cuda_rng_state", "process_rng_states")
            box(ax, x, y - 0.27, 2.8, 0.54, "None" if nothing else "saved" if held else "—",
                color=ENTRY_KINDS[kind][1] if held and not nothing else "white", size=8, rounded=False,
                text_color=COLORS["text"] if held and not nothing else COLORS["muted"])
        label(ax, 12.6, y, description, ha="left", size=8.5)
    bottom = header - 1.6 - (len(keys) - 0.5) * row_h
    beside = [name for name in files if name.endswith(".sha256")]
    label(ax, 0.3, bottom - 0.5, f"Beside the files: {' and '.join(beside)}, each the file's SHA-256 for sha256sum -c "
          "(the series never reads them).", ha="left", size=8.5)
    label(ax, 0.3, bottom - 1.05, "Each checkpoint is written under a temporary name, read back, and only then "
          "renamed into place.", ha="left", size=8.5)
    x = 0.3
    for kind, (name, color) in ENTRY_KINDS.items():
        ax.add_patch(Rectangle((x, bottom - 2.05), 0.5, 0.4, facecolor=color, edgecolor=COLORS["edge"], lw=0.8))
        label(ax, x + 0.65, bottom - 1.85, name, ha="left", size=8.5)
        x += 1.0 + 0.16 * len(name)
    save(fig, path)
