"""The exercise checkers: each runs the learner's code on seeded inputs, compares the result with what
the notebook's own code computes (its definitions imported from `gpt2_from_scratch`, or, where the
notebook computed something inline, the same computation written here) and says what is wrong.

In a notebook:  check_exercise("01.3", scaled_attention)   prints one of
    Exercise 01.3 (scaled dot-product attention): passed
    Exercise 01.3 (scaled dot-product attention): not attempted yet
    Exercise 01.3 (scaled dot-product attention): failed
      - the scores are not scaled: divide them by √d_k = √16 before the softmax
and never raises, so a notebook with unsolved exercises still runs to the end.

How a message is chosen: a checker computes the expected result and, for the mistakes learners
typically make, the result that mistake gives. An answer that matches a mistake's result gets that
mistake's message; any other wrong answer gets its shape or its largest difference. `run_check` returns
the Result instead of printing it (the tests use it).

A checker calls the learner's function only through `run_learner`, which runs it on deep copies of the
inputs (so that code changing its arguments in place cannot change what it is compared with), within a
time limit (TIME_LIMIT_S), and restores torch's global state afterwards (default dtype and device, grad
mode, random state), whatever happens; a result that is None, of the wrong type or on another device
than the inputs is reported as such rather than failing inside the checker.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import math
import numbers
import signal
import threading
import time
import traceback
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

NOT_ATTEMPTED = "not attempted yet: replace `raise NotImplementedError` with your code"
FORGOT_RETURN = "your function returned None: did you forget `return`?"
EXERCISES = {}  # "01.3" -> (title, checker)

# Seconds one call of the learner's function may take before the check stops it. Every exercise's answer
# runs in well under a second; the slowest honest one is 01.9 building GPT-2 medium (355M parameters) to
# count them instead of using a formula, about 15 s on a busy 2-core machine: 60 s leaves a slow laptop
# room. check_exercise(..., time_limit_s=...) sets another limit (None: this one; 0: none).
TIME_LIMIT_S = 60
_time_limit_s = contextvars.ContextVar("time_limit_s", default=None)  # run_check's limit, for run_learner


@dataclass
class Result:
    exercise: str
    title: str
    status: str                      # "passed", "failed" or "not attempted"
    messages: list = field(default_factory=list)

    @property
    def passed(self):
        return self.status == "passed"


def exercise(exercise_id, title):
    """Register a checker: checker(*candidates) returns a list of messages, empty when the answer is right."""
    def register(checker):
        EXERCISES[exercise_id] = (title, checker)
        return checker
    return register


def run_check(exercise_id, *candidates, time_limit_s=None):
    """The Result of checking the candidate(s) for one exercise. time_limit_s: the seconds one call of a
    candidate may take (None: TIME_LIMIT_S; 0: no limit)."""
    if exercise_id not in EXERCISES:
        raise ValueError(f"no exercise {exercise_id!r}; the exercises are {', '.join(EXERCISES)}")
    title, checker = EXERCISES[exercise_id]
    limit_set = _time_limit_s.set(TIME_LIMIT_S if time_limit_s is None else time_limit_s)
    try:
        with global_state_kept():  # the learner's random state, dtype, ... are left as they were
            messages = checker(*candidates)
    except LearnerProblem as problem:
        return Result(exercise_id, title, "failed", [str(problem)])
    except NotImplementedError as error:
        raised_in = traceback.extract_tb(error.__traceback__)[-1]
        own_code = {(code.co_filename, code.co_name) for code in
                    (getattr(candidate, "__code__", None) for candidate in candidates) if code is not None}
        if (raised_in.filename, raised_in.name) in own_code or not own_code:
            return Result(exercise_id, title, "not attempted", [NOT_ATTEMPTED])
        return Result(exercise_id, title, "failed", [
            f"a function your code calls, {raised_in.name}, still raises NotImplementedError: finish it first"])
    except Exception as error:  # the learner's code raised: say what, and where that usually comes from
        return Result(exercise_id, title, "failed", [f"your code raised {type(error).__name__}: {error}"])
    finally:
        _time_limit_s.reset(limit_set)
    messages = list(dict.fromkeys(messages))  # the same message from several cases is said once
    return Result(exercise_id, title, "failed" if messages else "passed", messages)


def check_exercise(exercise_id, *candidates, time_limit_s=None):
    """Check the candidate(s) for an exercise and print the verdict and what is wrong (run_check returns
    the Result instead). Returns nothing, so that a notebook cell shows only the printed verdict."""
    result = run_check(exercise_id, *candidates, time_limit_s=time_limit_s)
    verdict = {"passed": "passed", "failed": "failed", "not attempted": "not attempted yet"}[result.status]
    print(f"Exercise {exercise_id} ({result.title}): {verdict}")
    if result.status == "failed":
        for message in result.messages:
            print(f"  - {message}")


# --------------------------------------------------------------------------- running the learner's code

class LearnerProblem(Exception):
    """How the learner's function ran or what it returned keeps it from being compared: the message says
    what (run_check reports it as the failure)."""


class _OutOfTime(BaseException):
    """Raised inside the learner's code when its time is up: a BaseException, so that an `except Exception`
    in that code does not catch it."""


@contextlib.contextmanager
def global_state_kept():
    """Restore on leaving, however it is left, the global state of torch that the code inside may change:
    the default dtype, the default device, grad mode and the CPU random state."""
    dtype, grad_enabled, random_state = torch.get_default_dtype(), torch.is_grad_enabled(), torch.get_rng_state()
    device = torch.get_default_device() if hasattr(torch, "get_default_device") else None  # torch >= 2.3
    try:
        yield
    finally:
        torch.set_default_dtype(dtype)
        torch.set_grad_enabled(grad_enabled)
        torch.set_rng_state(random_state)
        if device is not None and torch.get_default_device() != device:
            torch.set_default_device(None if device == torch.device("cpu") else device)


@contextlib.contextmanager
def time_limit(seconds):
    """Raise _OutOfTime in the code inside once `seconds` have passed (none or 0: no limit).

    SIGALRM (setitimer) interrupts the main thread, where Jupyter runs a cell and pytest a test. Elsewhere
    the code runs without a limit: in another thread (a signal handler can only be set, and only runs, in
    the main thread), on Windows (no SIGALRM), and where a SIGALRM handler was installed outside Python
    (it could not be put back). A timer already running (pytest-timeout's, ...) is put back afterwards
    with the time it has left, so it fires at the latest just after the learner's code.
    """
    if (not seconds or not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGALRM) is None):
        yield
        return

    def out_of_time(signum, frame):
        raise _OutOfTime

    start = time.monotonic()
    previous_handler = signal.signal(signal.SIGALRM, out_of_time)
    previous_delay, previous_interval = signal.setitimer(signal.ITIMER_REAL, seconds)  # fires once

    def put_back():
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_handler)
        if previous_delay:
            signal.setitimer(signal.ITIMER_REAL, max(previous_delay - (time.monotonic() - start), 1e-3),
                             previous_interval)

    try:
        yield
    finally:
        try:
            put_back()
        except _OutOfTime:  # the time ran out just as the code returned: the timer has fired, it cannot again
            put_back()
            raise


def _tensors_in(value):
    """The tensors `value` is or holds: a tensor, a module's parameters and buffers, or those of the items
    of a tuple, list or dict (not deeper)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, nn.Module):
        return [*value.parameters(), *value.buffers()]
    if isinstance(value, (tuple, list, dict)):
        items = value.values() if isinstance(value, dict) else value
        return [tensor for item in items for tensor in _tensors_in(item)
                if isinstance(item, (torch.Tensor, nn.Module))]
    return []


def run_learner(function, *args, changes=None, returns=torch.Tensor):
    """The one way a checker calls the learner's function: on deep copies of `args` (so that nothing it
    changes in place reaches what the checker computes the expected result from), within the time limit,
    with torch's global state restored afterwards, whatever happens.

    changes: the object the exercise asks the function to change in place (01.11's model, 03.1's block),
        passed as the first argument, itself; it must stay on its device.
    returns: what the function must return: torch.Tensor, numbers.Real (a tensor or numpy number of one
        element is turned into a Python number), tuple or str (the checker says what a wrong tuple or
        string should be), or None when it changes `changes` and returns nothing.
    Raises LearnerProblem when the function does not return in time, returns None (but should return
    something), something else than a tensor or number that it should return, or a tensor on another
    device than its inputs; and whatever the function raises.
    """
    inputs_device = next((tensor.device for tensor in _tensors_in([changes, *args])), torch.device("cpu"))
    copies = copy.deepcopy(args)
    limit = _time_limit_s.get()
    limit = TIME_LIMIT_S if limit is None else limit
    try:
        with global_state_kept(), time_limit(limit):
            answer = function(*copies) if changes is None else function(changes, *copies)
    except _OutOfTime:
        raise LearnerProblem(
            f"your function did not return within {limit:g} s: look for a loop that never ends (a function "
            "that is only slow can have more time: check_exercise(..., time_limit_s=300))") from None

    for tensor in _tensors_in(changes):
        if tensor.device != inputs_device:
            raise LearnerProblem(f"your function moved the {type(changes).__name__} it was given to the "
                                 f"{tensor.device} device; it must stay on {inputs_device}, where it was")
    if returns is None:
        return answer
    if answer is None:
        raise LearnerProblem(FORGOT_RETURN)
    for tensor in _tensors_in(answer):
        if tensor.device != inputs_device:
            raise LearnerProblem(f"your function returned a tensor on the {tensor.device} device; its inputs are "
                                 f"on {inputs_device}: make the result there too (e.g. device=x.device)")
    if returns is numbers.Real and isinstance(answer, (torch.Tensor, np.ndarray, np.generic)) \
            and math.prod(answer.shape) == 1:
        answer = answer.item()
    if returns in (torch.Tensor, numbers.Real) and not isinstance(answer, returns):
        kind = "a torch.Tensor" if returns is torch.Tensor else "a number"
        raise LearnerProblem(f"your function returned an object of type {type(answer).__name__}; it should "
                             f"return {kind}")
    return answer


# --------------------------------------------------------------------------- comparing

def generator(seed):
    return torch.Generator().manual_seed(seed)


def close(a, b, atol=1e-5, rtol=1e-4, equal_nan=False):
    return a.shape == b.shape and torch.allclose(a.float(), b.float(), atol=atol, rtol=rtol, equal_nan=equal_nan)


def compare(actual, expected, what, mistakes=(), atol=1e-5, rtol=1e-4):
    """None if `actual` equals `expected`; otherwise the message of the mistake it matches, or what differs.

    mistakes: (message, the result that mistake gives) pairs, in order of how telling they are.
    """
    if not isinstance(actual, torch.Tensor):
        return f"{what} should be a torch.Tensor, not {type(actual).__name__}"
    if close(actual, expected, atol, rtol):
        return None
    for message, wrong in mistakes:  # a mistake may give NaN (a fully masked row): NaN then matches NaN
        if close(actual, wrong, atol, rtol, equal_nan=True):
            return message
    if actual.shape != expected.shape:
        return f"{what} has shape {tuple(actual.shape)}; expected {tuple(expected.shape)}"
    if torch.isnan(actual).any():
        return f"{what} contains NaN"
    difference = (actual.float() - expected.float()).abs()
    index = tuple(int(i) for i in torch.unravel_index(difference.argmax(), difference.shape))
    return (f"{what} has the right shape but wrong values: at index {index} it is "
            f"{actual[index].item():.4g}, expected {expected[index].item():.4g}")


def messages_of(*found):
    return [message for message in found if message]


def random_like_init(module, seed):
    """Give every parameter of `module` random values, so that swapped or missing parameters show."""
    g = generator(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=g) * 0.5)
    return module


# --------------------------------------------------------------------------- 01: the architecture

@exercise("01.1", "token and position embeddings")
def check_embed_tokens(embed_tokens):
    g = generator(1)
    tok_emb, pos_emb = nn.Embedding(12, 8), nn.Embedding(12, 8)
    random_like_init(tok_emb, 2)
    random_like_init(pos_emb, 3)
    token_ids = torch.randint(0, 12, (2, 5), generator=g)
    positions = torch.arange(5)
    with torch.no_grad():
        answer = run_learner(embed_tokens, token_ids, tok_emb, pos_emb)
        expected = tok_emb(token_ids) + pos_emb(positions)
        mistakes = [
            ("the position embeddings are missing: add pos_emb(positions) for positions 0 .. n_tokens - 1",
             tok_emb(token_ids)),
            ("pos_emb is looked up by token id; look it up by position, torch.arange(n_tokens)",
             tok_emb(token_ids) + pos_emb(token_ids)),
            ("the positions start at 1; the first token is at position 0", tok_emb(token_ids) + pos_emb(positions + 1)),
        ]
    return messages_of(compare(answer, expected, "the input vectors", mistakes))


@exercise("01.2", "attention weights and context vectors without trainable weights")
def check_simple_attention(simple_attention):
    x = torch.randn(6, 3, generator=generator(4))
    with torch.no_grad():
        answer = run_learner(simple_attention, x, returns=tuple)
    if not (isinstance(answer, tuple) and len(answer) == 2):
        return ["return a pair: (weights, contexts)"]
    weights, contexts = answer
    scores = x @ x.T
    expected_weights = torch.softmax(scores, dim=-1)
    weight_mistakes = [
        ("the softmax runs along the wrong axis: each row (one query) must sum to 1, so use dim=-1",
         torch.softmax(scores, dim=0)),
        ("these are the raw scores: apply softmax, so that each row is positive and sums to 1", scores),
    ]
    context_mistakes = [("the context vectors must average the token vectors: weights @ x, not weights.T @ x",
                         expected_weights.T @ x)]
    weights_message = compare(weights, expected_weights, "weights", weight_mistakes)
    if weights_message and isinstance(weights, torch.Tensor) and isinstance(contexts, torch.Tensor) \
            and weights.shape == (6, 6) and close(contexts, weights @ x):
        return [weights_message]  # the contexts follow from the weights given: only the weights are wrong
    return messages_of(weights_message, compare(contexts, expected_weights @ x, "contexts", context_mistakes))


@exercise("01.3", "scaled dot-product attention")
def check_scaled_attention(scaled_attention):
    g = generator(5)
    queries, keys, values = (torch.randn(2, 5, 16, generator=g) for _ in range(3))
    with torch.no_grad():
        answer = run_learner(scaled_attention, queries, keys, values)
    scores = queries @ keys.transpose(-2, -1)
    mistakes = [
        ("the scores are not scaled: divide them by √d_k = √16 before the softmax",
         torch.softmax(scores, dim=-1) @ values),
        ("the scores are divided by d_k = 16; divide by its square root, √d_k = 4",
         torch.softmax(scores / 16, dim=-1) @ values),
        ("the softmax runs along the queries' axis: use dim=-1, so each query's weights sum to 1",
         torch.softmax(scores / 4, dim=-2) @ values),
    ]
    return messages_of(compare(answer, torch.softmax(scores / 4, dim=-1) @ values, "the context", mistakes))


@exercise("01.4", "the causal mask")
def check_causal_attention_weights(causal_attention_weights):
    scores = torch.randn(2, 6, 6, generator=generator(6))
    with torch.no_grad():
        answer = run_learner(causal_attention_weights, scores)
    future = torch.triu(torch.ones(6, 6, dtype=torch.bool), diagonal=1)
    expected = torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1)
    with_diagonal = torch.triu(torch.ones(6, 6, dtype=torch.bool), diagonal=0)
    mistakes = [
        ("the future was zeroed after the softmax, so the rows no longer sum to 1: set the future's scores "
         "to -inf before the softmax", torch.softmax(scores, dim=-1).masked_fill(future, 0.0)),
        ("the diagonal is masked too: a token may attend to itself, so mask only above the diagonal "
         "(torch.triu(..., diagonal=1))", torch.softmax(scores.masked_fill(with_diagonal, float("-inf")), dim=-1)),
        ("the mask hides the past and shows the future: mask the entries above the diagonal, not below",
         torch.softmax(scores.masked_fill(future.T, float("-inf")), dim=-1)),
        ("the scores are not passed through softmax", scores.masked_fill(future, float("-inf"))),
    ]
    return messages_of(compare(answer, expected, "the attention weights", mistakes))


def multi_head_reference(x, qkv, out_proj, n_heads, causal=True, split_right=True, merge_right=True,
                         project=True, scale=True):
    """Multi-head attention written out, with switches for the typical mistakes (its correct form is
    checked against 01's CausalSelfAttention in the tests)."""
    batch, n_tokens, emb_dim = x.shape
    head_dim = emb_dim // n_heads

    def split(t):
        if split_right:
            return t.view(batch, n_tokens, n_heads, head_dim).transpose(1, 2)
        return t.reshape(batch, n_heads, n_tokens, head_dim)

    queries, keys, values = map(split, qkv(x).split(emb_dim, dim=-1))
    scores = queries @ keys.transpose(-2, -1) / (head_dim ** 0.5 if scale else 1.0)
    if causal:
        future = torch.triu(torch.ones(n_tokens, n_tokens, dtype=torch.bool), diagonal=1)
        scores = scores.masked_fill(future, float("-inf"))
    context = torch.softmax(scores, dim=-1) @ values
    merged = context.transpose(1, 2).reshape(batch, n_tokens, emb_dim) if merge_right else \
        context.reshape(batch, n_tokens, emb_dim)
    return out_proj(merged) if project else merged


@exercise("01.5", "multi-head causal self-attention")
def check_multi_head_attention(multi_head_attention):
    from gpt2_from_scratch.architecture import CausalSelfAttention  # 01, section 3.7
    attention = random_like_init(CausalSelfAttention(12, 3, qkv_bias=True), 7).eval()
    x = torch.randn(2, 5, 12, generator=generator(8))
    with torch.no_grad():
        answer = run_learner(multi_head_attention, x, attention.qkv, attention.out_proj, 3)
        expected = attention(x)
        args = (x, attention.qkv, attention.out_proj, 3)
        mistakes = [
            ("tokens see the future: apply the causal mask", multi_head_reference(*args, causal=False)),
            ("the heads are split in the wrong order: view as (batch, n_tokens, n_heads, head_dim), "
             "then transpose(1, 2)", multi_head_reference(*args, split_right=False, merge_right=False)),
            ("the heads are merged in the wrong order: transpose(1, 2) back to (batch, n_tokens, n_heads, "
             "head_dim) before reshaping to (batch, n_tokens, emb_dim)", multi_head_reference(*args, merge_right=False)),
            ("the output projection is missing: finish with out_proj(...)", multi_head_reference(*args, project=False)),
            ("the scores are not scaled by 1/√head_dim", multi_head_reference(*args, scale=False)),
        ]
    return messages_of(compare(answer, expected, "the output", mistakes))


@exercise("01.6", "the feed-forward network")
def check_apply_feed_forward(apply_feed_forward):
    from gpt2_from_scratch.architecture import FeedForward  # 01, section 4.3
    network = random_like_init(FeedForward(8), 9)
    x = 3 * torch.randn(2, 4, 8, generator=generator(10))
    with torch.no_grad():
        answer = run_learner(apply_feed_forward, x, network.expand, network.project)
        mistakes = [
            ("GPT-2 uses GELU, not ReLU", network.project(F.relu(network.expand(x)))),
            ("this is the exact GELU; GPT-2 uses its tanh approximation, F.gelu(..., approximate='tanh')",
             network.project(F.gelu(network.expand(x)))),
            ("the activation between the two layers is missing", network.project(network.expand(x))),
        ]
        # rtol 1e-5: exact GELU differs from the tanh form by at most about 5e-4
        return messages_of(compare(answer, network(x), "the output", mistakes, rtol=1e-5))


@exercise("01.7", "layer normalisation")
def check_layer_norm(layer_norm):
    g = generator(11)
    x = 4 * torch.randn(3, 4, 8, generator=g) + 2
    x[0, 0] = 1.0 + 0.01 * torch.randn(8, generator=g)  # a row of small variance, where eps matters
    weight, bias = torch.randn(8, generator=g), torch.randn(8, generator=g)
    eps = 1e-5
    answer = run_learner(layer_norm, x, weight, bias)
    mean = x.mean(dim=-1, keepdim=True)
    variance = x.var(dim=-1, keepdim=True, unbiased=False)
    mistakes = [
        ("the variance is the unbiased one (divided by n - 1); layer norm divides by n: var(unbiased=False)",
         (x - mean) / torch.sqrt(x.var(dim=-1, keepdim=True) + eps) * weight + bias),
        ("eps must go inside the square root: (x - mean) / sqrt(variance + eps)",
         (x - mean) / (torch.sqrt(variance) + eps) * weight + bias),
        ("the scale (weight) and shift (bias) are not applied", (x - mean) / torch.sqrt(variance + eps)),
        ("the statistics are taken over the wrong axis: normalise each token's vector, dim=-1",
         (x - x.mean(dim=0, keepdim=True)) / torch.sqrt(x.var(dim=0, keepdim=True, unbiased=False) + eps)
         * weight + bias),
    ]
    return messages_of(compare(answer, F.layer_norm(x, (8,), weight, bias, eps), "the output", mistakes))


def small_config(**overrides):
    from gpt2_from_scratch.architecture import GPTConfig  # 01, section 4.5
    return GPTConfig(**{**dict(vocab_size=50, context_length=16, emb_dim=16, n_heads=2, n_layers=2,
                               drop_rate=0.0), **overrides})


@exercise("01.8", "the transformer block")
def check_block_forward(block_forward):
    from gpt2_from_scratch.architecture import TransformerBlock  # 01, section 4.6
    block = random_like_init(TransformerBlock(small_config()), 12).eval()
    x = torch.randn(2, 5, 16, generator=generator(13))
    with torch.no_grad():
        answer = run_learner(block_forward, block, x)
        attn, ff, norm1, norm2 = block.attn, block.ff, block.norm1, block.norm2
        attended = attn(norm1(x))
        post_ln = norm1(x + attn(x))
        post_ln = norm2(post_ln + ff(post_ln))
        after_attention = x + attended
        normalised_shortcut = norm1(x) + attended
        mistakes = [
            ("the shortcuts are missing: add each sub-layer's output to its input, x = x + attn(norm1(x))",
             ff(norm2(attended))),
            ("this is post-LN (norm after the addition); GPT-2 is pre-LN: x = x + attn(norm1(x))", post_ln),
            ("the shortcut adds the normalised x; it must add the un-normalised x: x + attn(norm1(x))",
             normalised_shortcut + ff(norm2(normalised_shortcut))),
            ("the feed-forward half is missing: then x = x + ff(norm2(x))", after_attention),
        ]
        return messages_of(compare(answer, block(x), "the output", mistakes))


@exercise("01.9", "the configuration's parameter count")
def check_count_gpt_parameters(count_gpt_parameters):
    from gpt2_from_scratch.architecture import GPTConfig, parameter_count  # 01, sections 4.5 and 5.1
    messages = []
    for cfg in (GPTConfig.from_preset("124M"), GPTConfig.from_preset("355M"),
                small_config(qkv_bias=False, tie_weights=False)):
        answer, expected = run_learner(count_gpt_parameters, cfg, returns=numbers.Real), parameter_count(cfg)
        if answer == expected:
            continue
        difference = answer - expected
        layer_norms = (4 * cfg.n_layers + 2) * cfg.emb_dim
        if cfg.tie_weights and difference == cfg.vocab_size * cfg.emb_dim:
            messages.append(f"{cfg.emb_dim}-wide model: you counted out_head's weight, but with tie_weights "
                            "it is tok_emb's matrix, counted once")
        elif not cfg.tie_weights and difference == -cfg.vocab_size * cfg.emb_dim:
            messages.append("without tie_weights, out_head has its own vocab_size × emb_dim weight: count it")
        elif cfg.qkv_bias and difference == -3 * cfg.emb_dim * cfg.n_layers:
            messages.append("the query/key/value biases are missing (qkv_bias=True): 3 × emb_dim per block")
        elif difference == -layer_norms:
            messages.append("the layer norms are missing: a weight and a bias of emb_dim each, two per block "
                            "and the final one")
        elif difference == -cfg.context_length * cfg.emb_dim:
            messages.append("the position embeddings are missing: context_length × emb_dim")
        else:
            messages.append(f"for emb_dim={cfg.emb_dim}, n_layers={cfg.n_layers}: {answer:,}, expected "
                            f"{expected:,} ({difference:+,})")
    return messages


@exercise("01.10", "the whole model's forward pass")
def check_gpt_forward(gpt_forward):
    from gpt2_from_scratch.architecture import GPTModel  # 01, section 5
    torch.manual_seed(14)
    model = GPTModel(small_config()).eval()
    random_like_init(model.final_norm, 15)
    token_ids = torch.randint(0, 50, (2, 6), generator=generator(16))
    positions = torch.arange(6)

    def run(x, final_norm=True):
        for block in model.blocks:
            x = block(x)
        return model.out_head(model.final_norm(x) if final_norm else x)

    with torch.no_grad():
        answer = run_learner(gpt_forward, model, token_ids)
        mistakes = [
            ("the position embeddings are missing: add model.pos_emb(positions)", run(model.tok_emb(token_ids))),
            ("the final layer norm is missing: model.final_norm before model.out_head",
             run(model.tok_emb(token_ids) + model.pos_emb(positions), final_norm=False)),
            ("the positions start at 1; they run 0 .. n_tokens - 1",
             run(model.tok_emb(token_ids) + model.pos_emb(positions + 1))),
        ]
        return messages_of(compare(answer, model(token_ids), "the logits", mistakes))


@exercise("01.11", "GPT-2's weight initialisation")
def check_init_gpt_weights(init_gpt_weights):
    from gpt2_from_scratch.architecture import GPTModel  # 01, section 5
    cfg = small_config(emb_dim=128, n_heads=4, n_layers=8, vocab_size=500, context_length=64)
    model = GPTModel(cfg)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" not in name:  # layer norms keep their weight 1 and bias 0, as GPTModel leaves them
                parameter.fill_(0.5)  # so that anything left alone shows
    residual_std = 0.02 / math.sqrt(2 * cfg.n_layers)
    torch.manual_seed(17)
    run_learner(init_gpt_weights, changes=model, returns=None)
    messages = []
    for name, parameter in model.named_parameters():
        if ".norm" in name or name.startswith("final_norm"):
            target = 1.0 if name.endswith("weight") else 0.0
            if not torch.all(parameter == target):
                messages.append(f"{name} should be {target:g}: layer norms start as the identity (weight 1, "
                                "bias 0)")
        elif name.endswith("bias"):
            if not torch.all(parameter == 0):
                messages.append(f"{name} should be zero")
        else:
            expected = residual_std if name.endswith(("attn.out_proj.weight", "ff.project.weight")) else 0.02
            std, mean = parameter.std().item(), parameter.mean().item()
            if abs(std - expected) > 0.15 * expected or abs(mean) > 0.2 * expected:
                why = (" (the residual projections are scaled down to 0.02 / √(2 · n_layers))"
                       if expected == residual_std else "")
                messages.append(f"{name} has mean {mean:.4f} and std {std:.4f}; expected mean 0 and std "
                                f"{expected:.4f}{why}")
    if len(messages) > 6:
        messages = messages[:6] + [f"... and {len(messages) - 6} more"]
    return messages


# --------------------------------------------------------------------------- 02: pretraining

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
    ]
    expected = torch.softmax(top_k_filter(logits / 0.7, 4), dim=-1)
    return messages_of(compare(answer, expected, "the probabilities", mistakes))


# --------------------------------------------------------------------------- 03: pretrained weights

@exercise("03.1", "loading one block from OpenAI's checkpoint")
def check_load_block_weights(load_block_weights):
    from gpt2_from_scratch.architecture import GPTModel, TransformerBlock  # 01
    from gpt2_from_scratch.weights import gpt_to_openai_params  # 03, section 9
    torch.manual_seed(20)
    model = random_like_init(GPTModel(small_config(n_layers=1)), 21)
    block_params = gpt_to_openai_params(model)["blocks"][0]
    block = TransformerBlock(small_config())
    with torch.no_grad():
        for parameter in block.parameters():
            parameter.zero_()
    try:
        run_learner(load_block_weights, block_params, changes=block, returns=None)
    except RuntimeError as error:
        if "size" in str(error) or "shape" in str(error):
            return [f"a shape does not fit ({error}): the checkpoint stores a weight as [in, out], nn.Linear as "
                    "[out, in], so copy the transpose (w.T)"]
        raise
    loaded, reference = dict(block.named_parameters()), dict(model.blocks[0].named_parameters())
    messages = []
    for name, expected in reference.items():
        answer = loaded[name].detach()
        partner = name.replace("weight", "bias") if name.endswith("weight") else name.replace("bias", "weight")
        mistakes = [(f"{name} holds its transpose: transpose the checkpoint's weight", expected.T)] \
            if expected.dim() == 2 else []
        if partner in reference and reference[partner].shape == expected.shape:
            mistakes.append((f"{name} holds {partner}'s values: g is the gain (weight), b the bias",
                             reference[partner].detach()))
        messages.append(compare(answer, expected.detach(), name, mistakes))
    return messages_of(*messages)


@exercise("03.2", "splitting c_attn into queries, keys and values")
def check_split_c_attn(split_c_attn):
    g = generator(22)
    d = 6
    c_attn_w = torch.randn(d, 3 * d, generator=g).numpy()  # as in the checkpoint: [in, out]
    answer = run_learner(split_c_attn, c_attn_w, returns=tuple)
    if not (isinstance(answer, tuple) and len(answer) == 3):
        return ["return three weights: (query_weight, key_weight, value_weight)"]
    if any(torch.as_tensor(part).shape == (d // 3, 3 * d) for part in answer):
        return ["the split is along the first axis: c_attn/w is [in, 3 · out], split its last axis in three"]
    w = torch.from_numpy(c_attn_w)
    messages = []
    for name, part, right in zip(("query_weight", "key_weight", "value_weight"), answer, w.split(d, dim=-1)):
        mistakes = [(f"{name} is not transposed: the checkpoint stores [in, out], nn.Linear [out, in]", right)]
        messages.append(compare(torch.as_tensor(part), right.T, name, mistakes))
    return messages_of(*messages)


# --------------------------------------------------------------------------- 04: classification

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


# --------------------------------------------------------------------------- 05: instructions

@exercise("05.1", "collating with the prompt masked")
def check_collate_masked_prompt(collate_masked_prompt):
    from gpt2_from_scratch.instruct import custom_collate_fn  # 05, section 2
    batch = [([11, 12, 13, 14, 15, 16], 4), ([21, 22, 23], 2), ([31, 32, 33, 34], 1)]
    answer = run_learner(collate_masked_prompt, batch, returns=tuple)
    if not (isinstance(answer, tuple) and len(answer) == 2):
        return ["return a pair: (inputs, targets)"]
    inputs, targets = answer
    expected_inputs, expected_targets = custom_collate_fn(batch, mask_prompt=True)
    unmasked = custom_collate_fn(batch)[1]
    no_end = expected_targets.clone()
    for row, (ids, _) in enumerate(batch):
        no_end[row, len(ids) - 1] = -100
    shifted_mask = expected_targets.clone()
    for row, (ids, prompt_length) in enumerate(batch):
        shifted_mask[row, prompt_length - 1] = -100  # one target too many masked
    mistakes = [
        ("the prompt's targets are not masked: set targets[: prompt_length - 1] to -100", unmasked),
        ("each example's first <|endoftext|> must stay a target (the model learns to stop); only the padding "
         "after it becomes -100", no_end),
        ("one prompt target too many is masked: target i is token i + 1, so the first response token is "
         "target prompt_length - 1 and must stay", shifted_mask),
    ]
    return messages_of(compare(inputs, expected_inputs, "inputs"),
                       compare(targets, expected_targets, "targets", mistakes))


@exercise("05.2", "the Alpaca prompt")
def check_alpaca_prompt(alpaca_prompt):
    from gpt2_from_scratch.instruct import RESPONSE_MARKER, format_input  # 05, section 1
    entries = [{"instruction": "Rewrite the sentence in the passive voice.", "input": "The cat chased the dog.",
                "output": "The dog was chased by the cat."},
               {"instruction": "Name a primary colour.", "input": "", "output": "Red."}]
    messages = []
    for entry in entries:
        answer, expected = run_learner(alpaca_prompt, entry, returns=str), format_input(entry) + RESPONSE_MARKER
        if answer == expected:
            continue
        kind = "with" if entry["input"] else "without"
        if not isinstance(answer, str):
            messages.append(f"return a string, not {type(answer).__name__}")
        elif not entry["input"] and "### Input:" in answer:
            messages.append("an entry without input must have no '### Input:' section")
        elif answer == format_input(entry):
            messages.append(f"the prompt must end with the response marker {RESPONSE_MARKER!r}")
        elif entry["output"] in answer:
            messages.append("the prompt must not contain the response (the output)")
        else:
            position = next(i for i, (a, b) in enumerate(zip(answer + "\0", expected + "\0")) if a != b)
            messages.append(f"an entry {kind} input: the prompt differs from the template at character {position}: "
                            f"{answer[position:position + 20]!r} instead of {expected[position:position + 20]!r}")
    return messages
