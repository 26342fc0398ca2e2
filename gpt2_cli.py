"""GPT-2 from the command line, on top of the series' code: pretrain, generate, classify.

    python gpt2_cli.py pretrain --out-dir outputs/pretrain             # 02's improved loop on a text file
    torchrun --standalone --nproc_per_node 8 gpt2_cli.py pretrain ...  # the same, one process per GPU (DDP)
    python gpt2_cli.py generate --checkpoint outputs/pretrain/best.pt --prompt "Every effort moves you"
    python gpt2_cli.py generate --openai 124M --prompt "..." --temperature 0.8 --top-k 40
    python gpt2_cli.py classify --checkpoint outputs/04_finetune_classify/spam_classifier.pt "You won!"

Every command has --help. Nothing here is taught: each step calls what a notebook defines (imported from
gpt2_from_scratch, with the section that explains it), so the notebooks stay the one place the code is
written. pretrain writes only into --out-dir; generate --openai downloads OpenAI's weights into
--models-dir (as 03 does); nothing else is written, but for the tokenizer cache that every notebook
shares (.cache/tiktoken/ in the repository). Bad input stops with one line and exit status 2.
"""

import argparse
import json
import math
import os
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent
sys.path.insert(0, str(REPOSITORY))  # gpt2_from_scratch and gpt_download, from any working directory

DEFAULT_TEXT = REPOSITORY / "data" / "the-verdict.txt"
RUN_FILE = "run.json"  # pretrain's options, kept in --out-dir so that --resume can check them
# What pretrain writes into --out-dir (each .pt with a .sha256 beside it), in the order --overwrite deletes them.
RUN_OUTPUTS = ("last.pt", RUN_FILE, "best.pt", "history.json")
# Options that --resume must be given unchanged (the model, the data, the schedule); the others (how
# often to evaluate, progress) may change.
RESUMED_UNCHANGED = ("text", "preset", "context_length", "emb_dim", "layers", "heads", "drop_rate", "epochs",
                     "batch_size", "accumulation_steps", "lr", "weight_decay", "warmup_fraction", "val_fraction",
                     "seed", "device")


# Each command imports what it needs inside its function, so that --help answers at once (torch takes
# seconds to import).


class UsageError(Exception):
    """A bad option or input: printed as one line, without a traceback, exit status 2."""


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def fraction(text):
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def non_negative(text):
    value = float(text)
    if not value >= 0 or math.isinf(value):  # written so that NaN fails too
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def positive(text):
    value = non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def probability(text):
    value = positive(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value}")
    return value


def build_parser():
    parser = argparse.ArgumentParser(prog="gpt2_cli.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{pretrain,generate,classify}")

    pretrain = commands.add_parser(
        "pretrain", help="train a GPTModel on a UTF-8 text file with 02's improved loop",
        description="Train a GPTModel from scratch on a UTF-8 text file with 02's improved loop (warmup, cosine "
                    "decay, clipping, gradient accumulation), on one process or, under torchrun, on many "
                    "(distributed data parallel: 02, section 10). Writes run.json (the options), last.pt (every "
                    "epoch, for --resume) and best.pt (each with a .sha256 beside it) and history.json into "
                    "--out-dir, and nothing elsewhere. The model is 01's preset with GPT-2's initialisation.")
    pretrain.add_argument("--text", type=Path, default=DEFAULT_TEXT, help="UTF-8 text to train on (default: %(default)s)")
    pretrain.add_argument("--out-dir", type=Path, required=True,
                          help="folder for checkpoints and history (on a filesystem every machine shares, "
                               "when torchrun spans several)")
    pretrain.add_argument("--resume", action="store_true",
                          help="continue from OUT_DIR/last.pt, with the same options and number of processes")
    pretrain.add_argument("--overwrite", action="store_true",
                          help="start afresh in an OUT_DIR that holds files: the earlier run's (run.json, last.pt, "
                               "best.pt, history.json, their .sha256) are deleted first, other files kept")
    pretrain.add_argument("--preset", default="124M", help="01's model sizes: tiny, 124M, 355M, 774M, 1558M (default: 124M)")
    pretrain.add_argument("--context-length", type=positive_int, default=256, help="tokens per window (default: 256, as in 02)")
    pretrain.add_argument("--emb-dim", type=positive_int, help="override the preset's embedding width")
    pretrain.add_argument("--layers", type=positive_int, help="override the preset's number of blocks")
    pretrain.add_argument("--heads", type=positive_int, help="override the preset's attention heads")
    pretrain.add_argument("--drop-rate", type=non_negative, default=0.1, help="dropout (default: 0.1)")
    pretrain.add_argument("--epochs", type=positive_int, default=10, help="passes over the text (default: 10)")
    pretrain.add_argument("--stop-after-epoch", type=int, help="stop after this epoch (from 0), as if interrupted")
    pretrain.add_argument("--batch-size", type=positive_int, default=2, help="windows per batch and process (default: 2)")
    pretrain.add_argument("--accumulation-steps", type=positive_int, default=1,
                          help="batches per optimizer step (default: 1)")
    pretrain.add_argument("--lr", type=positive, default=4e-4, help="peak learning rate (default: 4e-4)")
    pretrain.add_argument("--weight-decay", type=non_negative, default=0.1, help="AdamW weight decay (default: 0.1)")
    pretrain.add_argument("--warmup-fraction", type=non_negative, default=0.2,
                          help="share of steps to warm up (default: 0.2)")
    pretrain.add_argument("--eval-freq", type=positive_int, default=5, help="evaluate every N steps (default: 5)")
    pretrain.add_argument("--eval-iter", type=positive_int, default=5, help="batches per evaluation (default: 5)")
    pretrain.add_argument("--val-fraction", type=fraction, default=0.1, help="share of the text held out (default: 0.1)")
    pretrain.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                          help="auto: bf16 where the device computes it natively (02, section 4)")
    pretrain.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                          help="auto: a GPU where there is one (under torchrun: NCCL, one GPU per process), "
                               "else the CPU (under torchrun: gloo)")
    pretrain.add_argument("--seed", type=int, default=123, help="random seed (default: 123)")
    pretrain.add_argument("--start-context", default="Every effort moves you", help="prompt of each epoch's sample")
    pretrain.add_argument("--no-progress", action="store_true", help="no progress bar")

    generate = commands.add_parser(
        "generate", help="continue a prompt, from a checkpoint or from OpenAI's weights",
        description="Continue a prompt with 02's generate (key/value cache, greedy unless --temperature > 0), "
                    "from a checkpoint saved by 02's save_checkpoint (pretrain's best.pt or last.pt) or from "
                    "OpenAI's GPT-2 weights (downloaded and verified by gpt_download.py, as in 03).")
    source = generate.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="a checkpoint written by save_checkpoint")
    source.add_argument("--openai", metavar="SIZE", help="OpenAI's weights: 124M, 355M, 774M or 1558M")
    generate.add_argument("--models-dir", type=Path,
                          default=Path(os.environ.get("GPT2_MODELS_DIR", REPOSITORY / "models" / "gpt2")),
                          help="where OpenAI's weights are kept (default: $GPT2_MODELS_DIR, else the repository's "
                               "models/gpt2, which 03-05 share)")
    generate.add_argument("--source", choices=("openai", "huggingface"),
                          help="where OpenAI's weights come from (default: $GPT2_WEIGHTS_SOURCE, else openai)")
    generate.add_argument("--prompt", required=True, help="the text to continue")
    generate.add_argument("--max-new-tokens", type=positive_int, default=50, help="default: 50")
    generate.add_argument("--temperature", type=non_negative, default=0.0, help="0 (default) is greedy")
    generate.add_argument("--top-k", type=positive_int, help="sample from the k most likely tokens")
    generate.add_argument("--top-p", type=probability, help="sample from the smallest set holding this probability")
    generate.add_argument("--seed", type=int, help="make sampling repeatable")
    generate.add_argument("--no-eos", action="store_true", help="do not stop at <|endoftext|>")

    classify = commands.add_parser(
        "classify", help="classify a message with 04's spam classifier",
        description="Classify messages with a classifier saved by 04 (spam_classifier.pt): prints the label "
                    "and its probability for each message.")
    classify.add_argument("--checkpoint", type=Path, required=True, help="the classifier saved by 04")
    classify.add_argument("messages", nargs="+", help="the message(s) to classify")
    return parser


def run_cli(argv=None):
    from gpt_download import DownloadError

    arguments = build_parser().parse_args(argv)
    try:
        command = {"pretrain": run_pretrain, "generate": run_generate, "classify": run_classify}[arguments.command]
        return command(arguments)
    # What the series' own functions raise for bad input: a missing or damaged file, or one that holds code
    # (load_checkpoint, the tokenizer), a text too short for one window, a failed download, a checkpoint that
    # cannot be resumed. Their messages name the file and the fix; printed on one line, whatever they hold.
    except (UsageError, FileNotFoundError, ValueError, DownloadError) as error:
        print(f"gpt2_cli.py {arguments.command}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    # What the system refuses: a folder that cannot be written (permissions, a read-only disk), a full disk.
    except OSError as error:
        where = error.filename if error.filename is not None else "a file"
        print(f"gpt2_cli.py {arguments.command}: error: cannot write or read {where}: "
              f"{error.strerror or error}; choose a folder you can write to (--out-dir) or free some space",
              file=sys.stderr)
        return 2


def repository_tokenizer():
    """GPT-2's tokenizer from the repository's files, whatever the working directory (01, section 1)."""
    from gpt2_from_scratch.architecture import load_gpt2_tokenizer

    return load_gpt2_tokenizer(REPOSITORY / "data" / "gpt2-tokenizer", REPOSITORY / ".cache" / "tiktoken")


# ---- pretrain --------------------------------------------------------------------------------------

def model_config(arguments):
    """The GPTConfig the options describe: a preset of 01 (tiny: the smoke profile's model) with overrides."""
    from gpt2_from_scratch.architecture import GPT2_PRESETS, TINY_CONFIG, GPTConfig  # 01, sections 4.5 and 5
    from dataclasses import asdict

    if arguments.preset != "tiny" and arguments.preset not in GPT2_PRESETS:
        raise UsageError(f"--preset must be tiny or one of {', '.join(GPT2_PRESETS)}; got {arguments.preset!r}")
    fields = asdict(TINY_CONFIG) if arguments.preset == "tiny" else asdict(GPTConfig.from_preset(arguments.preset))
    overrides = {"context_length": arguments.context_length, "drop_rate": arguments.drop_rate,
                 "emb_dim": arguments.emb_dim, "n_layers": arguments.layers, "n_heads": arguments.heads}
    try:
        return GPTConfig(**fields | {name: value for name, value in overrides.items() if value is not None})
    except ValueError as error:
        raise UsageError(str(error)) from None


def read_text(path):
    if not path.is_file():
        raise UsageError(f"--text {path}: no such file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise UsageError(f"--text {path} is not UTF-8 text ({error}); convert it, e.g. iconv -t UTF-8") from None


def training_data(arguments, text, tokenizer, config, distributed):
    """(training loader, validation loader): 02's windows (stride = context), the last val_fraction held out.
    In a distributed run each process gets its share of the training windows (02, section 10)."""
    from gpt2_from_scratch.architecture import create_dataloader  # 01, section 1
    from gpt2_from_scratch.pretraining import distributed_loader  # 02, section 10

    split = int((1 - arguments.val_fraction) * len(text))
    windows = dict(max_length=config.context_length, stride=config.context_length)
    try:
        train_loader = create_dataloader(text[:split], tokenizer, batch_size=arguments.batch_size, shuffle=True,
                                         drop_last=True, **windows)
        val_loader = create_dataloader(text[split:], tokenizer, batch_size=arguments.batch_size, shuffle=False,
                                       drop_last=False, **windows)
    except ValueError as error:  # 01's windows: too few tokens for one
        raise UsageError(f"--text {arguments.text} is too short for --context-length {config.context_length} "
                         f"({error})") from None
    if distributed:
        train_loader = distributed_loader(train_loader.dataset, arguments.batch_size, seed=arguments.seed)
    if len(train_loader) < arguments.accumulation_steps or len(val_loader) == 0:
        raise UsageError(f"--text {arguments.text} is too short: {len(train_loader)} training and {len(val_loader)} "
                         f"validation batches of {arguments.batch_size} windows of {config.context_length} tokens "
                         "(per process); use a longer text, a shorter --context-length or a smaller --batch-size")
    return train_loader, val_loader


def run_options(arguments, processes):
    """What run.json records: the options that --resume must repeat, and the number of processes."""
    options = {name: getattr(arguments, name) for name in RESUMED_UNCHANGED}
    return json.loads(json.dumps(options | {"processes": processes}, default=str))  # Paths as strings


def check_out_dir(arguments, processes):
    """Refuse an --out-dir that is or lies under a file, to start in a folder that holds any file without
    --overwrite (an earlier run may have left only some of its files), or to resume with other options."""
    out_dir, last = arguments.out_dir, arguments.out_dir / "last.pt"
    nearest = next(folder for folder in (out_dir, *out_dir.parents) if folder.exists())
    if not nearest.is_dir():
        raise UsageError(f"--out-dir {out_dir}: {nearest} is a file, not a folder; choose another --out-dir")
    if not arguments.resume:
        held = sorted(path.name for path in out_dir.iterdir()) if out_dir.is_dir() else []
        if held and not arguments.overwrite:
            raise UsageError(f"--out-dir {out_dir} holds {', '.join(held[:6])}{', ...' if len(held) > 6 else ''} "
                             "already: add --resume to continue its run, --overwrite to start afresh (which deletes "
                             "the earlier run's files first), or choose an empty folder")
        return
    if not last.is_file():
        raise UsageError(f"--resume: {last} does not exist (no run there finished an epoch): start afresh, "
                         "with --overwrite if the folder holds files")
    try:
        recorded = json.loads((out_dir / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise UsageError(f"--resume: {out_dir / RUN_FILE} is missing or unreadable, so the run's options "
                         "are unknown; start afresh with --overwrite") from None
    now = run_options(arguments, processes)
    changed = [f"--{name.replace('_', '-')} {recorded.get(name)} -> {now[name]}" if name != "processes" else
               f"{recorded.get(name)} -> {now[name]} processes" for name in now if recorded.get(name) != now[name]]
    if changed:
        raise UsageError("--resume needs the options and number of processes the run started with; changed: "
                         + "; ".join(changed))


def delete_earlier_run(out_dir):
    """--overwrite: delete the files an earlier run wrote into out_dir (and any it left half-written), before the
    new run writes its run.json. last.pt goes first: at no moment does the folder hold the new run.json beside
    the old last.pt, which --resume would continue (or fail on) after an interruption. (A run id in run.json and
    the checkpoints would catch that mix too, but the checkpoints are written by 02's loop, which knows no run
    id; deleting first makes the mix impossible with the files as they are.)"""
    import glob

    for name in RUN_OUTPUTS:
        for path in (out_dir / name, out_dir / f"{name}.sha256", *out_dir.glob(f"{glob.escape(name)}.*.partial")):
            path.unlink(missing_ok=True)


def run_pretrain(arguments):
    import torch
    import torch.distributed as dist

    from gpt2_from_scratch.architecture import GPTModel, atomic_write_path  # 01, sections 5 and 1
    from gpt2_from_scratch.pretraining import (is_main_process, load_checkpoint, make_optimizer, pick_precision,
                                               setup_distributed, train_model_improved,
                                               with_fast_dropout)  # 02, sections 4, 6, 9 and 10
    from torch.nn.parallel import DistributedDataParallel

    if arguments.stop_after_epoch is not None and not 0 <= arguments.stop_after_epoch < arguments.epochs:
        raise UsageError(f"--stop-after-epoch must be from 0 to {arguments.epochs - 1} (--epochs {arguments.epochs}); "
                         f"got {arguments.stop_after_epoch}")
    if arguments.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda, but PyTorch sees no GPU here (torch.cuda.is_available() is False)")
    config = model_config(arguments)
    use_cuda = torch.cuda.is_available() if arguments.device == "auto" else arguments.device == "cuda"
    processes = int(os.environ.get("WORLD_SIZE", "1"))  # torchrun's; checked before joining the others
    check_out_dir(arguments, processes)
    text = read_text(arguments.text)  # a missing or non-UTF-8 file fails now, before anything starts
    device = setup_distributed(use_cuda)  # None unless started by torchrun
    distributed = device is not None
    try:
        if device is None:
            device = torch.device("cuda" if use_cuda else "cpu")
        precision = pick_precision(device) if arguments.precision == "auto" else arguments.precision
        torch.manual_seed(arguments.seed)  # the same initial weights in every process
        tokenizer = repository_tokenizer()
        train_loader, val_loader = training_data(arguments, text, tokenizer, config, distributed)
        model = with_fast_dropout(GPTModel(config)).to(device)  # 02, section 4: the same model, cheaper dropout
        optimizer = make_optimizer(model, lr=arguments.lr, weight_decay=arguments.weight_decay)
        if distributed:
            model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
            torch.manual_seed(arguments.seed + dist.get_rank())  # each process its own dropout masks
        resume_from = load_checkpoint(arguments.out_dir / "last.pt", device) if arguments.resume else None
        if is_main_process():
            arguments.out_dir.mkdir(parents=True, exist_ok=True)
            if arguments.overwrite and not arguments.resume:
                delete_earlier_run(arguments.out_dir)
            with atomic_write_path(arguments.out_dir / RUN_FILE) as partial:
                partial.write_text(json.dumps(run_options(arguments, processes), indent=1) + "\n", encoding="utf-8")
            print(f"{config}\n{processes} process(es) on {device}, {precision}; a step is {processes} × "
                  f"{arguments.accumulation_steps} batches of {arguments.batch_size} windows", flush=True)
        with contextlib_redirect(arguments.no_progress):
            history = train_model_improved(
                model, train_loader, val_loader, optimizer, device, arguments.epochs, arguments.eval_freq,
                arguments.eval_iter, arguments.start_context, tokenizer, peak_lr=arguments.lr,
                warmup_fraction=arguments.warmup_fraction, best_checkpoint_path=arguments.out_dir / "best.pt",
                precision=precision, checkpoint_path=arguments.out_dir / "last.pt", resume_from=resume_from,
                stop_after_epoch=arguments.stop_after_epoch, accumulation_steps=arguments.accumulation_steps)
        if is_main_process():
            with atomic_write_path(arguments.out_dir / "history.json") as partial:
                partial.write_text(json.dumps(history, indent=1) + "\n", encoding="utf-8")
            print(f"wrote {arguments.out_dir / 'last.pt'}, {arguments.out_dir / 'best.pt'} and "
                  f"{arguments.out_dir / 'history.json'}")
    finally:
        if distributed:
            dist.destroy_process_group()
    return 0


def contextlib_redirect(quiet):
    """Silence the progress bar and samples (stdout) when asked; otherwise change nothing."""
    import contextlib
    import io

    return contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext()


# ---- generate --------------------------------------------------------------------------------------

def checked_checkpoint(path, device, tokenizer):
    """02's load_checkpoint (section 9), which refuses, naming the file, one that holds code (unloaded), is
    damaged, or has no valid config and weights; and a model too small for GPT-2's tokenizer, whose ids past
    its vocabulary would index outside its embeddings."""
    from gpt2_from_scratch.pretraining import load_checkpoint  # 02, section 9

    checkpoint = load_checkpoint(path, device)
    vocab_size = checkpoint["config"]["vocab_size"]
    if vocab_size < tokenizer.n_vocab:
        raise UsageError(f"--checkpoint {path} is a model of {vocab_size} tokens, fewer than GPT-2's tokenizer's "
                         f"{tokenizer.n_vocab}: give a checkpoint of a model with GPT-2's vocabulary")
    return checkpoint


def model_for_generation(arguments, device, tokenizer):
    from gpt2_from_scratch.pretraining import model_from_checkpoint  # 02, section 9

    if arguments.checkpoint is not None:
        try:
            return model_from_checkpoint(checked_checkpoint(arguments.checkpoint, device, tokenizer), device)
        except (KeyError, TypeError, RuntimeError) as error:  # weights of another model (04's classifier)
            raise UsageError(f"--checkpoint {arguments.checkpoint} is not a GPTModel checkpoint of 02's "
                             f"save_checkpoint ({type(error).__name__}: {error})") from None
    from gpt_download import MODEL_SIZES, download_and_load_gpt2
    from gpt2_from_scratch.weights import gpt_for_checkpoint, load_weights_into_gpt  # 03, section 5

    if arguments.openai not in MODEL_SIZES:
        raise UsageError(f"--openai must be one of {', '.join(MODEL_SIZES)}; got {arguments.openai!r}")
    hparams, params = download_and_load_gpt2(arguments.openai, arguments.models_dir, source=arguments.source)
    model = gpt_for_checkpoint(hparams)
    load_weights_into_gpt(model, params)
    return model.to(device)


def run_generate(arguments):
    import torch

    from gpt2_from_scratch.pretraining import generate as generate_tokens  # 02, section 8
    from gpt2_from_scratch.pretraining import text_to_token_ids, token_ids_to_text  # 02, section 1

    if not arguments.prompt:  # checked before a model is loaded (or downloaded)
        raise UsageError("--prompt is empty: give some text to continue")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = repository_tokenizer()
    model = model_for_generation(arguments, device, tokenizer).eval()
    eos_id = None if arguments.no_eos else tokenizer.eot_token
    token_ids = generate_tokens(model, text_to_token_ids(arguments.prompt, tokenizer).to(device),
                                arguments.max_new_tokens, temperature=arguments.temperature,
                                top_k=arguments.top_k, top_p=arguments.top_p, eos_id=eos_id, seed=arguments.seed)
    print(token_ids_to_text(token_ids, tokenizer))
    return 0


# ---- classify --------------------------------------------------------------------------------------

def run_classify(arguments):
    import torch

    from gpt2_from_scratch.architecture import GPTModel  # 01, section 5
    from gpt2_from_scratch.classify import classify_text, make_classifier  # 04, sections 3 and 8
    from gpt2_from_scratch.pretraining import config_from_checkpoint  # 02, section 9

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = repository_tokenizer()
    checkpoint = checked_checkpoint(arguments.checkpoint, device, tokenizer)
    labels = checkpoint.get("labels")
    if not (isinstance(labels, (list, tuple)) and len(labels) >= 2 and all(isinstance(l, str) for l in labels)):
        raise UsageError(f"--checkpoint {arguments.checkpoint} has no list of label names: is it the classifier 04 "
                         "saves (spam_classifier.pt)?")
    config = config_from_checkpoint(checkpoint, source=f"--checkpoint {arguments.checkpoint}")
    model = make_classifier(GPTModel(config), num_classes=len(labels))
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError as error:
        raise UsageError(f"--checkpoint {arguments.checkpoint} does not hold a classifier of its config "
                         f"({str(error).splitlines()[0]})") from None
    model.to(device)
    for message in arguments.messages:
        try:
            label, probability = classify_text(message, model, tokenizer, device, labels=tuple(labels))
        except ValueError as error:
            raise UsageError(f"{message!r}: {error}") from None
        print(f"{label}\t{probability:.3f}\t{message}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli())
