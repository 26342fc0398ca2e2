"""Solutions to the exercises of 05_finetune_instruct.ipynb. Try them yourself first."""

import torch


def collate_masked_prompt(batch, pad_token_id=50256, ignore_index=-100):
    """05.1: pad (token ids, prompt length) pairs into (inputs, targets); only response tokens and the
    first end token remain targets."""
    batch_length = max(len(token_ids) for token_ids, _ in batch) + 1
    inputs, targets = [], []
    for token_ids, prompt_length in batch:
        padded = list(token_ids) + [pad_token_id] * (batch_length - len(token_ids))
        input_row = torch.tensor(padded[:-1])
        target_row = torch.tensor(padded[1:])
        target_row[len(token_ids):] = ignore_index   # padding after the first end token
        target_row[: prompt_length - 1] = ignore_index  # the prompt's targets
        inputs.append(input_row)
        targets.append(target_row)
    return torch.stack(inputs), torch.stack(targets)


def alpaca_prompt(entry):
    """05.2: the Alpaca template up to and including the response marker."""
    prompt = ("Below is an instruction that describes a task. Write a response that appropriately completes "
              f"the request.\n\n### Instruction:\n{entry['instruction']}")
    if entry["input"]:
        prompt += f"\n\n### Input:\n{entry['input']}"
    return prompt + "\n\n### Response:\n"


SOLUTIONS = {"05.1": collate_masked_prompt, "05.2": alpaca_prompt}
