"""Benchmark: our GPT-2 (the notebooks' own code) against Hugging Face's GPT2LMHeadModel, side by side.

    python benchmarks/bench.py                 # training, generation, evaluation, loading, notebooks (smoke profile)
    python benchmarks/bench.py --full-02       # also run 02_pretraining.ipynb in its full profile (minutes)
    python benchmarks/bench.py --docs          # also put the table into docs/speed.md (between the bench markers)
    python benchmarks/bench.py --smoke         # tiny models, 8 prompts, no notebooks: checks the script in seconds
    python benchmarks/bench.py --sections evaluation --eval-prompts 16 --eval-sizes 124M   # a part only

Sections (--sections, all by default):
- training: tokens/s of a training step, fp32 and (where pick_precision says so) bf16 or fp16 autocast, with
  the allocator as it is and again, in a child process, after 02's reuse_freed_memory (glibc keeps freed
  memory for the next step; a setting for the whole process, so it cannot run beside the other sections);
- generation: greedy tokens/s at batch 1 (ours before: generate, its cache grown by concatenation; ours
  after: generate_batch, its cache written in place; Hugging Face's generate) and at batch 8 (prompts of 8
  lengths, left-padded), in fp32 and with bf16 weights (bf16_weights) where pick_precision says bf16;
- evaluation: seconds for 05's evaluation pass over its 110 test prompts (--eval-prompts N: the first N) on
  random stand-ins of each of --eval-sizes (default 124M 355M): before, one prompt at a time with generate;
  after, generate_batch 8 prompts at a time;
- loading: a 124M checkpoint in OpenAI's layout read into GPTModel (seconds, peak memory);
- notebooks: each notebook's wall time in the smoke profile (--full-02: 02 in its full profile too).

The run starts by measuring the machine's limits (benchmarks/machine_limits.py: the matrix-product and
matrix-vector rates in fp32 and bf16); the table's header gives them, and each training row and each
batch-1 generation row its share of the rate that bounds it (the notes give the formulas).

Both models get the same configuration and the same random weights (ours are copied into Hugging
Face's model through 03's OpenAI-layout converters), run in the same process, on the same inputs, with
the same optimizer, so the ratios compare the implementations and nothing else. Our side is exactly
what the notebooks run: the package gpt2_from_scratch, generated from the notebooks' cells (02's
training code with its cheaper CPU dropout, 03's converters and loader), never a copied module.

The table goes to stdout and to outputs/benchmarks/latest.md (with latest.json beside it). The generation
and evaluation sections, and the helpers all sections share, are in bench_generation.py beside this file.
"""

from __future__ import annotations

import argparse
import importlib.util
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

from gpt2_from_scratch.architecture import GPT2_PRESETS, GPTModel
from gpt2_from_scratch.architecture import flops_per_token as count_flops_per_token  # 01, section 5.1
from gpt2_from_scratch.pretraining import autocast, make_optimizer, pick_precision, with_fast_dropout
from gpt2_from_scratch.weights import hparams_from_config, random_gpt2_params, write_gpt2_checkpoint
from gpt2_support.files import atomic_write_path



def script_beside_this_one(name):
    """benchmarks/<name>.py as a module (benchmarks/ is a folder of scripts, not an installed package)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().with_name(f"{name}.py"))
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


machine_limits = script_beside_this_one("machine_limits")
bench_generation = script_beside_this_one("bench_generation")
hugging_face_twin, interleaved_times = bench_generation.hugging_face_twin, bench_generation.interleaved_times
linear_weights, our_config = bench_generation.linear_weights, bench_generation.our_config
time_evaluation, time_generation = bench_generation.time_evaluation, bench_generation.time_generation

REPO_ROOT = Path(__file__).resolve().parent.parent
OUTPUT_DIR = REPO_ROOT / "outputs" / "benchmarks"
NOTEBOOKS = ["01_architecture", "02_pretraining", "03_pretrained_weights", "04_finetune_classify",
             "05_finetune_instruct"]
# --docs writes the table into this page, replacing what stands between the two marker lines
SPEED_PAGE = REPO_ROOT / "docs" / "speed.md"
BENCH_START, BENCH_END = "<!-- bench:start -->", "<!-- bench:end -->"


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
    if best != "fp32":  # (a tiny model gains nothing from it, but the smoke run checks every path of the script)
        precisions.append(best)
    # Model FLOPs per token, 01's count (section 5.1): 6 per weight of the matrix products (forward 2, backward 4)
    # and attention's 12 x layers x tokens x emb_dim (its score and weighted-sum products, causal mask not subtracted)
    flops_per_token = count_flops_per_token(ours.cfg, n_tokens, training=True)
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
                         "runs": len(times[name]), "limit precision": precision, "flops per token": flops_per_token})
        ours.zero_grad(set_to_none=True)
        theirs.zero_grad(set_to_none=True)
    note = (f"batch {batch} x {n_tokens} tokens, dropout {drop_rate}, AdamW (fused where supported). Share of the "
            f"limit: tokens/s x model FLOPs per token over the matrix-product rate of that precision; FLOPs per token "
            f"= 6 x P + 12 x n_layers x n_tokens x emb_dim = {flops_per_token / 1e9:.3g} GFLOP, P = "
            f"{linear_weights(ours)[0] / 1e6:,.3g}M weights of all linear layers, output head included")
    return rows, note


# time_training again in a child process that first keeps freed memory for reuse. The setting lasts for the
# whole process, so it must not reach the other sections (nor the tests that run this script's smoke run).
TRAINING_REUSING_FREED_MEMORY = textwrap.dedent("""
    import importlib.util, json, sys
    import torch
    from gpt2_from_scratch.pretraining import reuse_freed_memory
    spec = importlib.util.spec_from_file_location("bench", {bench_path!r})
    bench = sys.modules["bench"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.time_training({smoke!r}, torch.device({device!r}), {repeats!r})[0] if reuse_freed_memory() else []
    print(json.dumps(rows))
""")


def time_training_reusing_freed_memory(smoke, device, repeats):
    """time_training's rows, measured after 02's reuse_freed_memory in a child process, each named "<who>, freed
    memory reused"; none where the C library is not glibc (the setting does nothing there)."""
    script = TRAINING_REUSING_FREED_MEMORY.format(bench_path=str(Path(__file__).resolve()), smoke=smoke,
                                                  device=str(device), repeats=repeats)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    rows = json.loads(result.stdout.strip().splitlines()[-1])
    for row in rows:
        row["what"] += ", freed memory reused"
    return rows


# --- 2. generation and 3. evaluation: in bench_generation.py ----------------------------------------------


# --- 4. loading -------------------------------------------------------------------------------------------------

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


# --- 5. notebooks -----------------------------------------------------------------------------------------------

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
    """The row's ratios to what it is measured against. Training (ours): Hugging Face in the same precision and
    allocator setting, our fp32, and (freed memory reused) ours without; Hugging Face with freed memory reused:
    its own without. Generation (ours after): Hugging Face at the same batch and precision; at batch 1 in fp32
    ours before; with bf16 weights our fp32; at batch 8 our batch 1. Evaluation (after): before, for the same
    size; with bf16 weights our fp32 after. A figure not measured in this run gives no ratio."""
    section, precision, what, value = row["section"], row["precision"], row["what"], row["value"]

    def find(precision, what):
        return next((r["value"] for r in rows if (r["section"], r["precision"], r["what"]) == (section, precision, what)),
                    None)

    parts = []

    def add(other, template):  # template: how to write value / other
        if other:
            parts.append(template.format(value / other))

    if section == "training" and what.startswith("ours"):
        reused = what.removeprefix("ours")  # "" or ", freed memory reused"
        add(find(precision, "Hugging Face" + reused), "{:.2f}x Hugging Face" + (" (reusing too)" if reused else ""))
        if reused:
            add(find(precision, "ours"), "{:.2f}x ours with the allocator as is")
        if precision != "fp32":
            add(find("fp32", what), "{:.2f}x our fp32")
    if section == "training" and what == "Hugging Face, freed memory reused":
        add(find(precision, "Hugging Face"), "{:.2f}x Hugging Face with the allocator as is")
    if section == "generation" and what.endswith("after: generate_batch"):
        batch = what.split(",")[0]  # "batch 1" or "batch 8"
        add(find(precision, what.replace("after: generate_batch", "Hugging Face generate")), "{:.2f}x Hugging Face")
        if batch == "batch 1" and precision == "fp32":
            add(find("fp32", "batch 1, before: generate, cache by concatenation"), "{:.2f}x before")
        if precision != "fp32":
            add(find("fp32", what), "{:.2f}x our fp32")
        if batch != "batch 1":
            add(find(precision, "batch 1, after: generate_batch"), f"{{:.1f}}x our {precision} at batch 1")
    if section == "evaluation" and ", after:" in what:  # figures in seconds: "as fast" is the inverse ratio
        prefix = what.split("after:")[0]  # the size, and the pass ("8 prompts x 256 tokens, ") if not the first
        before = find("fp32", f"{prefix}before: generate, one prompt at a time")
        if before:
            parts.append(f"{before / value:.2f}x as fast as before")
        after_fp32 = find("fp32", what)
        if precision != "fp32" and after_fp32:
            parts.append(f"{after_fp32 / value:.2f}x as fast as fp32")
    return ", ".join(parts)


def limit_share(row, limits):
    """The row's share of the machine's rate that bounds it, in words: training rows (with "flops per token") of
    the matrix-product rate of their precision, batch-1 generation rows (with "weight bytes per token") of the
    matrix-vector rate. "" for other rows and for precisions not measured (fp16)."""
    rates = (limits or {}).get(row.get("limit precision"))
    if rates is None:
        return ""
    if "flops per token" in row:
        return f"{row['value'] * row['flops per token'] / (rates['matmul GFLOP/s'] * 1e9):.0%} of matmul"
    if "weight bytes per token" in row:
        return f"{row['value'] * row['weight bytes per token'] / (rates['matvec GB/s'] * 1e9):.0%} of matvec"
    return ""


def limits_text(limits):
    """The machine's limits in one sentence."""
    return "; ".join(f"{precision}: matrix products (matmul) {rates['matmul GFLOP/s']:,.0f} GFLOP/s, matrix-vector "
                     f"(matvec) {rates['matvec GB/s']:,.1f} GB/s = {rates['matvec G weights/s']:,.2f} billion "
                     f"weights/s" for precision, rates in limits.items())


def format_table(rows, notes, machine, when, limits=None):
    lines = [f"Measured {when} on: {machine}."]
    if limits:
        lines.append(f"The machine's limits, measured in the same run before and after the sections, the higher of each "
                     f"(benchmarks/machine_limits.py, the fastest of 10 products): "
                     f"{limits_text(limits)}.")
    lines += ["", "| section | precision | what | figure | share of the limit | ratio |", "|---|---|---|---:|---:|---|"]
    for row in rows:
        value = f"{row['value']:,.1f} {row['unit']}" if row["unit"] != "s" else f"{row['value']:,.2f} s"
        lines.append(f"| {row['section']} | {row['precision']} | {row['what']} | {value} | {limit_share(row, limits)} "
                     f"| {ratio_text(rows, row)} |")
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
    sections = ["training", "generation", "evaluation", "loading", "notebooks"]
    parser.add_argument("--smoke", action="store_true",
                        help="tiny models, 8 evaluation prompts, no notebooks: check the script quickly")
    parser.add_argument("--sections", nargs="+", default=sections, choices=sections)
    parser.add_argument("--eval-prompts", type=int, default=110, metavar="N",
                        help="evaluation: time only the first N of 05's 110 test prompts (default 110; smoke 8)")
    parser.add_argument("--eval-sizes", nargs="+", default=["124M", "355M"], choices=list(GPT2_PRESETS),
                        help="evaluation: the sizes of the random stand-ins (default 124M 355M)")
    parser.add_argument("--full-02", action="store_true", help="also run 02_pretraining.ipynb in the full profile")
    parser.add_argument("--repeats", type=int, default=None, help="timed repetitions (default: 5, smoke 2)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--docs", action="store_true", help="write the table into docs/speed.md")
    args = parser.parse_args(argv)
    if not 1 <= args.eval_prompts <= 110:
        parser.error(f"--eval-prompts must be from 1 to 110 (05 has 110 test prompts), got {args.eval_prompts}")
    if args.smoke and args.docs:
        parser.error("--docs takes the real figures; run without --smoke")
    if args.docs:
        try:
            split_at_markers(SPEED_PAGE)  # before measuring for minutes, not after
        except ValueError as error:
            parser.error(str(error))
    repeats = args.repeats or (2 if args.smoke else 5)
    device = torch.device(args.device)

    # The machine's limits, on the same device (a GPU needs larger products than a CPU to reach its rate):
    # measured before the sections and again after them, keeping the higher of each rate (a busy moment only
    # ever lowers one)
    matmul_size = 512 if args.smoke else 8192 if device.type == "cuda" else 2048
    limit_repeats = 2 if args.smoke else 10
    limits = machine_limits.measure(size=matmul_size, repeats=limit_repeats, device=device)
    rows, notes = [], {}
    with tempfile.TemporaryDirectory(prefix="gpt2-bench-") as work_dir:
        if "training" in args.sections:
            section_rows, notes["training"] = time_training(args.smoke, device, repeats)
            reusing = time_training_reusing_freed_memory(args.smoke, device, repeats)
            rows += section_rows + reusing
            if reusing:
                notes["training"] += ("; '..., freed memory reused': measured again, in a child process, after 02's "
                                      "reuse_freed_memory (glibc's malloc keeps freed memory for the next step)")
        if "generation" in args.sections:
            section_rows, notes["generation"] = time_generation(args.smoke, device, repeats)
            rows += section_rows
        if "evaluation" in args.sections:
            section_rows, notes["evaluation"] = time_evaluation(args.smoke, device, args.eval_sizes, args.eval_prompts)
            rows += section_rows
        if "loading" in args.sections:
            section_rows, notes["loading"] = time_loading(args.smoke, work_dir)
            rows += section_rows
        if "notebooks" in args.sections and not args.smoke:
            rows += [time_notebook(name, "smoke", work_dir) for name in NOTEBOOKS]
            if args.full_02:
                rows.append(time_notebook("02_pretraining", "full", work_dir))
            notes["notebooks"] = "wall time of `jupyter nbconvert --execute`, kernel start included"

    again = machine_limits.measure(size=matmul_size, repeats=limit_repeats, device=device)
    limits = {precision: {name: max(rate, again[precision][name]) for name, rate in rates.items()}
              for precision, rates in limits.items()}
    when = time.strftime("%Y-%m-%d")
    table = format_table(rows, notes, machine_description(device), when, limits)
    print(table)
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    suffix = "-smoke" if args.smoke else ""
    (OUTPUT_DIR / f"latest{suffix}.md").write_text(table + "\n")
    (OUTPUT_DIR / f"latest{suffix}.json").write_text(json.dumps({"when": when, "limits": limits, "rows": rows,
                                                                          "notes": notes}, indent=1))
    if args.docs:
        update_docs(table)
    return rows


if __name__ == "__main__":
    main()
