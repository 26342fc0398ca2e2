"""gpt2_cli.py: each command's --help from the command line, one tiny real run of each, and a clear
error (exit status 2, no traceback) for a missing file or a bad option."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import gpt2_cli
from gpt2_from_scratch.architecture import GPTConfig, GPTModel, load_gpt2_tokenizer
from gpt2_from_scratch.classify import classify_text, make_classifier
from gpt2_from_scratch.pretraining import save_checkpoint
from gpt2_from_scratch.weights import random_gpt2_params, write_gpt2_weights

REPO = Path(__file__).resolve().parents[1]
TINY_RUN = ["--device", "cpu", "--preset", "tiny", "--context-length", "16", "--emb-dim", "32", "--layers", "2", "--heads", "2",
            "--batch-size", "2", "--eval-freq", "5", "--eval-iter", "1", "--precision", "fp32", "--no-progress"]


@pytest.mark.parametrize("command, expected", [
    ([], ["pretrain", "generate", "classify"]),
    (["pretrain"], ["--text", "--out-dir", "--resume", "--accumulation-steps", "torchrun"]),
    (["generate"], ["--checkpoint", "--openai", "--temperature", "--top-k", "--top-p", "--seed"]),
    (["classify"], ["--checkpoint", "messages"]),
])
def test_every_command_has_help(command, expected):
    run = subprocess.run([sys.executable, str(REPO / "gpt2_cli.py"), *command, "--help"], capture_output=True,
                         text=True, cwd=REPO.parent)  # from another folder: the tool finds its repository
    assert run.returncode == 0, run.stderr
    for word in expected:
        assert word in run.stdout


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
        assert gpt2_cli.run_cli(["pretrain", "--text", str(text), "--out-dir", str(run / "out"), *TINY_RUN,
                                 "--epochs", "2"]) == 0
    return run / "out"


def test_pretrain_writes_its_checkpoints_and_history_into_the_output_folder_only(pretrained):
    assert sorted(path.name for path in pretrained.parent.iterdir()) == ["out", "working"]
    assert list((pretrained.parent / "working").iterdir()) == []  # nothing in the working folder
    assert sorted(path.name for path in pretrained.iterdir()) == [
        "best.pt", "best.pt.sha256", "history.json", "last.pt", "last.pt.sha256", "run.json"]


def test_an_earlier_run_is_neither_overwritten_nor_resumed_with_other_options(pretrained, text, capsys):
    before = (pretrained / "last.pt").read_bytes()
    start = ["pretrain", "--text", str(text), "--out-dir", str(pretrained), *TINY_RUN]
    assert gpt2_cli.run_cli([*start, "--epochs", "2"]) == 2
    assert "holds a run already: add --resume to continue it, or --overwrite" in capsys.readouterr().err
    assert gpt2_cli.run_cli([*start, "--epochs", "3", "--resume"]) == 2
    assert "changed: --epochs 2 -> 3" in capsys.readouterr().err
    assert (pretrained / "last.pt").read_bytes() == before


def test_generate_continues_the_prompt_from_a_checkpoint(pretrained, capsys):
    arguments = ["generate", "--checkpoint", str(pretrained / "best.pt"), "--prompt", "Every effort moves",
                 "--max-new-tokens", "6"]
    assert gpt2_cli.run_cli(arguments) == 0
    first = capsys.readouterr().out
    assert first.startswith("Every effort moves") and len(first) > len("Every effort moves\n")
    assert gpt2_cli.run_cli(arguments + ["--temperature", "1.0", "--top-k", "5", "--seed", "1"]) == 0
    assert gpt2_cli.run_cli(arguments + ["--temperature", "1.0", "--top-k", "5", "--seed", "1"]) == 0
    sampled = capsys.readouterr().out.splitlines()
    assert sampled[0] == sampled[1]  # a seed makes sampling repeatable


def test_generate_from_openais_weights_through_gpt_download(tmp_path, capsys):
    hparams = {"n_vocab": 50257, "n_ctx": 32, "n_embd": 16, "n_head": 2, "n_layer": 1}
    write_gpt2_weights(random_gpt2_params(hparams, seed=1), hparams, tmp_path, "124M", source="huggingface")
    assert gpt2_cli.run_cli(["generate", "--openai", "124M", "--models-dir", str(tmp_path), "--source", "huggingface",
                          "--prompt", "Hello", "--max-new-tokens", "3", "--no-eos"]) == 0
    assert capsys.readouterr().out.startswith("Hello")


def test_classify_prints_what_classify_text_gives(tmp_path, capsys):
    torch.manual_seed(0)
    model = make_classifier(GPTModel(GPTConfig(context_length=32, emb_dim=16, n_heads=2, n_layers=1)), num_classes=2)
    path = save_checkpoint(tmp_path / "spam_classifier.pt", model, labels=["not spam", "spam"])
    messages = ["Call now to claim your prize!", "See you at dinner"]
    assert gpt2_cli.run_cli(["classify", "--checkpoint", str(path), *messages]) == 0
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
    (["classify", "--checkpoint", "{tmp}/missing.pt", "spam?"], "no checkpoint at"),
])
def test_a_missing_file_or_a_bad_option_is_one_clear_line(arguments, message, tmp_path, capsys):
    (tmp_path / "latin1.txt").write_bytes("Caf\xe9 cr\xe8me".encode("latin-1"))
    (tmp_path / "short.txt").write_text("Too short for a window of 64 tokens.", encoding="utf-8")
    (tmp_path / "damaged.pt").write_bytes(b"not a checkpoint")
    assert gpt2_cli.run_cli([argument.format(tmp=tmp_path) for argument in arguments]) == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error
    assert not (tmp_path / "out").exists()  # nothing written after a refused start


@pytest.mark.parametrize("option, value", [("--temperature", "-1"), ("--top-p", "1.5"), ("--top-k", "0")])
def test_a_bad_decoding_option_is_refused_before_anything_is_loaded(pretrained, option, value, capsys):
    with pytest.raises(SystemExit) as exit_status:  # argparse's own error, after its usage
        gpt2_cli.run_cli(["generate", "--checkpoint", str(pretrained / "best.pt"), "--prompt", "Hi", option, value])
    assert exit_status.value.code == 2
    assert f"argument {option}" in capsys.readouterr().err


def test_a_classifier_given_to_generate_is_refused_in_one_line(tmp_path, capsys):
    model = make_classifier(GPTModel(GPTConfig(context_length=32, emb_dim=16, n_heads=2, n_layers=1)), num_classes=2)
    path = save_checkpoint(tmp_path / "spam_classifier.pt", model, labels=["not spam", "spam"])
    assert gpt2_cli.run_cli(["generate", "--checkpoint", str(path), "--prompt", "Hi"]) == 2
    assert "is not a GPTModel checkpoint of 02's save_checkpoint" in capsys.readouterr().err
