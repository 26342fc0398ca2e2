"""Benchmark: our GPT-2 (the notebooks' own code) against Hugging Face's GPT2LMHeadModel, side by side.

    python benchmarks/bench.py                 # training, generation, loading, notebooks in the smoke profile
    python benchmarks/bench.py --full-02       # also run 02_pretraining.ipynb in its full profile (minutes)
    python benchmarks/bench.py --docs          # also put the table into docs/speed.md (between the bench markers)
    python benchmarks/bench.py --smoke         # a tiny model and no notebooks: checks the script in seconds

Both models get the same configuration and the same random weights (ours are copied into Hugging
Face's model through 03's OpenAI-layout converters), run in the same process, on the same inputs, with
the same optimizer, so the ratios compare the implementations and nothing else. Our side is exactly
what the notebooks run: the package gpt2_from_scratch, generated from the notebooks' cells (02's
training code with its cheaper CPU dropout, 03's converters and loader), never a copied module.

The table goes to stdout and to outputs/benchmarks/latest.md (with latest.json beside it).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from gpt2_from_scratch.architecture import GPTConfig, GPTModel
from gpt2_from_scratch.pretraining import (AUTOCAST_DTYPES, autocast, generate, make_optimizer, pick_precision,
                                           with_fast_dropout)
from gpt2_from_scratch.weights import (gpt_to_openai_params, hparams_from_config, random_gpt2_params,
                                       to_hugging_face, write_gpt2_checkpoint)
from gpt2_support.files import atomic_write_path
from gpt2_support.hub import hf_config_from_hparams

REPO_ROOT = Path(__file__).resolve().parent.parent
OUTPUT_DIR = REPO_ROOT / "outputs" / "benchmarks"
NOTEBOOKS = ["01_architecture", "02_pretraining", "03_pretrained_weights", "04_finetune_classify",
             "05_finetune_instruct"]
# --docs writes the table into this page, replacing what stands between the two marker lines
SPEED_PAGE = REPO_ROOT / "docs" / "speed.md"
BENCH_START, BENCH_END = "<!-- bench:start -->", "<!-- bench:end -->"


# --- the two models, with the same weights ----------------------------------------------------------------------

def our_config(smoke, drop_rate):
    if smoke:
        return GPTConfig(vocab_size=512, context_length=256, emb_dim=64, n_heads=4, n_layers=2, drop_rate=drop_rate)
    return GPTConfig.from_preset("124M", drop_rate=drop_rate)  # OpenAI's 124M architecture


def hugging_face_twin(model, drop_rate):
    """transformers' GPT2LMHeadModel with our model's configuration, dropout and weights."""
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = model.cfg
    hparams = hparams_from_config(cfg)
    state = to_hugging_face(gpt_to_openai_params(model), hparams).state_dict()  # 03's converters
    config = GPT2Config.from_dict(hf_config_from_hparams(hparams) | {  # the Hub's config.json, with our dropout
        "resid_pdrop": drop_rate, "embd_pdrop": drop_rate, "attn_pdrop": drop_rate,
        "bos_token_id": cfg.vocab_size - 1, "eos_token_id": cfg.vocab_size - 1})
    hf_model = GPT2LMHeadModel(config)
    hf_model.load_state_dict(state)
    return hf_model


def check_same_logits(ours, theirs, vocab_size):
    token_ids = torch.randint(0, vocab_size, (1, 16), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        difference = (ours.eval()(token_ids) - theirs.eval()(token_ids).logits).abs().max().item()
    assert difference < 1e-4, f"the two models disagree (max |logit difference| {difference:.1e})"
    return difference


# --- 1. training ------------------------------------------------------------------------------------------------

def time_training(smoke, device, repeats):
    """Tokens/s of one training step (forward, backward, AdamW) in each precision, ours and Hugging Face's."""
    batch, n_tokens, drop_rate = (2, 64, 0.1) if smoke else (2, 256, 0.1)
    torch.manual_seed(123)
    ours = with_fast_dropout(GPTModel(our_config(smoke, drop_rate)))  # with 02's appendix's CPU dropout, as gpt2 pretrain trains
    theirs = hugging_face_twin(ours, drop_rate).to(device)  # the twin copies our weights on the CPU
    ours.to(device)
    vocab_size = ours.cfg.vocab_size
    token_ids = torch.randint(0, vocab_size, (batch, n_tokens + 1), generator=torch.Generator().manual_seed(1))
    inputs, targets = token_ids[:, :-1].to(device), token_ids[:, 1:].to(device)

    precisions = ["fp32"]
    best = pick_precision(device)
    if best != "fp32" and not smoke:  # (tiny models gain nothing from bf16; the smoke run checks the script)
        precisions.append(best)
    rows = []
    for precision in precisions:
        steps = {}
        for name, model in (("ours", ours), ("Hugging Face", theirs)):
            model.train()
            optimizer = make_optimizer(model, lr=4e-4, weight_decay=0.1)  # the same AdamW for both
            scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
            forward = model if name == "ours" else (lambda x, hf_model=model: hf_model(x).logits)

            def step(forward=forward, model=model, optimizer=optimizer, scaler=scaler):
                optimizer.zero_grad(set_to_none=True)
                with autocast(device, precision):
                    logits = forward(inputs)
                loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                return loss

            steps[name] = step
        times = interleaved_times(steps, repeats, device, warmup=2)
        for name in steps:
            rows.append({"section": "training", "precision": precision, "what": name,
                         "value": batch * n_tokens / statistics.median(times[name]), "unit": "tokens/s",
                         "runs": len(times[name])})
        ours.zero_grad(set_to_none=True)
        theirs.zero_grad(set_to_none=True)
    return rows, f"batch {batch} x {n_tokens} tokens, dropout {drop_rate}, AdamW (fused where supported)"


def interleaved_times(functions, repeats, device, warmup):
    """Call each function `warmup` times, then `repeats` rounds in turn (so drift in the machine's speed hits
    all of them alike); returns {name: [seconds, ...]}."""
    for function in functions.values():
        for _ in range(warmup):
            function()
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            synchronize(device)
            start = time.perf_counter()
            function()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return times


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- 2. generation ----------------------------------------------------------------------------------------------

def time_generation(smoke, device, repeats):
    """Greedy generation of N new tokens after an 8-token prompt: ours without and with the KV cache,
    Hugging Face's generate with its cache. In float32 all three must give the same tokens. Where the
    device has fast bf16, both cached variants run again with their weights in bf16."""
    n_new = 24 if smoke else 200
    torch.manual_seed(123)
    ours = GPTModel(our_config(smoke, 0.0)).eval()
    theirs = hugging_face_twin(ours, 0.0).eval()
    check_same_logits(ours, theirs, ours.cfg.vocab_size)
    ours.to(device), theirs.to(device)
    prompt = torch.randint(0, ours.cfg.vocab_size, (1, 8), generator=torch.Generator().manual_seed(2)).to(device)

    def cached_variants(our_model, their_model):
        def hf_generate():
            with torch.inference_mode():
                return their_model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n_new,
                                            min_new_tokens=n_new, do_sample=False, use_cache=True, pad_token_id=0)

        return {"ours, KV cache": lambda: generate(our_model, prompt, n_new, use_cache=True),
                "Hugging Face generate": hf_generate}

    start = time.perf_counter()
    uncached = generate(ours, prompt, n_new, use_cache=False)  # slow, so timed once
    uncached_seconds = time.perf_counter() - start
    rows = [{"section": "generation", "precision": "fp32", "what": "ours, no cache", "value": n_new / uncached_seconds,
             "unit": "tokens/s", "runs": 1}]
    variants = {"fp32": cached_variants(ours, theirs)}
    low = pick_precision(device)
    if low != "fp32" and not smoke:
        dtype = AUTOCAST_DTYPES[low]
        variants[f"{low} weights"] = cached_variants(copy.deepcopy(ours).to(dtype), copy.deepcopy(theirs).to(dtype))
    agreement = []
    for precision, functions in variants.items():
        outputs = {name: function() for name, function in functions.items()}  # also the warm-up
        if precision == "fp32":
            for name, output in outputs.items():
                assert torch.equal(output, uncached), f"{name} generated other tokens than ours without the cache"
        else:
            same = (outputs["ours, KV cache"] == outputs["Hugging Face generate"]).float().mean().item()
            agreement.append(f"in {precision} ours and Hugging Face's tokens agree at {same:.0%} of positions")
        times = interleaved_times(functions, repeats, device, warmup=0)
        rows += [{"section": "generation", "precision": precision, "what": name, "value": n_new / statistics.median(seconds),
                  "unit": "tokens/s", "runs": len(seconds)} for name, seconds in times.items()]
    note = f"{n_new} new tokens, greedy, batch 1, 8-token prompt; in float32 all three give identical tokens"
    return rows, "; ".join([note] + agreement)


# --- 3. loading -------------------------------------------------------------------------------------------------

LOAD_SCRIPT = textwrap.dedent("""
    import json, time
    import torch
    from gpt_download import download_and_load_gpt2  # the downloader and 03's loader, and what they import
    from gpt2_from_scratch.architecture import GPTConfig, GPTModel
    from gpt2_from_scratch.weights import gpt_for_checkpoint, load_weights_into_gpt
    with torch.device("meta"):  # also a one-off: PyTorch's meta device loads its kernels on first use
        GPTModel(GPTConfig(vocab_size=8, context_length=4, emb_dim=4, n_heads=1, n_layers=1))

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) * 1024

    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # reset the peak resident set size (VmHWM) to the current one
    before = status("VmRSS:")
    start = time.perf_counter()
    hparams, params = download_and_load_gpt2({size!r}, {models_dir!r}, progress=False)
    model = gpt_for_checkpoint(hparams)  # 03's way: no random init, no third copy
    load_weights_into_gpt(model, params)
    del params
    seconds = time.perf_counter() - start
    peak = status("VmHWM:")
    model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    print(json.dumps(dict(seconds=seconds, peak_increase=peak - before, model_bytes=model_bytes)))
""")


def time_loading(smoke, work_dir):
    """Load a checkpoint written in OpenAI's layout into GPTModel, in a fresh process, so that its peak memory
    is that of loading alone."""
    hparams = hparams_from_config(our_config(smoke, 0.0))
    size = "124M"
    models_dir = Path(work_dir) / "gpt2"
    write_gpt2_checkpoint(random_gpt2_params(hparams, seed=0), hparams, models_dir / size,
                             tokenizer_dir=REPO_ROOT / "data" / "gpt2-tokenizer")
    script = LOAD_SCRIPT.format(size=size, models_dir=str(models_dir))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO_ROOT)
    if result.returncode != 0:
        raise RuntimeError(f"the loading benchmark failed:\n{result.stderr[-3000:]}")
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    model_mb = figures["model_bytes"] / 1e6
    rows = [
        {"section": "loading", "precision": "fp32", "what": "ours: read + build + copy", "value": figures["seconds"],
         "unit": "s", "runs": 1},
        {"section": "loading", "precision": "fp32", "what": "ours: peak memory added", "value": figures["peak_increase"] / 1e6,
         "unit": "MB", "runs": 1},
    ]
    note = (f"model {model_mb:,.0f} MB of float32 parameters; peak added = {figures['peak_increase'] / figures['model_bytes']:.2f}x "
            f"the model; reading checks every tensor's CRC32C and needs no TensorFlow; the meta device's first use "
            f"happens once per session and is not counted")
    return rows, note


# --- 4. notebooks -----------------------------------------------------------------------------------------------

def time_notebook(name, profile, work_dir):
    environment = {**os.environ, "GPT2_PROFILE": profile}
    start = time.perf_counter()
    result = subprocess.run(["jupyter", "nbconvert", "--to", "notebook", "--execute", f"{name}.ipynb",
                             "--ExecutePreprocessor.timeout=-1", "--output-dir", str(work_dir),
                             "--output", f"{name}-{profile}.ipynb"],
                            cwd=REPO_ROOT, env=environment, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{name} ({profile}) failed:\n{result.stderr[-3000:]}")
    return {"section": "notebooks", "precision": "", "what": f"{name} ({profile})", "value": seconds, "unit": "s",
            "runs": 1}


# --- the table --------------------------------------------------------------------------------------------------

def machine_description(device):
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    parts = [f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"]
    if device.type == "cuda":
        parts.append(torch.cuda.get_device_name(device))
    import transformers
    parts.append(f"torch {torch.__version__}, transformers {transformers.__version__}, Python {platform.python_version()}")
    return "; ".join(parts)


def ratio_text(rows, row):
    """The row's ratio to what it is measured against: Hugging Face in the same precision, and our own
    float32 (training) or uncached (generation) figure."""
    def find(section, precision, what):
        return next((r["value"] for r in rows if (r["section"], r["precision"], r["what"]) == (section, precision, what)), None)

    parts = []
    if row["section"] == "training" and row["what"] == "ours":
        parts.append(f"{row['value'] / find('training', row['precision'], 'Hugging Face'):.2f}x Hugging Face")
        if row["precision"] != "fp32":
            parts.append(f"{row['value'] / find('training', 'fp32', 'ours'):.2f}x our fp32")
    if row["section"] == "generation" and row["what"] == "ours, KV cache":
        parts.append(f"{row['value'] / find('generation', row['precision'], 'Hugging Face generate'):.2f}x Hugging Face")
        parts.append(f"{row['value'] / find('generation', 'fp32', 'ours, no cache'):.1f}x ours without cache")
    return ", ".join(parts)


def format_table(rows, notes, machine, when):
    lines = [f"Measured {when} on: {machine}.", "",
             "| section | precision | what | figure | ratio |", "|---|---|---|---:|---|"]
    for row in rows:
        value = f"{row['value']:,.1f} {row['unit']}" if row["unit"] != "s" else f"{row['value']:,.2f} s"
        lines.append(f"| {row['section']} | {row['precision']} | {row['what']} | {value} | {ratio_text(rows, row)} |")
    lines.append("")
    lines.extend(f"- {section}: {note}" for section, note in notes.items())
    return "\n".join(lines)


def split_at_markers(page):
    """(what comes before the bench block, what comes after it) in the page; a ValueError naming the page and
    the marker lines when the page or a marker is missing."""
    page = Path(page)
    add_them = f"the table goes between a line {BENCH_START} and a line {BENCH_END}"
    if not page.is_file():
        raise ValueError(f"{page} does not exist: create it ({add_them})")
    text = page.read_text(encoding="utf-8")
    if BENCH_START not in text or BENCH_END not in text.split(BENCH_START, 1)[1]:
        raise ValueError(f"{page} has no {BENCH_START} ... {BENCH_END} block to replace: {add_them}")
    head, rest = text.split(BENCH_START, 1)
    return head, rest.split(BENCH_END, 1)[1]


def update_docs(table, page=SPEED_PAGE):
    """Replace what stands between the bench markers in docs/speed.md (or `page`) with `table`, atomically."""
    head, tail = split_at_markers(page)
    with atomic_write_path(Path(page)) as partial:  # the page is whole or unchanged
        partial.write_text(f"{head}{BENCH_START}\n{table}\n{BENCH_END}{tail}", encoding="utf-8")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny model, no notebooks: check the script quickly")
    parser.add_argument("--sections", nargs="+", default=["training", "generation", "loading", "notebooks"],
                        choices=["training", "generation", "loading", "notebooks"])
    parser.add_argument("--full-02", action="store_true", help="also run 02_pretraining.ipynb in the full profile")
    parser.add_argument("--repeats", type=int, default=None, help="timed repetitions (default: 5, smoke 2)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--docs", action="store_true", help="write the table into docs/speed.md")
    args = parser.parse_args(argv)
    if args.smoke and args.docs:
        parser.error("--docs takes the real figures; run without --smoke")
    if args.docs:
        try:
            split_at_markers(SPEED_PAGE)  # before measuring for minutes, not after
        except ValueError as error:
            parser.error(str(error))
    repeats = args.repeats or (2 if args.smoke else 5)
    device = torch.device(args.device)

    rows, notes = [], {}
    with tempfile.TemporaryDirectory(prefix="gpt2-bench-") as work_dir:
        if "training" in args.sections:
            section_rows, notes["training"] = time_training(args.smoke, device, repeats)
            rows += section_rows
        if "generation" in args.sections:
            section_rows, notes["generation"] = time_generation(args.smoke, device, repeats)
            rows += section_rows
        if "loading" in args.sections:
            section_rows, notes["loading"] = time_loading(args.smoke, work_dir)
            rows += section_rows
        if "notebooks" in args.sections and not args.smoke:
            rows += [time_notebook(name, "smoke", work_dir) for name in NOTEBOOKS]
            if args.full_02:
                rows.append(time_notebook("02_pretraining", "full", work_dir))
            notes["notebooks"] = "wall time of `jupyter nbconvert --execute`, kernel start included"

    when = time.strftime("%Y-%m-%d")
    table = format_table(rows, notes, machine_description(device), when)
    print(table)
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    suffix = "-smoke" if args.smoke else ""
    (OUTPUT_DIR / f"latest{suffix}.md").write_text(table + "\n")
    (OUTPUT_DIR / f"latest{suffix}.json").write_text(json.dumps({"when": when, "rows": rows, "notes": notes}, indent=1))
    if args.docs:
        update_docs(table)
    return rows


if __name__ == "__main__":
    main()
