"""The command line (gpt2_support/cli.py: the console script `gpt2`, `python -m gpt2_support`): each
command's --help from the command line, one tiny real run of each, and a clear error (exit status 2, no
traceback) for a missing file or a bad option."""

import dataclasses
import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch

from gpt2_from_scratch.architecture import GPTConfig, GPTModel, load_gpt2_tokenizer
from gpt2_from_scratch.classify import classify_text, make_classifier
from gpt2_from_scratch.pretraining import TrainingSettings, content_sha256, save_checkpoint
from gpt2_from_scratch.weights import random_gpt2_params, write_gpt2_weights
from gpt2_support.cli import TRAINING_OPTIONS, main, option_name

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "gpt2_support"]  # what the console script `gpt2` runs
TINY_RUN = ["--device", "cpu", "--preset", "tiny", "--context-length", "16", "--emb-dim", "32", "--layers", "2", "--heads", "2",
            "--batch-size", "2", "--eval-freq", "5", "--eval-iter", "1", "--precision", "fp32", "--no-progress"]


@pytest.mark.parametrize("command, expected", [
    ([], ["pretrain", "generate", "classify", "download"]),
    (["pretrain"], ["--text", "--out-dir", "--resume", "--accumulation-steps", "torchrun"]),
    (["generate"], ["--checkpoint", "--openai", "--temperature", "--top-k", "--top-p", "--seed"]),
    (["classify"], ["--checkpoint", "messages"]),
    (["download"], ["SIZE", "--models-dir", "--source"]),
])
def test_every_command_has_help(command, expected):
    run = subprocess.run([*CLI, *command, "--help"], capture_output=True,
                         text=True, cwd=REPO.parent)  # from another folder: the tool finds its repository
    assert run.returncode == 0, run.stderr
    for word in expected:
        assert word in run.stdout


def test_the_console_script_gpt2_runs_the_command_line(tmp_path):
    script = Path(sysconfig.get_path("scripts")) / ("gpt2.exe" if sys.platform == "win32" else "gpt2")
    assert script.is_file(), f"no console script {script}: install the project (pip install -e .)"
    run = subprocess.run([str(script), "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("usage: gpt2 ") and "{pretrain,generate,classify,download}" in run.stdout


def test_pretrains_options_are_the_loops_settings():
    """Every field of 02's TrainingSettings is an option of pretrain (but the two checkpoint paths, which
    --out-dir gives), with TrainingSettings's default where it has one."""
    settings = {setting.name: setting for setting in dataclasses.fields(TrainingSettings)}
    assert TRAINING_OPTIONS.keys() | {"checkpoint_path", "best_checkpoint_path"} == settings.keys()
    defaults = {name: settings[name].default for name in TRAINING_OPTIONS
                if settings[name].default is not dataclasses.MISSING and name != "precision"}  # precision: auto
    assert {name: TRAINING_OPTIONS[name][1].get("default") for name in defaults} == defaults


@pytest.fixture(scope="module", autouse=True)
def allocator_calls():
    """pretrain runs in this process here: it records its call of 02's reuse_freed_memory instead of changing
    the allocator of the whole test session (tests/test_reuse_freed_memory.py tests the setting itself)."""
    calls = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("gpt2_from_scratch.pretraining.reuse_freed_memory", lambda: calls.append("called") or True)
        yield calls


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "story.txt"
    path.write_text((REPO / "data" / "the-verdict.txt").read_text(encoding="utf-8")[:2000], encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def pretrained(text, tmp_path_factory):
    """One tiny real pretraining run, started in an empty working folder; the folder it wrote into."""
    run = tmp_path_factory.mktemp("run")
    (run / "working").mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(run / "working")
        assert main(["pretrain", "--text", str(text), "--out-dir", str(run / "out"), *TINY_RUN,
                     "--epochs", "2"]) == 0
    return run / "out"


def test_pretrain_keeps_freed_memory_for_reuse(pretrained, allocator_calls):
    assert allocator_calls  # 02's appendix: a training step then reuses what the last one freed


def test_pretrain_writes_its_checkpoints_and_history_into_the_output_folder_only(pretrained):
    assert sorted(path.name for path in pretrained.parent.iterdir()) == ["out", "working"]
    assert list((pretrained.parent / "working").iterdir()) == []  # nothing in the working folder
    assert sorted(path.name for path in pretrained.iterdir()) == [
        "best.pt", "best.pt.sha256", "history.json", "last.pt", "last.pt.sha256", "run.json"]


def test_an_earlier_run_is_neither_overwritten_nor_resumed_with_other_options(pretrained, text, capsys):
    before = (pretrained / "last.pt").read_bytes()
    start = ["pretrain", "--text", str(text), "--out-dir", str(pretrained), *TINY_RUN]
    assert main([*start, "--epochs", "2"]) == 2
    assert "already: add --resume to continue its run, --overwrite to start afresh" in capsys.readouterr().err
    assert main([*start, "--epochs", "3", "--resume"]) == 2
    assert "changed: --epochs 2 -> 3" in capsys.readouterr().err
    assert (pretrained / "last.pt").read_bytes() == before


# Another value for each of the loop's settings that TrainingSettings marks "must match" on resuming.
CHANGED_SETTINGS = {"num_epochs": "3", "peak_lr": "1e-3", "warmup_fraction": "0.5", "accumulation_steps": "2"}


@pytest.mark.parametrize("setting", CHANGED_SETTINGS)
def test_resume_refuses_a_change_of_each_setting_the_loop_says_must_match(setting, pretrained, text, tmp_path, capsys):
    assert set(CHANGED_SETTINGS) == set(TrainingSettings.must_match())  # a new one needs a value here
    out = tmp_path / "out"
    shutil.copytree(pretrained, out)
    before = file_contents(out)
    option = TRAINING_OPTIONS[setting][0]
    recorded = json.loads((out / "run.json").read_text()).get(option_name(option))
    assert main(["pretrain", "--text", str(text), "--out-dir", str(out), *TINY_RUN, "--epochs", "2", "--resume",
                 option, CHANGED_SETTINGS[setting]]) == 2
    now = TRAINING_OPTIONS[setting][1]["type"](CHANGED_SETTINGS[setting])  # as the option reads it
    assert f"changed: {option} {recorded} -> {now}" in capsys.readouterr().err
    assert file_contents(out) == before


def test_resume_accepts_other_values_of_the_settings_that_may_change(pretrained, text, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(pretrained, out)
    last = (out / "last.pt").read_bytes()
    # The run finished its 2 epochs: resuming it trains no further, and writes its history again.
    assert main(["pretrain", "--text", str(text), "--out-dir", str(out), *TINY_RUN, "--epochs", "2", "--resume",
                 "--eval-freq", "7", "--eval-iter", "2", "--clip-norm", "0.5", "--start-context", "Once"]) == 0
    assert (out / "last.pt").read_bytes() == last


def test_generate_continues_the_prompt_from_a_checkpoint(pretrained, capsys):
    arguments = ["generate", "--checkpoint", str(pretrained / "best.pt"), "--prompt", "Every effort moves",
                 "--max-new-tokens", "6"]
    assert main(arguments) == 0
    first = capsys.readouterr().out
    assert first.startswith("Every effort moves") and len(first) > len("Every effort moves\n")
    assert main(arguments + ["--temperature", "1.0", "--top-k", "5", "--seed", "1"]) == 0
    assert main(arguments + ["--temperature", "1.0", "--top-k", "5", "--seed", "1"]) == 0
    sampled = capsys.readouterr().out.splitlines()
    assert sampled[0] == sampled[1]  # a seed makes sampling repeatable


def test_generate_from_openais_weights_through_gpt_download(tmp_path, capsys):
    hparams = {"n_vocab": 50257, "n_ctx": 32, "n_embd": 16, "n_head": 2, "n_layer": 1}
    write_gpt2_weights(random_gpt2_params(hparams, seed=1), hparams, tmp_path, "124M", source="huggingface")
    assert main(["generate", "--openai", "124M", "--models-dir", str(tmp_path), "--source", "huggingface",
                 "--prompt", "Hello", "--max-new-tokens", "3", "--no-eos"]) == 0
    assert capsys.readouterr().out.startswith("Hello")


def test_download_verifies_a_folder_through_gpt_download(tmp_path, capsys):
    hparams = {"n_vocab": 50257, "n_ctx": 32, "n_embd": 16, "n_head": 2, "n_layer": 1}
    folder = write_gpt2_weights(random_gpt2_params(hparams, seed=1), hparams, tmp_path, "124M", source="huggingface")
    weights = {name: (folder / name).read_bytes() for name in ("config.json", "model.safetensors")}
    assert main(["download", "124M", "--models-dir", str(tmp_path), "--source", "huggingface"]) == 0
    assert capsys.readouterr().out == f"GPT-2 124M: the huggingface files verified in {folder}/\n"
    # Verified where they lie: nothing fetched (no network here), neither file rewritten.
    assert {name: (folder / name).read_bytes() for name in weights} == weights


def test_classify_prints_what_classify_text_gives(tmp_path, capsys):
    torch.manual_seed(0)
    model = make_classifier(GPTModel(GPTConfig(context_length=32, emb_dim=16, n_heads=2, n_layers=1)), num_classes=2)
    path = save_checkpoint(tmp_path / "spam_classifier.pt", model, labels=["not spam", "spam"])
    messages = ["Call now to claim your prize!", "See you at dinner"]
    assert main(["classify", "--checkpoint", str(path), *messages]) == 0
    lines = capsys.readouterr().out.splitlines()
    for line, message in zip(lines, messages, strict=True):
        label, probability = classify_text(message, model, load_gpt2_tokenizer(), labels=("not spam", "spam"))
        assert line == f"{label}\t{probability:.3f}\t{message}"


@pytest.mark.parametrize("arguments, message", [
    (["pretrain", "--text", "no/such/file.txt", "--out-dir", "{tmp}/out"], "--text no/such/file.txt: no such file"),
    (["pretrain", "--text", "{tmp}/latin1.txt", "--out-dir", "{tmp}/out"], "is not UTF-8 text"),
    (["pretrain", "--out-dir", "{tmp}/out", "--resume"], "last.pt does not exist"),
    (["pretrain", "--out-dir", "{tmp}/out", "--preset", "2B"], "--preset must be tiny or one of 124M"),
    (["pretrain", "--out-dir", "{tmp}/out", "--preset", "tiny", "--heads", "3"], "must be divisible by n_heads"),
    (["pretrain", "--out-dir", "{tmp}/out", "--epochs", "2", "--stop-after-epoch", "2"], "--stop-after-epoch must be from 0 to 1"),
    (["pretrain", "--text", "{tmp}/short.txt", "--out-dir", "{tmp}/out", "--preset", "tiny"], "too short"),
    (["generate", "--checkpoint", "{tmp}/damaged.pt", "--prompt", "Hi"], "damaged or not a checkpoint"),
    (["generate", "--checkpoint", "{tmp}/missing.pt", "--prompt", ""], "--prompt is empty"),
    (["generate", "--checkpoint", "{tmp}/missing.pt", "--prompt", "Hi"], "no checkpoint at"),
    (["generate", "--openai", "2B", "--prompt", "Hi"], "--openai must be one of 124M"),
    (["download", "2B", "--models-dir", "{tmp}/out"], "SIZE must be one of 124M"),
    (["classify", "--checkpoint", "{tmp}/missing.pt", "spam?"], "no checkpoint at"),
])
def test_a_missing_file_or_a_bad_option_is_one_clear_line(arguments, message, tmp_path, capsys):
    (tmp_path / "latin1.txt").write_bytes("Caf\xe9 cr\xe8me".encode("latin-1"))
    (tmp_path / "short.txt").write_text("Too short for a window of 64 tokens.", encoding="utf-8")
    (tmp_path / "damaged.pt").write_bytes(b"not a checkpoint")
    assert main([argument.format(tmp=tmp_path) for argument in arguments]) == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error
    assert not (tmp_path / "out").exists()  # nothing written after a refused start


@pytest.mark.parametrize("option, value", [("--temperature", "-1"), ("--top-p", "1.5"), ("--top-k", "0")])
def test_a_bad_decoding_option_is_refused_before_anything_is_loaded(pretrained, option, value, capsys):
    with pytest.raises(SystemExit) as exit_status:  # argparse's own error, after its usage
        main(["generate", "--checkpoint", str(pretrained / "best.pt"), "--prompt", "Hi", option, value])
    assert exit_status.value.code == 2
    assert f"argument {option}" in capsys.readouterr().err


def test_a_classifier_given_to_generate_is_refused_in_one_line(tmp_path, capsys):
    model = make_classifier(GPTModel(GPTConfig(context_length=32, emb_dim=16, n_heads=2, n_layers=1)), num_classes=2)
    path = save_checkpoint(tmp_path / "spam_classifier.pt", model, labels=["not spam", "spam"])
    assert main(["generate", "--checkpoint", str(path), "--prompt", "Hi"]) == 2
    assert "is not a GPTModel checkpoint of 02's save_checkpoint" in capsys.readouterr().err


# ---- the real command, in a subprocess: an error a user can reach is one line, exit status 2 -----------

def cli(*arguments):
    """Run the command line as a user does; the finished process (returncode, stdout, stderr)."""
    return subprocess.run([*CLI, *map(str, arguments)], capture_output=True, text=True, cwd=REPO)


def assert_one_line_error(run, *words):
    """Exit status 2 and stderr exactly one line holding every word: no traceback, no torch advice."""
    assert run.returncode == 2, run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    assert all(str(word) in lines[0] for word in words), run.stderr
    assert "weights_only" not in lines[0]
    return lines[0]


def file_contents(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_pretrain_refuses_a_folder_with_an_earlier_runs_best_pt_and_history_but_no_last_pt(pretrained, text, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("best.pt", "best.pt.sha256", "history.json"):
        shutil.copy(pretrained / name, out / name)
    before = file_contents(out)
    run = cli("pretrain", "--text", text, "--out-dir", out, *TINY_RUN, "--epochs", "1")
    assert_one_line_error(run, f"--out-dir {out}", "--resume", "--overwrite", "best.pt")
    assert file_contents(out) == before  # nothing written, nothing lost


@pytest.mark.parametrize("name", ["run.json", "last.pt.sha256", "history.json", "best.pt", "losses.png",
                                  "last.pt.4242.partial"])
def test_pretrain_refuses_a_folder_holding_any_file_without_overwrite(name, text, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / name).write_text("an earlier run's file")
    assert main(["pretrain", "--text", str(text), "--out-dir", str(tmp_path / "out"), *TINY_RUN]) == 2
    assert f"holds {name}" in capsys.readouterr().err
    assert file_contents(tmp_path / "out") == {name: b"an earlier run's file"}


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    """A run on The Verdict stopped after the first of its two epochs: last.pt to resume from; its folder."""
    out = tmp_path_factory.mktemp("stopped") / "out"
    assert main(["pretrain", "--out-dir", str(out), *TINY_RUN, "--epochs", "2", "--stop-after-epoch", "0"]) == 0
    return out


@pytest.mark.parametrize("change", [[],                       # the same options: --resume continued the old run
                                    ["--emb-dim", "64"]])     # other shapes: --resume died with a traceback
def test_an_overwrite_interrupted_in_its_first_epoch_cannot_be_resumed_from_the_old_run(change, stopped_run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(stopped_run, out)
    # The earlier run's options, but a first epoch long enough to interrupt: every step evaluated on all batches.
    start = ["pretrain", "--out-dir", out, *TINY_RUN, "--epochs", "2", *change, "--eval-freq", "1", "--eval-iter", "1000"]
    process = subprocess.Popen([*CLI, *map(str, start), "--overwrite"], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        first_line = process.stdout.readline()  # the model's config, printed once run.json is written
        assert first_line.startswith("GPTConfig("), f"the run ended before it wrote run.json: {process.stderr.read()}"
    finally:
        process.kill()  # interrupted before its first epoch ends
        process.communicate()
    assert json.loads((out / "run.json").read_text())["emb_dim"] == (64 if change else 32)  # the new run's
    assert not (out / "last.pt").exists() and not (out / "history.json").exists()  # the old run's are gone
    before = file_contents(out)
    resumed = cli(*start, "--resume")
    assert_one_line_error(resumed, f"--resume: {out / 'last.pt'} does not exist", "--overwrite")
    assert file_contents(out) == before


def test_out_dir_under_a_regular_file_is_one_clear_line(tmp_path):
    (tmp_path / "somefile").write_text("not a folder")
    run = cli("pretrain", "--out-dir", tmp_path / "somefile" / "sub", *TINY_RUN, "--epochs", "1")
    assert_one_line_error(run, f"--out-dir {tmp_path / 'somefile' / 'sub'}", f"{tmp_path / 'somefile'} is a file")
    assert (tmp_path / "somefile").read_text() == "not a folder"


def test_an_out_dir_the_system_refuses_is_one_clear_line(tmp_path):
    # /sys refuses new folders even to root (the tests run as root here, so permissions cannot show it).
    if not Path("/sys/kernel").is_dir():
        pytest.skip("no /sys/kernel on this system")
    run = cli("pretrain", "--out-dir", "/sys/kernel/gpt2_test", *TINY_RUN, "--epochs", "1")
    assert_one_line_error(run, "/sys/kernel/gpt2_test", "choose a folder you can write to")


def test_a_temperature_too_small_to_mean_anything_samples_greedily(pretrained):
    # The CLI relies on 02's sampler: below float32's smallest normal number a temperature is greedy decoding
    # (dividing the logits by it would overflow, and a softmax of inf is NaN).
    generate = ["generate", "--checkpoint", pretrained / "best.pt", "--prompt", "Every effort", "--max-new-tokens", "3"]
    greedy = cli(*generate)
    for temperature in ("1e-45", "1e-39"):
        sampled = cli(*generate, "--temperature", temperature, "--seed", "1")
        assert sampled.returncode == 0 and sampled.stderr == "", sampled.stderr
        assert sampled.stdout == greedy.stdout and greedy.stdout.startswith("Every effort")


def test_a_checkpoint_with_a_smaller_vocabulary_than_the_tokenizers_is_refused(tmp_path):
    small = GPTModel(GPTConfig(vocab_size=100, context_length=16, emb_dim=16, n_heads=2, n_layers=1))
    path = save_checkpoint(tmp_path / "small_vocab.pt", small)
    run = cli("generate", "--checkpoint", path, "--prompt", "Every effort moves you")
    assert_one_line_error(run, f"--checkpoint {path}", "100", "50257")
    classifier = save_checkpoint(tmp_path / "small_vocab_classifier.pt", make_classifier(small, num_classes=2),
                                 labels=["not spam", "spam"])
    assert_one_line_error(cli("classify", "--checkpoint", classifier, "You won!"), str(classifier), "100", "50257")


@pytest.mark.parametrize("command", [["generate", "--prompt", "Hi", "--checkpoint"], ["classify", "Hi", "--checkpoint"]])
def test_a_bare_tensor_is_not_a_checkpoint(command, tmp_path):
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    assert_one_line_error(cli(*command, tmp_path / "tensor.pt"), str(tmp_path / "tensor.pt"))


def tiny_classifier_checkpoint(path, **changes):
    model = make_classifier(GPTModel(GPTConfig(context_length=32, emb_dim=16, n_heads=2, n_layers=1)), num_classes=2)
    path = save_checkpoint(path, model, labels=["not spam", "spam"])
    checkpoint = torch.load(path, weights_only=True)
    del checkpoint["content_sha256"]
    for key, value in changes.items():
        if value is None:
            del checkpoint[key]
        else:
            checkpoint[key] = value(checkpoint[key])
    checkpoint["content_sha256"] = content_sha256(checkpoint)  # intact, only its contents are odd
    torch.save(checkpoint, path)
    path.with_name(path.name + ".sha256").unlink()
    return path


@pytest.mark.parametrize("changes, words", [
    ({"config": None}, ["config"]),
    ({"config": lambda config: config | {"n_experts": 8}}, ["config", "n_experts"]),
    ({"config": lambda config: config | {"vocab_size": 50257.0}}, ["config", "vocab_size=50257.0"]),
    ({"labels": lambda labels: "spam"}, ["label names"]),
    ({"labels": None}, ["label names"]),
])
def test_a_classifier_without_a_config_or_with_an_unknown_key_is_one_clear_line(changes, words, tmp_path):
    path = tiny_classifier_checkpoint(tmp_path / "spam_classifier.pt", **changes)
    assert_one_line_error(cli("classify", "--checkpoint", path, "You won!"), str(path), *words)


def write_code_carrying_checkpoint(path, marker, **contents):
    """A checkpoint that holds pickled code: loading it unsafely would create `marker`."""
    class CreatesAFile:
        def __reduce__(self):
            return open, (str(marker), "w")

    torch.save({**contents, "hook": CreatesAFile()}, path)
    return path


@pytest.mark.parametrize("command", [["generate", "--prompt", "Hi", "--checkpoint"], ["classify", "Hi", "--checkpoint"]])
def test_a_checkpoint_that_carries_code_is_not_loaded(command, tmp_path):
    config = GPTConfig(context_length=32, emb_dim=16, n_heads=2, n_layers=1)
    path = write_code_carrying_checkpoint(tmp_path / "with_code.pt", tmp_path / "code_ran",
                                          config=config.__dict__, model=GPTModel(config).state_dict(), labels=["a", "b"])
    assert_one_line_error(cli(*command, path), str(path), "holds code", "not loaded")
    assert not (tmp_path / "code_ran").exists()  # nothing in it ran
