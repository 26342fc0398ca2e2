"""05's instruction fine-tuning pieces, on the notebook's own definitions."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from fake_openai_server import unused_local_port

E, X = 50256, -100  # the end token and the ignored target
WORKED = [[0, 1, 2, 3, 4], [5, 6], [7, 8, 9]]


def test_collate_pads_shifts_and_ignores_padding(nb05):
    inputs, targets = nb05.custom_collate_fn(WORKED)
    assert inputs.tolist() == [[0, 1, 2, 3, 4], [5, 6, E, E, E], [7, 8, 9, E, E]]
    assert targets.tolist() == [[1, 2, 3, 4, E], [6, E, X, X, X], [8, 9, E, X, X]]
    assert inputs.device.type == "cpu"  # moving to the device is the training loop's job


def test_collate_masks_the_prompt(nb05):
    batch = [(ids, prompt_length) for ids, prompt_length in zip(WORKED, (3, 1, 2))]
    inputs, targets = nb05.custom_collate_fn(batch, mask_prompt=True)
    assert inputs.tolist() == [[0, 1, 2, 3, 4], [5, 6, E, E, E], [7, 8, 9, E, E]]
    # target i is token i + 1; with prompt length p, targets 0 .. p - 2 are prompt tokens
    assert targets.tolist() == [[X, X, 3, 4, E], [6, E, X, X, X], [X, 9, E, X, X]]
    assert torch.equal(nb05.custom_collate_fn(batch)[1], nb05.custom_collate_fn(WORKED)[1])  # pairs, unmasked


def test_collate_truncates(nb05):
    inputs, targets = nb05.custom_collate_fn(WORKED, allowed_max_length=3)
    assert inputs.tolist() == [[0, 1, 2], [5, 6, E], [7, 8, 9]]
    assert targets.tolist() == [[1, 2, 3], [6, E, X], [8, 9, E]]


def test_collate_keeps_end_tokens_inside_the_text_as_targets(nb05):
    _, targets = nb05.custom_collate_fn([[1, E, 2], [3]], ignore_index=-1)
    assert targets.tolist() == [[E, 2, E], [E, -1, -1]]


def test_collate_needs_prompt_lengths_to_mask_the_prompt(nb05):
    with pytest.raises(ValueError, match="prompt_length"):
        nb05.custom_collate_fn(WORKED, mask_prompt=True)


def test_format_input_with_and_without_input(nb05):
    preamble = ("Below is an instruction that describes a task. Write a response that appropriately completes "
                "the request.")
    with_input = {"instruction": "Edit the sentence.", "input": "He go home.", "output": "He goes home."}
    assert nb05.format_input(with_input) == (
        f"{preamble}\n\n### Instruction:\nEdit the sentence.\n\n### Input:\nHe go home.")
    without_input = {"instruction": "Name a colour.", "input": "", "output": "Blue."}
    assert nb05.format_input(without_input) == f"{preamble}\n\n### Instruction:\nName a colour."
    assert "### Input" not in nb05.format_input(without_input)


def test_instruction_dataset_records_prompt_lengths(nb05, nb01):
    tokenizer = nb01.load_gpt2_tokenizer()
    entry = {"instruction": "Name a colour.", "input": "", "output": "Blue."}
    token_ids, prompt_length = nb05.InstructionDataset([entry], tokenizer)[0]
    prompt_ids = tokenizer.encode(nb05.format_input(entry) + "\n\n### Response:\n")
    assert token_ids[:prompt_length] == prompt_ids
    assert tokenizer.decode(token_ids[prompt_length:]) == "Blue."


def test_the_split_is_seeded_and_has_the_documented_sizes(nb05, repo_root):
    data = json.loads((repo_root / "data" / "instruction-data.json").read_text(encoding="utf-8"))
    train, test, val = nb05.split_instruction_data(data)
    assert (len(train), len(test), len(val)) == (935, 110, 55)
    assert sorted(map(json.dumps, train + test + val)) == sorted(map(json.dumps, data))
    assert nb05.split_instruction_data(data) == (train, test, val)
    assert nb05.split_instruction_data(data, seed=1)[0] != train


@pytest.mark.parametrize("generated, expected", [
    ("PROMPT The answer is 4.<|endoftext|>", "The answer is 4."),
    ("PROMPT\nBlue.\n\n### Instruction:\nName another colour.", "Blue."),
    ("PROMPT  Paris \n### Response:\nParis", "Paris"),
    ("PROMPT", ""),
])
def test_extract_response(nb05, generated, expected):
    assert nb05.extract_response(generated, "PROMPT") == expected


def test_extract_response_refuses_text_that_lost_its_prompt(nb05):
    with pytest.raises(ValueError, match="prompt"):
        nb05.extract_response("something else", "PROMPT")


@pytest.mark.parametrize("candidate, reference, expected", [
    ("the cat sat on the mat", "The cat sat on the mat.", 1.0),
    # words a cat was on the mat / the cat sat on the mat: LCS cat on the mat = 4; P = R = 4/6
    ("A cat was on the mat", "The cat sat on the mat", 2 / 3),
    # LCS 1; P = 1, R = 1/6; F1 = 2 * (1/6) / (7/6) = 2/7
    ("Paris", "The capital of France is Paris.", 2 / 7),
    # order matters: LCS of (b c a) and (a b c) is 2; P = R = 2/3
    ("b c a", "a b c", 2 / 3),
    ("no overlap", "different words", 0.0),
    ("", "", 1.0),
    ("", "something", 0.0),
])
def test_rouge_l_f1_on_hand_computed_cases(nb05, candidate, reference, expected):
    assert nb05.rouge_l_f1(candidate, reference) == pytest.approx(expected)


@pytest.mark.parametrize("reply, score", [("85", 85), (" 85\n", 85), ("Score: 100", 100), ("0", 0),
                                          ("Score (0-100): 85", 85), ("I would give it 72 out of 100", 72),
                                          ("On a scale from 0 to 100: 64.", 64), ("90/100", 90)])
def test_judge_scores_are_parsed(nb05, reply, score):
    assert nb05.parse_score(reply) == score


@pytest.mark.parametrize("reply", ["eighty", "", "250", "n/a"])
def test_judge_replies_without_a_score_are_rejected(nb05, reply):
    with pytest.raises(ValueError, match="no score"):
        nb05.parse_score(reply)


@pytest.mark.parametrize("reply", ["-5", "Score: -5", "−5", "-100", "Score (0-100): -20", "101", "1000", "0.5", "85.5",
                                   "12345"])
def test_a_judge_score_that_is_negative_out_of_range_or_not_whole_is_rejected(nb05, reply):
    # the reply's first number is the score: its sign or decimals are not dropped, nor a later number read instead
    with pytest.raises(ValueError, match="no score"):
        nb05.parse_score(reply)


@pytest.mark.parametrize("reply, score", [("- 85", 85), ("Score: 85.", 85), ("85, a good answer", 85),
                                          ("Score:85", 85), ("100/100", 100)])
def test_a_judge_score_is_read_with_the_punctuation_around_it(nb05, reply, score):
    assert nb05.parse_score(reply) == score


class FakeOllama(BaseHTTPRequestHandler):
    received = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(200 if self.path == "/api/tags" else 404)
        self.end_headers()
        self.wfile.write(b'{"models": []}')

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeOllama.received.append((self.path, body))
        reply = json.dumps({"message": {"role": "assistant", "content": " 85\n"}}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)


def test_judge_client_sends_deterministic_options(nb05):
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOllama)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert nb05.ollama_available(url)
        reply = nb05.query_ollama("Score this.", model="judge", url=url, seed=7, num_ctx=4096)
    finally:
        server.shutdown()
        server.server_close()
    assert nb05.parse_score(reply) == 85
    path, body = FakeOllama.received[-1]
    assert path == "/api/chat"
    assert body["model"] == "judge" and body["stream"] is False
    assert body["messages"] == [{"role": "user", "content": "Score this."}]
    assert body["options"] == {"seed": 7, "temperature": 0, "num_ctx": 4096}


def test_no_judge_server_is_detected(nb05):
    assert nb05.ollama_available(f"http://127.0.0.1:{unused_local_port()}", timeout=1.0) is False


def test_collate_refuses_a_masked_prompt_that_leaves_no_response_target(nb05):
    batch = [([1, 2, 3, 4, 5, 6], 5)]  # five prompt tokens, one response token
    inputs, targets = nb05.custom_collate_fn(batch, allowed_max_length=5, mask_prompt=True)
    assert (targets != -100).any(), "the response token is still a target"
    with pytest.raises(ValueError, match=r"prompt of 5 tokens.*allowed_max_length=4"):
        nb05.custom_collate_fn(batch, allowed_max_length=4, mask_prompt=True)  # before: all -100, a NaN loss


def test_collate_of_empty_sequences_gives_integer_tensors(nb05):
    inputs, targets = nb05.custom_collate_fn([[], []])
    assert inputs.dtype == targets.dtype == torch.long and inputs.shape == (2, 0)


def test_end_of_text_inside_user_text_is_ordinary_text(nb05, nb01):
    tokenizer = nb01.load_gpt2_tokenizer()
    entry = {"instruction": "Repeat <|endoftext|> twice.", "input": "", "output": "<|endoftext|> <|endoftext|>"}
    (token_ids, prompt_length), = nb05.InstructionDataset([entry], tokenizer)
    assert tokenizer.eot_token not in token_ids  # spelled out as text, not the special token


def notebook_code_cells(repo_root):
    import nbformat
    notebook = nbformat.read(repo_root / "05_finetune_instruct.ipynb", as_version=4)
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def test_the_evaluations_before_and_after_fine_tuning_use_the_same_entries(repo_root):
    """The prose promises a fair comparison: every evaluate_instruction_model call in the notebook scores
    evaluation_data with evaluation_loader (EVALUATION_ENTRIES of the test set, all of it by default)."""
    sources = [cell.source for cell in notebook_code_cells(repo_root)]
    calls = [line for source in sources for line in source.splitlines()
             if "= evaluate_instruction_model(" in line]
    assert len(calls) == 3, calls  # before, after, and LoRA's
    for call in calls:
        assert "evaluate_instruction_model(" in call and "evaluation_data, evaluation_loader" in call, call
    knob = [source for source in sources if source.count("EVALUATION_ENTRIES = ") == 1]
    assert len(knob) == 1 and "EVALUATION_ENTRIES = None" in knob[0]
    assert "evaluation_data = test_data[:EVALUATION_ENTRIES]" in knob[0]
