# Generated from 05_finetune_instruct.ipynb; edit the notebook, then regenerate: python tools/export_package.py
"""The definitions of 05_finetune_instruct.ipynb, for later notebooks, the tests and the benchmarks.

Each part below is one exported cell of the notebook, headed by the cell's number (counted from 0,
markdown cells included) and its section.
"""


__all__ = [
    "format_input", "RESPONSE_MARKER", "split_instruction_data", "InstructionDataset", "custom_collate_fn",
    "rouge_l_words", "longest_common_subsequence", "rouge_l_f1", "extract_response", "generate_responses",
    "evaluate_instruction_model", "write_json_atomically", "OLLAMA_URL", "JUDGE_MODEL", "ollama_available",
    "query_ollama", "parse_score", "judge_prompt",
]


# 05_finetune_instruct.ipynb, cell 5 (section "Setup")
import json
import math
import os
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from gpt2_support.files import atomic_write_path  # write beside the file, then rename (see 01, section 1)
from gpt2_from_scratch.pretraining import text_to_token_ids, token_ids_to_text  # 02, section 1
from gpt2_from_scratch.pretraining import calc_loss_loader  # 02, section 4: the mean loss over a data set
from gpt2_from_scratch.pretraining import bf16_weights, generate_batch  # 02, section 8: many prompts at once


# 05_finetune_instruct.ipynb, cell 13 (section "1. The data")
def format_input(entry):
    """The Alpaca-style prompt for one example, without the response."""
    text = ("Below is an instruction that describes a task. Write a response that appropriately completes "
            f"the request.\n\n### Instruction:\n{entry['instruction']}")
    if entry["input"]:
        text += f"\n\n### Input:\n{entry['input']}"
    return text


RESPONSE_MARKER = "\n\n### Response:\n"


# 05_finetune_instruct.ipynb, cell 16 (section "1. The data")
def split_instruction_data(entries, seed=123):
    """(train, test, validation): 85% / 10% / the rest, after a seeded shuffle."""
    order = np.random.default_rng(seed).permutation(len(entries))
    shuffled = [entries[index] for index in order]
    train_end = int(0.85 * len(entries))
    test_end = train_end + int(0.1 * len(entries))
    return shuffled[:train_end], shuffled[train_end:test_end], shuffled[test_end:]


# 05_finetune_instruct.ipynb, cell 21 (section "2. From examples to batches")
class InstructionDataset(Dataset):
    """Each item: (token ids of prompt + response, number of prompt tokens)."""

    def __init__(self, entries, tokenizer):
        self.items = []
        for entry in entries:
            # disallowed_special=(): "<|endoftext|>" written in an entry is text, not GPT-2's end token.
            prompt_ids = tokenizer.encode(format_input(entry) + RESPONSE_MARKER, disallowed_special=())
            response_ids = tokenizer.encode(entry["output"], disallowed_special=())
            self.items.append((prompt_ids + response_ids, len(prompt_ids)))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


# 05_finetune_instruct.ipynb, cell 23 (section "2. From examples to batches")
def custom_collate_fn(batch, pad_token_id=50256, ignore_index=-100, allowed_max_length=None, mask_prompt=False):
    """Pad a batch of token-id lists into (inputs, targets) tensors; see the text above.

    batch items: token-id lists, or (token ids, number of prompt tokens) pairs (needed for mask_prompt).
    """
    items = [item if isinstance(item, tuple) else (item, None) for item in batch]
    if mask_prompt and any(prompt_length is None for _, prompt_length in items):
        raise ValueError("mask_prompt=True needs (token_ids, prompt_length) items, as InstructionDataset gives")
    batch_length = max(len(token_ids) for token_ids, _ in items) + 1  # + 1: room for the end token
    inputs, targets = [], []
    for token_ids, prompt_length in items:
        if mask_prompt and allowed_max_length is not None and prompt_length > allowed_max_length:
            # The first response token is target prompt_length - 1: truncation would leave only ignored
            # prompt targets, and a loss over no targets is NaN.
            raise ValueError(f"an example has a prompt of {prompt_length} tokens, so with mask_prompt and "
                             f"allowed_max_length={allowed_max_length} none of its response tokens remains a "
                             "target; raise allowed_max_length or leave that example out")
        padded = list(token_ids) + [pad_token_id] * (batch_length - len(token_ids))
        input_row = torch.tensor(padded[:-1], dtype=torch.long)
        target_row = torch.tensor(padded[1:], dtype=torch.long)
        # target_row[len(token_ids) - 1] is the first end token: keep it. The rest is padding.
        target_row[len(token_ids):] = ignore_index
        if mask_prompt:
            # target i is token i + 1: the targets up to index prompt_length - 2 are prompt tokens.
            target_row[: prompt_length - 1] = ignore_index
        inputs.append(input_row[:allowed_max_length])
        targets.append(target_row[:allowed_max_length])
    return torch.stack(inputs), torch.stack(targets)


# 05_finetune_instruct.ipynb, cell 40 (section "4. Evaluation that needs no server")
def rouge_l_words(text):
    """Lower-cased words and numbers, the units ROUGE-L compares."""
    return re.findall(r"\w+", text.lower())


def longest_common_subsequence(a, b):
    """Length of the longest common subsequence of two sequences (dynamic programming, one row at a time)."""
    previous = [0] * (len(b) + 1)
    for item in a:
        current = [0]
        for j, other in enumerate(b):
            current.append(previous[j] + 1 if item == other else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l_f1(candidate, reference):
    """ROUGE-L F1 of a candidate text against a reference text, in [0, 1]."""
    candidate_words, reference_words = rouge_l_words(candidate), rouge_l_words(reference)
    if not candidate_words or not reference_words:
        return float(candidate_words == reference_words)  # both empty: identical; one empty: nothing shared
    lcs = longest_common_subsequence(candidate_words, reference_words)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(candidate_words), lcs / len(reference_words)
    return 2 * precision * recall / (precision + recall)


# 05_finetune_instruct.ipynb, cell 44 (section "4. Evaluation that needs no server")
def extract_response(generated_text, prompt):
    """The model's response: the text after the prompt, up to an end token or a new '###' section."""
    if not generated_text.startswith(prompt):
        raise ValueError("the generated text does not start with the prompt")
    response = generated_text[len(prompt):]
    for stop in ("<|endoftext|>", "\n\n###", "\n###"):
        response = response.split(stop, 1)[0]
    return response.strip()


def generate_responses(model, entries, tokenizer, device, max_new_tokens=256, batch_size=8, desc="generating"):
    """Greedy responses to each entry's prompt, `batch_size` prompts at a time (02's generate_batch)."""
    model.eval()
    prompts = [format_input(entry) + RESPONSE_MARKER for entry in entries]
    responses = []
    with tqdm(total=len(prompts), desc=desc, unit="response", file=sys.stdout) as progress:
        for start in range(0, len(prompts), batch_size):
            batch = prompts[start:start + batch_size]
            prompt_ids = [text_to_token_ids(prompt, tokenizer)[0].to(device) for prompt in batch]
            outputs = generate_batch(model, prompt_ids, max_new_tokens, eos_id=tokenizer.eot_token)
            responses += [extract_response(token_ids_to_text(output.unsqueeze(0), tokenizer), prompt)
                          for prompt, output in zip(batch, outputs)]
            progress.update(len(batch))
    return responses


def evaluate_instruction_model(model, entries, response_loader, tokenizer, device, max_new_tokens=256, batch_size=8,
                               generation_precision="fp32"):
    """Response-token loss and perplexity on the loader, mean ROUGE-L F1 of generated responses, the responses."""
    model.eval()
    with torch.inference_mode():
        loss = calc_loss_loader(response_loader, model, device)
    if generation_precision not in ("fp32", "bf16"):
        raise ValueError(f"generation_precision must be 'fp32' or 'bf16', got {generation_precision!r}")
    # With "bf16", a copy of the model with bf16 weights writes the responses (02's bf16_weights); the loss
    # above is the model's own, in float32.
    response_model = bf16_weights(model) if generation_precision == "bf16" else model
    responses = generate_responses(response_model, entries, tokenizer, device, max_new_tokens, batch_size)
    rouge = float(np.mean([rouge_l_f1(response, entry["output"]) for response, entry in zip(responses, entries)]))
    return {"response_loss": loss, "response_perplexity": math.exp(loss), "rouge_l_f1": rouge}, responses


# 05_finetune_instruct.ipynb, cell 59 (section "6. Responses after fine-tuning")
def write_json_atomically(value, path):
    """Write value as JSON to path, verified and atomically (atomic_write_path, from gpt2_support.files)."""
    with atomic_write_path(path) as partial_path:
        partial_path.write_text(json.dumps(value, indent=1, ensure_ascii=False), encoding="utf-8")
        json.loads(partial_path.read_text(encoding="utf-8"))  # verify it reads back
    return Path(path)


# 05_finetune_instruct.ipynb, cell 63 (section "7. Optional: a local LLM as judge")
OLLAMA_URL = os.environ.get("OLLAMA_URL", "http://localhost:11434")
JUDGE_MODEL = "llama3"


def ollama_available(url=OLLAMA_URL, timeout=2.0):
    """True if an Ollama server answers at url."""
    try:
        with urllib.request.urlopen(f"{url}/api/tags", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def query_ollama(prompt, model=JUDGE_MODEL, url=OLLAMA_URL, seed=123, num_ctx=2048, timeout=120):
    """One chat completion from a local Ollama server, deterministic settings."""
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "stream": False,
            "options": {"seed": seed, "temperature": 0, "num_ctx": num_ctx}}
    request = urllib.request.Request(f"{url}/api/chat", data=json.dumps(body).encode("utf-8"),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read().decode("utf-8"))["message"]["content"]


def parse_score(reply):
    """The integer score (0-100) in a judge's reply; ValueError if there is none.

    Mentions of the scale itself ("0-100", "0 to 100", "out of 100", "/100") are not the score. The score is
    the first number of the rest, read whole, with its sign and decimals: "-5", "0.5" or "250" is no score.
    """
    reply_without_scale = re.sub(r"\b0\s*(?:-|–|to)\s*100\b|(?:\bout of|/)\s*100\b", " ", reply)
    match = re.search(r"(?<![\w.])[-−]?\b\d+(?:\.\d+)?\b", reply_without_scale)
    if match is None or not match.group().isdigit() or int(match.group()) > 100:
        raise ValueError(f"no score from 0 to 100 in the judge's reply {reply!r}")
    return int(match.group())


def judge_prompt(entry, response):
    return (f"Given the input `{format_input(entry)}` and correct output `{entry['output']}`, score the model "
            f"response `{response}` on a scale from 0 to 100, where 100 is the best score. "
            "Respond with the integer number only.")
