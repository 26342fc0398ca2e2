"""Solutions to the exercises of 04_finetune_classify.ipynb. Try them yourself first."""

import torch


def last_real_token_logits(logits, lengths):
    """04.1: each row's logits at its last real token, index lengths - 1: (batch, num_classes)."""
    rows = torch.arange(logits.shape[0])
    return logits[rows, lengths - 1]


def lora_forward(x, linear, A, B, alpha):
    """04.2: a frozen linear layer plus its low-rank update, scaled by alpha / rank."""
    rank = A.shape[1]
    return linear(x) + (alpha / rank) * (x @ A @ B)


SOLUTIONS = {"04.1": last_real_token_logits, "04.2": lora_forward}
