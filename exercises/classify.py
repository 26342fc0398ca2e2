"""The checkers of 04_finetune_classify.ipynb's exercises (04.1, 04.2): the last real token and LoRA.
exercises/checks.py says how a checker works."""


import torch
import torch.nn as nn

from exercises.checks import compare, exercise, generator, messages_of, random_like_init, run_learner


@exercise("04.1", "the last real token's logits")
def check_last_real_token_logits(last_real_token_logits):
    logits = torch.randn(4, 9, 2, generator=generator(23))  # 9 positions: no row is as long as the batch
    lengths = torch.tensor([7, 3, 5, 1])
    answer = run_learner(last_real_token_logits, logits, lengths)
    rows = torch.arange(4)
    mistakes = [
        ("these are the last positions, padding for every row shorter than the batch: take each row at "
         "index lengths - 1", logits[:, -1]),
        ("off by one: the last real token is at index lengths - 1", logits[rows, lengths]),
        ("these are the first tokens; the last real one is at index lengths - 1", logits[:, 0]),
    ]
    return messages_of(compare(answer, logits[rows, lengths - 1], "the logits", mistakes))


@exercise("04.2", "a LoRA layer's forward pass")
def check_lora_forward(lora_forward):
    from gpt2_from_scratch.classify import LoRALayer  # 04, section 10
    g = generator(24)
    linear = random_like_init(nn.Linear(8, 6), 25)
    rank, alpha = 2, 8
    lora = LoRALayer(8, 6, rank, alpha)
    A, B = torch.randn(8, rank, generator=g), torch.randn(rank, 6, generator=g)
    x = torch.randn(3, 8, generator=g)
    with torch.no_grad():
        lora.A.copy_(A)
        lora.B.copy_(B)
        answer = run_learner(lora_forward, x, linear, A, B, alpha)
        expected = linear(x) + lora(x)
        mistakes = [
            ("the update is scaled by alpha; scale it by alpha / rank (Hu et al. 2021, as 04 does)",
             linear(x) + alpha * (x @ A @ B)),
            ("the update is not scaled: multiply x A B by alpha / rank", linear(x) + x @ A @ B),
            ("the frozen layer's own output is missing: linear(x) + the update", (alpha / rank) * (x @ A @ B)),
        ]
        return messages_of(compare(answer, expected, "the output", mistakes))
