"""GPT-2 from the command line, on top of the series' code: pretrain, generate, classify, download.

    gpt2 pretrain --out-dir outputs/pretrain             # 02's improved loop on a text file
    torchrun --standalone --nproc_per_node 8 -m gpt2_support pretrain ...  # the same, one process per GPU (DDP)
    gpt2 generate --checkpoint outputs/pretrain/best.pt --prompt "Every effort moves you"
    gpt2 generate --openai 124M --prompt "..." --temperature 0.8 --top-k 40
    gpt2 classify --checkpoint outputs/04_finetune_classify/spam_classifier.pt "You won!"
    gpt2 download 124M                                   # OpenAI's weights, verified, into models/gpt2

`python -m gpt2_support` is the same command. Every command has --help. Nothing here is taught: each
step calls what a notebook defines (imported from gpt2_from_scratch, with the section that explains it),
so the notebooks stay the one place the code is written. pretrain writes only into --out-dir; generate
--openai and download write OpenAI's weights into --models-dir (as 03 does); nothing else is written,
but for the tokenizer cache that every notebook shares (.cache/tiktoken/ in the repository). Bad input
stops with one line and exit status 2.

This module reads the command line and runs generate, classify and download; pretrain's work is in
gpt2_support/cli_pretrain.py.
"""

import argparse
import math
import os
import sys
from pathlib import Path

# The repository this package lies in (installed editable, from a clone): its data/, models/ and .cache/.
REPOSITORY = Path(__file__).resolve().parents[1]
DEFAULT_TEXT = REPOSITORY / "data" / "the-verdict.txt"

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


# pretrain's options for the fields of 02's TrainingSettings (the loop's settings, section 6): field -> (option,
# argparse's keywords). TrainingSettings says which of them --resume must repeat; the checkpoint paths come from
# --out-dir. Where TrainingSettings has a default, the option has the same (tests/test_cli.py checks).
TRAINING_OPTIONS = {
    "num_epochs": ("--epochs", dict(type=positive_int, default=10, help="passes over the text (default: %(default)s)")),
    "peak_lr": ("--lr", dict(type=positive, default=4e-4, help="peak learning rate (default: %(default)s)")),
    "warmup_fraction": ("--warmup-fraction", dict(type=non_negative, default=0.2,
                                                  help="share of steps to warm up (default: %(default)s)")),
    "accumulation_steps": ("--accumulation-steps", dict(type=positive_int, default=1,
                                                        help="batches per optimizer step (default: %(default)s)")),
    "clip_norm": ("--clip-norm", dict(type=positive, default=1.0,
                                      help="largest gradient norm, after the warmup (default: %(default)s)")),
    "eval_freq": ("--eval-freq", dict(type=positive_int, default=5,
                                      help="evaluate every N steps (default: %(default)s)")),
    "eval_iter": ("--eval-iter", dict(type=positive_int, default=5,
                                      help="batches per evaluation (default: %(default)s)")),
    "start_context": ("--start-context", dict(default="Every effort moves you", help="prompt of each epoch's sample")),
    "precision": ("--precision", dict(choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                                      help="auto: bf16 where the device computes it natively (02, section 4)")),
    "stop_after_epoch": ("--stop-after-epoch", dict(type=int,
                                                    help="stop after this epoch (from 0), as if interrupted")),
}


def option_name(option):
    """The attribute argparse gives an option: --accumulation-steps -> accumulation_steps."""
    return option.lstrip("-").replace("-", "_")


def add_pretrain_command(commands):
    pretrain = commands.add_parser(
        "pretrain", help="train a GPTModel on a UTF-8 text file with 02's improved loop",
        description="Train a GPTModel from scratch on a UTF-8 text file with 02's improved loop (warmup, cosine "
                    "decay, clipping, gradient accumulation), on one process or, under torchrun, on many "
                    "(distributed data parallel: 02, section 10; torchrun ... -m gpt2_support pretrain). Writes "
                    "run.json (the options), last.pt (every epoch, for --resume) and best.pt (each with a .sha256 "
                    "beside it) and history.json into --out-dir, and nothing elsewhere. The model is 01's preset "
                    "with GPT-2's initialisation.")
    pretrain.add_argument("--text", type=Path, default=DEFAULT_TEXT,
                          help="UTF-8 text to train on (default: %(default)s)")
    pretrain.add_argument("--out-dir", type=Path, required=True,
                          help="folder for checkpoints and history (on a filesystem every machine shares, "
                               "when torchrun spans several)")
    pretrain.add_argument("--resume", action="store_true",
                          help="continue from OUT_DIR/last.pt, with the same options and number of processes")
    pretrain.add_argument("--overwrite", action="store_true",
                          help="start afresh in an OUT_DIR that holds files: the earlier run's (run.json, last.pt, "
                               "best.pt, history.json, their .sha256) are deleted first, other files kept")
    pretrain.add_argument("--preset", default="124M",
                          help="01's model sizes: tiny, 124M, 355M, 774M, 1558M (default: 124M)")
    pretrain.add_argument("--context-length", type=positive_int, default=256,
                          help="tokens per window (default: 256, as in 02)")
    pretrain.add_argument("--emb-dim", type=positive_int, help="override the preset's embedding width")
    pretrain.add_argument("--layers", type=positive_int, help="override the preset's number of blocks")
    pretrain.add_argument("--heads", type=positive_int, help="override the preset's attention heads")
    pretrain.add_argument("--drop-rate", type=non_negative, default=0.1, help="dropout (default: 0.1)")
    pretrain.add_argument("--batch-size", type=positive_int, default=2,
                          help="windows per batch and process (default: 2)")
    pretrain.add_argument("--weight-decay", type=non_negative, default=0.1,
                          help="AdamW weight decay of the weight matrices and embeddings; biases and layer norms "
                               "are not decayed (default: 0.1)")
    pretrain.add_argument("--val-fraction", type=fraction, default=0.1,
                          help="share of the text held out (default: 0.1)")
    for option, keywords in TRAINING_OPTIONS.values():
        pretrain.add_argument(option, **keywords)
    pretrain.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                          help="auto: a GPU where there is one (under torchrun: NCCL, one GPU per process), "
                               "else the CPU (under torchrun: gloo)")
    pretrain.add_argument("--seed", type=int, default=123, help="random seed (default: 123)")
    pretrain.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_generate_command(commands):
    generate = commands.add_parser(
        "generate", help="continue a prompt, from a checkpoint or from OpenAI's weights",
        description="Continue a prompt with 02's generate (key/value cache, greedy unless --temperature > 0), "
                    "from a checkpoint saved by 02's save_checkpoint (pretrain's best.pt or last.pt) or from "
                    "OpenAI's GPT-2 weights (downloaded and verified by gpt_download, as in 03).")
    source = generate.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="a checkpoint written by save_checkpoint")
    source.add_argument("--openai", metavar="SIZE", help="OpenAI's weights: 124M, 355M, 774M or 1558M")
    add_weights_options(generate)
    generate.add_argument("--prompt", required=True, help="the text to continue")
    generate.add_argument("--max-new-tokens", type=positive_int, default=50, help="default: 50")
    generate.add_argument("--temperature", type=non_negative, default=0.0, help="0 (default) is greedy")
    generate.add_argument("--top-k", type=positive_int, help="sample from the k most likely tokens")
    generate.add_argument("--top-p", type=probability, help="sample from the smallest set holding this probability")
    generate.add_argument("--seed", type=int, help="make sampling repeatable")
    generate.add_argument("--no-eos", action="store_true", help="do not stop at <|endoftext|>")


def add_weights_options(parser):
    """Where OpenAI's weights are kept and where they come from (generate --openai, download)."""
    parser.add_argument("--models-dir", type=Path,
                        default=Path(os.environ.get("GPT2_MODELS_DIR", REPOSITORY / "models" / "gpt2")),
                        help="where OpenAI's weights are kept (default: $GPT2_MODELS_DIR, else the repository's "
                             "models/gpt2, which 03-05 share)")
    parser.add_argument("--source", choices=("openai", "huggingface"),
                        help="where OpenAI's weights come from (default: $GPT2_WEIGHTS_SOURCE, else openai)")


def build_parser():
    parser = argparse.ArgumentParser(prog="gpt2", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{pretrain,generate,classify,download}")
    add_pretrain_command(commands)
    add_generate_command(commands)

    classify = commands.add_parser(
        "classify", help="classify a message with 04's spam classifier",
        description="Classify messages with a classifier saved by 04 (spam_classifier.pt): prints the label "
                    "and its probability for each message.")
    classify.add_argument("--checkpoint", type=Path, required=True, help="the classifier saved by 04")
    classify.add_argument("messages", nargs="+", help="the message(s) to classify")

    download = commands.add_parser(
        "download", help="download and verify OpenAI's GPT-2 weights",
        description="Download GPT-2's published weights of one size and verify every file, as 03 does "
                    "(gpt_download.ensure_gpt2_files): OpenAI's TensorFlow checkpoint files, or the Hugging Face "
                    "Hub's safetensors copy. Files already there and verified are not downloaded again.")
    download.add_argument("size", metavar="SIZE", help="124M, 355M, 774M or 1558M")
    add_weights_options(download)
    return parser


def main(argv=None):
    """Run one command (argv: the arguments after `gpt2`; default: the command line's); its exit status."""
    from gpt2_support.files import DownloadError

    arguments = build_parser().parse_args(argv)
    if not (REPOSITORY / "data").is_dir():  # a copy installed without its clone (pip install . elsewhere)
        print(f"gpt2 {arguments.command}: error: {REPOSITORY / 'data'} does not exist: gpt2 runs from a clone of "
              "the repository, installed editable there (pip install -r requirements.txt)", file=sys.stderr)
        return 2
    try:
        if arguments.command == "pretrain":
            from gpt2_support.cli_pretrain import run_pretrain

            return run_pretrain(arguments)
        command = {"generate": run_generate, "classify": run_classify, "download": run_download}[arguments.command]
        return command(arguments)
    # A failed download: the downloader's message gives what each server said and how to place the files by
    # hand, one line each; printed as it is.
    except DownloadError as error:
        print(f"gpt2 {arguments.command}: error: {error}", file=sys.stderr)
        return 2
    # What the series' own functions raise for bad input: a missing or damaged file, or one that holds code
    # (load_checkpoint, the tokenizer), a text too short for one window, a checkpoint that cannot be
    # resumed. Their messages name the file and the fix; printed on one line, whatever they hold.
    except (UsageError, FileNotFoundError, ValueError) as error:
        print(f"gpt2 {arguments.command}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    # What the system refuses: a folder that cannot be written (permissions, a read-only disk), a full disk.
    except OSError as error:
        where = error.filename if error.filename is not None else "a file"
        print(f"gpt2 {arguments.command}: error: cannot write or read {where}: "
              f"{error.strerror or error}; choose a folder you can write to (--out-dir) or free some space",
              file=sys.stderr)
        return 2


def repository_tokenizer():
    """GPT-2's tokenizer from the repository's files, whatever the working directory (01, section 1)."""
    from gpt2_from_scratch.architecture import load_gpt2_tokenizer

    return load_gpt2_tokenizer(REPOSITORY / "data" / "gpt2-tokenizer", REPOSITORY / ".cache" / "tiktoken")


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


def checked_size(size, option):
    """`size` if gpt_download knows it (124M, ...); else a UsageError naming `option`."""
    from gpt2_support.catalogue import MODEL_SIZES

    if size not in MODEL_SIZES:
        raise UsageError(f"{option} must be one of {', '.join(MODEL_SIZES)}; got {size!r}")
    return size


def model_for_generation(arguments, device, tokenizer):
    from gpt2_from_scratch.pretraining import model_from_checkpoint  # 02, section 9

    if arguments.checkpoint is not None:
        try:
            return model_from_checkpoint(checked_checkpoint(arguments.checkpoint, device, tokenizer), device)
        except (KeyError, TypeError, RuntimeError) as error:  # weights of another model (04's classifier)
            raise UsageError(f"--checkpoint {arguments.checkpoint} is not a GPTModel checkpoint of 02's "
                             f"save_checkpoint ({type(error).__name__}: {error})") from None
    from gpt_download import download_and_load_gpt2
    from gpt2_from_scratch.weights import gpt_for_checkpoint, load_weights_into_gpt  # 03, section 5

    size = checked_size(arguments.openai, "--openai")
    hparams, params = download_and_load_gpt2(size, arguments.models_dir, source=arguments.source)
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


# ---- download --------------------------------------------------------------------------------------

def run_download(arguments):
    """What `python gpt_download.py SIZE` did: fetch what is missing or wrong, verify every file."""
    from gpt2_support.catalogue import weights_source
    from gpt2_support.ensure import ensure_gpt2_files

    size = checked_size(arguments.size, "SIZE")
    folder = ensure_gpt2_files(size, arguments.models_dir, source=arguments.source)
    print(f"GPT-2 {size}: the {weights_source(arguments.source)} files verified in {folder}/")
    return 0
