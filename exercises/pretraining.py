"""The checkers of 02_pretraining.ipynb's exercises (02.1 to 02.3): the learning-rate schedule and
decoding. exercises/checks.py says how a checker works."""

import numbers

import torch

from exercises.checks import compare, exercise, generator, messages_of, run_learner


@exercise("02.1", "warmup and cosine decay")
def check_warmup_cosine_lr(warmup_cosine_lr):
    from gpt2_from_scratch.pretraining import learning_rate_at  # 02, section 6
    total, peak, warmup, initial, minimum = 50, 1e-3, 10, 1e-5, 1e-4
    answer = torch.tensor([float(run_learner(warmup_cosine_lr, s, total, peak, warmup, initial, minimum,
                                             returns=numbers.Real)) for s in range(total)])
    expected = torch.tensor([learning_rate_at(s, total, peak, warmup, initial, minimum) for s in range(total)])
    decay_to_zero = torch.tensor([learning_rate_at(s, total, peak, warmup, initial, 0.0) for s in range(total)])
    no_warmup = torch.tensor([learning_rate_at(s, total, peak, 0, initial, minimum) for s in range(total)])
    mistakes = [
        ("the cosine decays to 0; it should end at min_lr", decay_to_zero),
        ("there is no warmup: the first warmup_steps steps rise linearly from initial_lr to peak_lr", no_warmup),
    ]
    return messages_of(compare(answer, expected, "the learning rates of steps 0..49", mistakes, atol=1e-9))


@exercise("02.2", "top-p (nucleus) filtering")
def check_nucleus_filter(nucleus_filter):
    from gpt2_from_scratch.pretraining import top_p_filter  # 02, section 7
    probabilities = torch.softmax(2 * torch.randn(4, 10, generator=generator(18)), dim=-1)
    ordered, order = probabilities.sort(dim=-1, descending=True)
    messages = []
    for top_p in (0.5, 0.9):
        answer = run_learner(nucleus_filter, probabilities, top_p)
        strict = torch.zeros_like(ordered, dtype=torch.bool).scatter(-1, order, ordered.cumsum(-1) < top_p)
        kept_strict = probabilities * strict
        kept = top_p_filter(probabilities, top_p)
        mistakes = [
            ("the token whose probability makes the sum reach top_p is dropped; keep it (the smallest set "
             "that reaches top_p includes it)", kept_strict / kept_strict.sum(-1, keepdim=True)),
            ("what is kept is not renormalised: divide by its sum", probabilities * (kept > 0)),
        ]
        messages.append(compare(answer, kept, f"with top_p={top_p}, the probabilities", mistakes))
    return messages_of(*messages)


@exercise("02.3", "temperature and top-k")
def check_temperature_top_k(temperature_top_k):
    from gpt2_from_scratch.pretraining import top_k_filter  # 02, section 7
    logits = 3 * torch.randn(3, 12, generator=generator(19))
    answer = run_learner(temperature_top_k, logits, 0.7, 4)
    mistakes = [
        ("divide the logits by the temperature, not the probabilities",
         torch.softmax(top_k_filter(logits, 4), dim=-1) / 0.7),
        ("the logits are multiplied by the temperature; divide them", torch.softmax(top_k_filter(logits * 0.7, 4), -1)),
        ("keep exactly top_k tokens: the k largest logits", torch.softmax(top_k_filter(logits / 0.7, 3), dim=-1)),
        ("keep exactly top_k tokens: the k largest logits", torch.softmax(top_k_filter(logits / 0.7, 5), dim=-1)),
        ("the top-k filter is missing", torch.softmax(logits / 0.7, dim=-1)),
        ("the logits outside the top k were set to 0, and exp(0) = 1 still gives them probability: set them "
         "to -inf", torch.softmax(torch.where(top_k_filter(logits / 0.7, 4) == float("-inf"), 0.0, logits / 0.7),
                                  dim=-1)),
    ]
    expected = torch.softmax(top_k_filter(logits / 0.7, 4), dim=-1)
    return messages_of(compare(answer, expected, "the probabilities", mistakes))
