"""Time 04 and 05 at their real size without OpenAI's weights.

    python benchmarks/full_size_standin.py 04 --fractions 0.2 0.4
    python benchmarks/full_size_standin.py 05 --size 355M --fractions 0.05 0.1
    python benchmarks/full_size_standin.py 05 --size 124M --fractions 1        # the whole run, no estimate
    python benchmarks/full_size_standin.py 05 --size 355M --per-unit 10        # unit costs only (minutes)

A random stand-in of the real size (GPT-2 124M for 04; 05's chosen size) is written in OpenAI's format with
03's write_gpt2_checkpoint, so the notebook's own download-and-load path reads it. The notebook then runs
top to bottom in its full profile, unchanged, on the first part of each data split (GPT2_DATA_FRACTION), in
a scratch folder (outputs/benchmarks/full_size/work/, removed afterwards) so that nothing a reader's own full
run wrote is replaced. Every loop runs at full size; only the number of steps, evaluation batches and
responses shrinks with the fraction.

Measured per run: the wall time of each section (the notebook's "## " headings) and its peak memory (the
kernel's peak resident set, /proc/<pid>/status VmHWM, reset at the start of each section through
/proc/<pid>/clear_refs, so Linux only), and the per-unit cost of each progress bar (seconds per training
step or per response, as the bar's own count and elapsed time give it).

With two fractions f1 < f2 each section's time is fitted as a + b*f: a is what does not depend on the data
(loading the model, fixed-size evaluations), b what scales with it (training steps, evaluation batches,
responses), and a + b estimates the whole run. With fraction 1 the run is the whole notebook and needs no
estimate. Random weights never write the end token, so each response runs to its 256-token limit: generation
times are an upper bound for OpenAI's weights, which stop earlier. The quality figures of such runs mean
nothing and are not reported.

Small fractions distort the evaluations (they read up to eval_iter batches of each split, and a small split
has fewer), so the linear estimate is only trusted where that moves it little: 04 at 0.2 and 0.4, where
only its validation split (and at 0.2 its test split) is shorter than an evaluation reads, about a minute
in all. For 05 at the fractions a session allows, validation is one batch, so --per-unit N measures the
costs the whole run is made of instead, on the notebook's own data, loaders and functions: the mean and
median of N training steps (forward, backward, AdamW, as 02's train_model_simple takes them in float32)
and of N evaluation batches (calc_loss_loader, one batch at a time), in the order the notebook's seeded
training loader gives them.

Results go to stdout and to outputs/benchmarks/full_size_<notebook>_<size>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import nbformat
from nbclient import NotebookClient

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = {"04": ("04_finetune_classify", "124M"), "05": ("05_finetune_instruct", "355M")}
OUTPUT_DIR = REPO_ROOT / "outputs" / "benchmarks"
# What the notebooks read from the repository; the scratch folder links to these and holds everything else.
# The packages import from the installed project anyway; the notebooks' first cell checks that the folder
# holds them (it is the repository), and `exercises` is imported from the working folder.
SHARED = ("data", "exercises", "gpt_download.py", "gpt2_from_scratch", "gpt2_support")
# A tqdm bar's last line: "<desc>: 100%|...| <n>/<total> [<elapsed><<remaining>, <rate>...]"
BAR = re.compile(r"(?P<desc>[^\r\n|]*?):\s+\d+%\|[^|]*\|\s*(?P<n>\d+)/(?P<total>\d+) \[(?P<elapsed>[\d:]+)<")


def seconds(clock):
    """'1:02:03' or '02:03' as seconds."""
    total = 0
    for part in clock.split(":"):
        total = total * 60 + int(part)
    return total


def write_stand_in(size, models_dir):
    """A random GPT-2 of this size in OpenAI's format under models_dir/size (written once, then reused)."""
    from gpt2_from_scratch.architecture import GPTConfig
    from gpt2_from_scratch.weights import hparams_from_config, random_gpt2_params, write_gpt2_checkpoint

    target = models_dir / size
    if (target / "hparams.json").is_file():
        return target
    hparams = hparams_from_config(GPTConfig.from_preset(size))
    start = time.perf_counter()
    write_gpt2_checkpoint(random_gpt2_params(hparams, seed=123), hparams, target)
    print(f"wrote a random {size} stand-in to {target} in {time.perf_counter() - start:.0f} s", flush=True)
    return target


def peak_rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


def reset_peak_rss(pid):
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def sections_of(notebook):
    """[(title, [cell indices])]: cells grouped under the markdown heading ('## ...') that precedes them."""
    sections = [("(title)", [])]
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "markdown":
            heading = next((line[3:].strip() for line in cell.source.splitlines() if line.startswith("## ")), None)
            if heading:
                sections.append((heading, []))
        elif cell.cell_type == "code":
            sections[-1][1].append(index)
    return [(title, cells) for title, cells in sections if cells]


def bars_in(cell):
    """Every progress bar's final state in a cell's outputs: (description, units, seconds)."""
    text = "".join(output.get("text", "") for output in cell.get("outputs", []) if output.get("output_type") == "stream")
    finals = {}
    for line in re.split(r"[\r\n]", text):
        match = BAR.search(line)
        if match and match["n"] == match["total"]:
            finals[match["desc"].strip()] = (int(match["n"]), seconds(match["elapsed"]))
    return [(desc, units, elapsed) for desc, (units, elapsed) in finals.items()]


def run_notebook(name, size, fraction, models_dir, timeout):
    """Run one notebook in a scratch folder; per-section seconds and peak MiB, and the progress bars."""
    work = OUTPUT_DIR / "full_size" / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for entry in SHARED:
        (work / entry).symlink_to(REPO_ROOT / entry)
    notebook = nbformat.read(REPO_ROOT / f"{name}.ipynb", as_version=4)
    os.environ.update(GPT2_PROFILE="full", GPT2_MODELS_DIR=str(models_dir), GPT2_DATA_FRACTION=str(fraction),
                      GPT2_INSTRUCT_SIZE=size, GPT2_WEIGHTS_SOURCE="openai")  # the stand-in is in OpenAI's format
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(work)}})
    results, total_start = [], time.perf_counter()
    try:
        with client.setup_kernel():
            pid = client.km.provisioner.process.pid
            for title, cells in sections_of(notebook):
                reset_peak_rss(pid)
                start = time.perf_counter()
                for index in cells:
                    client.execute_cell(notebook.cells[index], index)
                bars = [bar for index in cells for bar in bars_in(notebook.cells[index])]
                results.append({"section": title, "seconds": time.perf_counter() - start,
                                "peak_mib": peak_rss_mib(pid), "bars": bars})
                print(f"  {title[:50]:50} {results[-1]['seconds']:8.1f} s {results[-1]['peak_mib']:8.0f} MiB",
                      flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"fraction": fraction, "total_seconds": time.perf_counter() - total_start, "sections": results}


def estimate(runs):
    """Per section a + b*f through the first two fractions' times; the whole run is a + b (seconds)."""
    (low, high) = sorted(runs, key=lambda run: run["fraction"])[:2]
    f1, f2 = low["fraction"], high["fraction"]
    rows = []
    for first, second in zip(low["sections"], high["sections"]):
        slope = (second["seconds"] - first["seconds"]) / (f2 - f1)
        fixed = first["seconds"] - slope * f1
        rows.append({"section": first["section"], "fixed_seconds": fixed, "scaling_seconds": slope,
                     "estimated_seconds": fixed + slope})
    return rows


def report(name, size, runs, rows):
    lines = [f"# {name} with a random {size} stand-in, full profile", "",
             f"Measured {datetime.now(timezone.utc):%Y-%m-%d} on {platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} cores, Python {platform.python_version()}, torch {__import__('torch').__version__}.", ""]
    header = "| section | " + " | ".join(f"f={run['fraction']:g}: s, peak MiB" for run in runs)
    header += " | estimate for f=1 (s) |" if rows else " |"
    lines += [header, "|" + "---|" * (header.count("|") - 1)]
    for index, section in enumerate(runs[0]["sections"]):
        cells = [f"{run['sections'][index]['seconds']:.1f}, {run['sections'][index]['peak_mib']:.0f}" for run in runs]
        estimate_cell = f" | {rows[index]['estimated_seconds']:.0f}" if rows else ""
        lines.append(f"| {section['section']} | " + " | ".join(cells) + estimate_cell + " |")
    totals = " | ".join(f"{run['total_seconds']:.0f} s, peak {max(s['peak_mib'] for s in run['sections']):.0f} MiB"
                        for run in runs)
    lines.append(f"| **whole run** | {totals}" + (f" | {sum(r['estimated_seconds'] for r in rows):.0f}" if rows else "")
                 + " |")
    if any(row["fixed_seconds"] < -1 or row["scaling_seconds"] < -1 for row in rows):
        lines += ["", "Warning: some sections do not grow linearly between these fractions (a fitted part is "
                      "negative), so the estimate is not to be trusted; see this script's docstring."]
    lines += ["", "Progress bars (units, seconds, seconds per unit):"]
    for run in runs:
        for section in run["sections"]:
            for desc, units, elapsed in section["bars"]:
                lines.append(f"- f={run['fraction']:g}, {section['section']}: {desc}: {units} in {elapsed} s, "
                             f"{elapsed / units:.2f} s each")
    return "\n".join(lines)


def per_unit_costs_05(size, models_dir, count):
    """Seconds of each of `count` training steps and evaluation batches of 05 at full size (stand-in weights)."""
    import statistics
    from functools import partial
    from itertools import islice

    import torch
    from torch.utils.data import DataLoader

    from gpt_download import download_and_load_gpt2
    from gpt2_from_scratch.architecture import load_gpt2_tokenizer
    from gpt2_from_scratch.instruct import InstructionDataset, custom_collate_fn, split_instruction_data
    from gpt2_from_scratch.pretraining import calc_loss_batch, calc_loss_loader, make_optimizer
    from gpt2_from_scratch.weights import gpt_for_checkpoint, load_weights_into_gpt

    os.chdir(REPO_ROOT)  # the notebook's relative paths (data/, the tokenizer cache)
    tokenizer = load_gpt2_tokenizer()
    data = json.loads(Path("data/instruction-data.json").read_text(encoding="utf-8"))
    train_data, _, _ = split_instruction_data(data)
    torch.manual_seed(123)  # as the notebook, before its loaders
    train_loader = DataLoader(InstructionDataset(train_data, tokenizer), batch_size=8, shuffle=True, drop_last=True,
                              collate_fn=partial(custom_collate_fn, allowed_max_length=1024))
    hparams, params = download_and_load_gpt2(size, models_dir)
    torch.manual_seed(123)
    model = gpt_for_checkpoint(hparams)
    load_weights_into_gpt(model, params)
    batches = list(islice(iter(train_loader), count))
    model.eval()
    evaluation = []
    for batch in batches:
        start = time.perf_counter()
        calc_loss_loader([batch], model, "cpu")
        evaluation.append(time.perf_counter() - start)
    model.train()
    optimizer = make_optimizer(model, lr=5e-5, weight_decay=0.1)
    steps = []
    for inputs, targets in batches:
        start = time.perf_counter()
        optimizer.zero_grad()
        calc_loss_batch(inputs, targets, model, "cpu").backward()
        optimizer.step()
        steps.append(time.perf_counter() - start)
    tokens = [inputs.numel() for inputs, _ in batches]
    result = {"size": size, "batches": count, "tokens_per_batch": tokens,
              "training_step_seconds": steps, "evaluation_batch_seconds": evaluation,
              "mean_training_step": statistics.mean(steps), "median_training_step": statistics.median(steps),
              "mean_evaluation_batch": statistics.mean(evaluation),
              "median_evaluation_batch": statistics.median(evaluation),
              "training_batches_per_epoch": len(train_loader)}
    print(f"05, {size}: {count} batches of {min(tokens)} to {max(tokens)} tokens; training step "
          f"{result['mean_training_step']:.2f} s mean, {result['median_training_step']:.2f} s median; evaluation batch "
          f"{result['mean_evaluation_batch']:.2f} s mean, {result['median_evaluation_batch']:.2f} s median "
          f"({len(train_loader)} training batches an epoch)")
    return result


def time_notebook_at_full_size(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebook", choices=sorted(NOTEBOOKS))
    parser.add_argument("--size", help="the GPT-2 size (04: 124M, as the notebook uses; 05: its MODEL_SIZE)")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.2],
                        help="GPT2_DATA_FRACTION of each run; two give an estimate of the whole run")
    parser.add_argument("--per-unit", type=int, metavar="N",
                        help="05 only: instead of running the notebook, time N training steps and N evaluation batches")
    parser.add_argument("--timeout", type=int, default=3 * 3600, help="seconds any one cell may take")
    args = parser.parse_args(argv)
    name, default_size = NOTEBOOKS[args.notebook]
    size = args.size or default_size
    if args.notebook == "04" and size != "124M":
        parser.error("04 fine-tunes GPT-2 124M; --size does not change that")
    if any(not 0 < fraction <= 1 for fraction in args.fractions):
        parser.error("each fraction must be in (0, 1]")
    models_dir = OUTPUT_DIR / "full_size" / "stand-in"
    write_stand_in(size, models_dir)
    if args.per_unit:
        if args.notebook != "05":
            parser.error("--per-unit is for 05")
        result = per_unit_costs_05(size, models_dir, args.per_unit)
        path = OUTPUT_DIR / f"full_size_05_{size}_per_unit.json"
        path.write_text(json.dumps(result, indent=1))
        print(f"wrote {path}")
        return
    runs = []
    for fraction in args.fractions:
        print(f"{name}, {size}, fraction {fraction:g}:", flush=True)
        runs.append(run_notebook(name, size, fraction, models_dir, args.timeout))
    rows = estimate(runs) if len(runs) >= 2 else []
    text = report(name, size, runs, rows)
    print(text)
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUTPUT_DIR / f"full_size_{args.notebook}_{size}.json"
    path.write_text(json.dumps({"runs": runs, "estimate": rows, "report": text}, indent=1))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    time_notebook_at_full_size()
