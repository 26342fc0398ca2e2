"""Solutions to the exercises of 02_pretraining.ipynb. Try them yourself first."""

import math

import torch


def warmup_cosine_lr(step, total_steps, peak_lr, warmup_steps, initial_lr, min_lr):
    """02.1: linear warmup from initial_lr to peak_lr, then half a cosine down to min_lr."""
    if step < warmup_steps:
        return initial_lr + (peak_lr - initial_lr) * step / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + (peak_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


def nucleus_filter(probabilities, top_p):
    """02.2: keep the smallest set of most likely tokens whose probabilities reach top_p; renormalise."""
    ordered, order = probabilities.sort(dim=-1, descending=True)
    before = ordered.cumsum(dim=-1) - ordered  # probability of the tokens ranked above each one
    keep_ordered = before < top_p
    keep = torch.zeros_like(keep_ordered).scatter(-1, order, keep_ordered)
    kept = probabilities * keep
    return kept / kept.sum(dim=-1, keepdim=True)


def temperature_top_k(logits, temperature, top_k):
    """02.3: probabilities after dividing the logits by the temperature and keeping the top_k largest."""
    scaled = logits / temperature
    kth_largest = scaled.topk(top_k, dim=-1).values[..., -1:]
    return torch.softmax(scaled.masked_fill(scaled < kth_largest, float("-inf")), dim=-1)


SOLUTIONS = {"02.1": warmup_cosine_lr, "02.2": nucleus_filter, "02.3": temperature_top_k}
