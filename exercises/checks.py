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
the Result instead of printing it (the tests use it), each message once and, of many alike but for their
numbers (one per block of a model), the first few and how many more (collapse_alike).

A checker calls the learner's function only through `run_learner`, which runs it on deep copies of the
inputs (so that code changing its arguments in place cannot change what it is compared with), within a
time limit (TIME_LIMIT_S), and restores torch's global state afterwards (default dtype and device, grad
mode, random state), whatever happens; a result that is None, of the wrong type or on another device
than the inputs is reported as such rather than failing inside the checker.

This module is the machinery; the checkers are in one module per notebook, named as the generated package
names that notebook's code: exercises/architecture.py (01), pretraining.py (02), weights.py (03),
classify.py (04), instruct.py (05). Importing `exercises` imports them all, and each checker registers
itself in EXERCISES with @exercise. To add an exercise, add a checker to its notebook's module and a
solution to solutions/.
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
    messages = list(dict.fromkeys(messages))  # the same message from several cases is said once,
    messages = collapse_alike(messages)       # and many alike ones (one per block, ...) in a few lines
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


# Of the messages alike but for their numbers (one per block of a model, ...), the ones shown; the rest are
# counted in one line.
ALIKE_SHOWN = 3


def collapse_alike(messages, shown=ALIKE_SHOWN):
    """The messages with those alike said together, where the first of them stands, and of more than
    shown + 1 alike ones the first `shown` and "… and N more like these".

    Alike: the same once every word holding a digit is set aside (a parameter's name with its block's
    index, a measured value), as "blocks.0.attn.out_proj.weight has std 0.0202; ..." and
    "blocks.1.ff.project.weight has std 0.0199; ..." are.
    """
    alike = {}
    for message in messages:
        alike.setdefault(" ".join("#" if any(c.isdigit() for c in word) else word for word in message.split()),
                         []).append(message)
    collapsed = []
    for group in alike.values():
        if len(group) > shown + 1:  # hiding a single one would take the line it takes to show it
            group = group[:shown] + [f"… and {len(group) - shown} more like these"]
        collapsed += group
    return collapsed


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
            f"{_number(actual[index].item())}, expected {_number(expected[index].item())}")


def _number(value):
    """A tensor's entry as a learner reads it: a whole number (a token id) in full, others to 4 digits."""
    return str(value) if isinstance(value, (bool, int)) else f"{value:.4g}"


def error_raised_by(compute):
    """The message of the error compute() raises, None if it raises none: what a mistake that fails gives
    (01.3's keys.T), to compare with the error the learner's code raised."""
    try:
        compute()
    except Exception as error:
        return str(error)
    return None


def messages_of(*found):
    return [message for message in found if message]


def random_like_init(module, seed):
    """Give every parameter of `module` random values, so that swapped or missing parameters show."""
    g = generator(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=g) * 0.5)
    return module


def small_config(**overrides):
    """A GPTConfig small enough to check in milliseconds (01.8, 01.10, 03.1), with `overrides`."""
    from gpt2_from_scratch.architecture import GPTConfig  # 01, section 4.5
    return GPTConfig(**{**dict(vocab_size=50, context_length=16, emb_dim=16, n_heads=2, n_layers=2,
                               drop_rate=0.0), **overrides})

