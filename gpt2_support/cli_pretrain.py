"""`gpt2 pretrain`: 02's improved loop on a text file, in one process or under torchrun, into --out-dir.

The options are read by gpt2_support/cli.py (build_parser); this module checks them against the folder,
builds the model, the data and 02's TrainingSettings from them, and trains.
"""

import json
import os

from gpt2_support.cli import TRAINING_OPTIONS, UsageError, option_name, repository_tokenizer
from gpt2_support.files import atomic_write_path  # write beside, then rename

RUN_FILE = "run.json"  # pretrain's options, kept in --out-dir so that --resume can check them
# What pretrain writes into --out-dir (each .pt with a .sha256 beside it), in the order --overwrite deletes them.
RUN_OUTPUTS = ("last.pt", RUN_FILE, "best.pt", "history.json")
# Options besides the loop's settings that --resume must be given unchanged (the model, the data, the optimizer,
# the seed and the device). Of the loop's settings, those that TrainingSettings marks "must match" (the schedule)
# join them; the others (how often to evaluate, progress) may change.
RESUMED_UNCHANGED = ("text", "preset", "context_length", "emb_dim", "layers", "heads", "drop_rate", "batch_size",
                     "weight_decay", "val_fraction", "seed", "device")


def model_config(arguments):
    """The GPTConfig the options describe: a preset of 01 (tiny: the smoke profile's model) with overrides."""
    from dataclasses import asdict

    from gpt2_from_scratch.architecture import GPT2_PRESETS, TINY_CONFIG, GPTConfig  # 01, sections 4.5 and 5

    if arguments.preset != "tiny" and arguments.preset not in GPT2_PRESETS:
        raise UsageError(f"--preset must be tiny or one of {', '.join(GPT2_PRESETS)}; got {arguments.preset!r}")
    fields = asdict(TINY_CONFIG) if arguments.preset == "tiny" else asdict(GPTConfig.from_preset(arguments.preset))
    overrides = {"context_length": arguments.context_length, "drop_rate": arguments.drop_rate,
                 "emb_dim": arguments.emb_dim, "n_layers": arguments.layers, "n_heads": arguments.heads}
    try:
        return GPTConfig(**fields | {name: value for name, value in overrides.items() if value is not None})
    except ValueError as error:
        raise UsageError(str(error)) from None


def training_settings(arguments, precision):
    """02's TrainingSettings (section 6) from the options: each of TRAINING_OPTIONS, the precision resolved
    ("auto" is the device's), and the checkpoints in --out-dir."""
    from gpt2_from_scratch.pretraining import TrainingSettings

    settings = {name: getattr(arguments, option_name(option)) for name, (option, _) in TRAINING_OPTIONS.items()}
    return TrainingSettings(**settings | dict(precision=precision, checkpoint_path=arguments.out_dir / "last.pt",
                                              best_checkpoint_path=arguments.out_dir / "best.pt"))


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


def resumed_unchanged():
    """The options that --resume must repeat: RESUMED_UNCHANGED and the loop's settings that must match."""
    from gpt2_from_scratch.pretraining import TrainingSettings

    settings = [option_name(TRAINING_OPTIONS[name][0]) for name in TrainingSettings.must_match()]
    return (*RESUMED_UNCHANGED, *settings)


def run_options(arguments, processes):
    """What run.json records: the options that --resume must repeat, and the number of processes."""
    options = {name: getattr(arguments, name) for name in resumed_unchanged()}
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
    from torch.nn.parallel import DistributedDataParallel

    from gpt2_from_scratch.architecture import GPTModel  # 01, section 5
    from gpt2_from_scratch.pretraining import (is_main_process, load_checkpoint, make_optimizer, pick_precision,
                                               reuse_freed_memory, setup_distributed, train_model_improved,
                                               with_fast_dropout)  # 02, sections 4, 6, 9, 10 and the appendices

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
        settings = training_settings(arguments, pick_precision(device) if arguments.precision == "auto"
                                     else arguments.precision)
        reuse_freed_memory()  # 02's appendix: each step reuses the memory the last one freed (glibc; else nothing)
        torch.manual_seed(arguments.seed)  # the same initial weights in every process
        tokenizer = repository_tokenizer()
        train_loader, val_loader = training_data(arguments, text, tokenizer, config, distributed)
        model = with_fast_dropout(GPTModel(config)).to(device)  # 02's appendix: the same model, a cheaper CPU dropout draw
        optimizer = make_optimizer(model, lr=settings.peak_lr, weight_decay=arguments.weight_decay)
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
            print(f"{config}\n{processes} process(es) on {device}, {settings.precision}; a step is {processes} × "
                  f"{settings.accumulation_steps} batches of {arguments.batch_size} windows", flush=True)
        with quiet_if(arguments.no_progress):
            history = train_model_improved(model, train_loader, val_loader, optimizer, device, settings, tokenizer,
                                           resume_from=resume_from)
        if is_main_process():
            with atomic_write_path(arguments.out_dir / "history.json") as partial:
                partial.write_text(json.dumps(history, indent=1) + "\n", encoding="utf-8")
            print(f"wrote {settings.checkpoint_path}, {settings.best_checkpoint_path} and "
                  f"{arguments.out_dir / 'history.json'}")
    finally:
        if distributed:
            dist.destroy_process_group()
    return 0


def quiet_if(quiet):
    """Silence the progress bar and samples (stdout) when asked; otherwise change nothing."""
    import contextlib
    import io

    return contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext()
