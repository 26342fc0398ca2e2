"""The exercise checkers: every solution passes, every notebook skeleton reports "not attempted", and
typical wrong answers (at least two per exercise, kept here) fail with the message meant for them."""

import copy
import dataclasses
import json
import math
import signal
import threading
import time
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import REPO_ROOT, import_script
from exercises import EXERCISES, check_exercise, run_check
from exercises.architecture import multi_head_reference
from exercises.checks import NOT_ATTEMPTED

SOLUTION_FILES = ["01_architecture", "02_pretraining", "03_pretrained_weights", "04_finetune_classify",
                  "05_finetune_instruct"]


def solutions():
    found = {}
    for name in SOLUTION_FILES:
        found.update(import_script(f"solutions/{name}.py").SOLUTIONS)
    return found


SOLUTIONS = solutions()


def test_every_exercise_has_one_solution():
    assert sorted(SOLUTIONS) == sorted(EXERCISES)
    assert len(EXERCISES) >= 20


@pytest.mark.parametrize("exercise_id", list(EXERCISES))
def test_the_solution_passes(exercise_id):
    result = run_check(exercise_id, SOLUTIONS[exercise_id])
    assert result.passed, result.messages


def notebook_exercise_cells():
    """(notebook, exercise id, source) of every cell of the notebooks that calls check_exercise."""
    cells = []
    for notebook in sorted(REPO_ROOT.glob("0*_*.ipynb")):
        for cell in json.loads(notebook.read_text(encoding="utf-8"))["cells"]:
            source = "".join(cell["source"])
            if cell["cell_type"] == "code" and "check_exercise(" in source:
                exercise_id = source.split('check_exercise("', 1)[1].split('"', 1)[0]
                cells.append((notebook.name, exercise_id, source))
    return cells


def test_every_exercise_is_in_its_notebook_once_and_its_skeleton_is_not_attempted(capsys):
    cells = notebook_exercise_cells()
    assert sorted(exercise_id for _, exercise_id, _ in cells) == sorted(EXERCISES)
    for notebook, exercise_id, source in cells:
        assert notebook.startswith(exercise_id.split(".")[0]), f"{exercise_id} is in {notebook}"
        namespace = {"torch": torch, "nn": torch.nn, "F": F, "math": math, "np": np,
                     "check_exercise": check_exercise}
        exec(source, namespace)  # the untouched skeleton, then its check, as the notebook runs them
        printed = capsys.readouterr().out
        assert "not attempted yet" in printed, f"{notebook}, exercise {exercise_id}: {printed}"


def test_a_skeleton_is_reported_as_not_attempted_not_failed():
    def skeleton(*args):
        raise NotImplementedError
    result = run_check("01.3", skeleton)
    assert result.status == "not attempted" and result.messages == [NOT_ATTEMPTED]


def test_the_check_prints_the_verdict_and_the_reasons(capsys):
    check_exercise("01.3", lambda q, k, v: torch.softmax(q @ k.transpose(-2, -1), dim=-1) @ v)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "Exercise 01.3 (scaled dot-product attention): failed"
    assert printed[1].startswith("  - the scores are not scaled")


def test_an_error_in_the_learners_code_is_a_failure_that_names_it():
    result = run_check("01.1", lambda ids, tok, pos: tok(ids) + pos(ids.shape))
    assert result.status == "failed" and result.messages[0].startswith("your code raised")


def scaled_attention_in_place(queries, keys, values):
    queries /= math.sqrt(keys.shape[-1])  # right, but changes the caller's tensor
    return torch.softmax(queries @ keys.transpose(-2, -1), dim=-1) @ values


def block_forward_in_place(block, x):
    x += block.attn(block.norm1(x))
    x += block.ff(block.norm2(x))
    return x


def temperature_top_k_in_place(logits, temperature, top_k):
    logits /= temperature
    return SOLUTIONS["02.3"](logits, 1.0, top_k)


@pytest.mark.parametrize("exercise_id, answer", [("01.3", scaled_attention_in_place), ("01.8", block_forward_in_place),
                                                 ("02.3", temperature_top_k_in_place)])
def test_a_right_answer_that_changes_its_inputs_in_place_passes(exercise_id, answer):
    result = run_check(exercise_id, answer)
    assert result.passed, result.messages


IN_PLACE = ("01.11", "03.1")  # the exercises whose function changes its first argument and returns nothing
FORGOT_RETURN = "your function returned None: did you forget `return`?"


def wreck(value, keep_parameters=False):
    """Change in place everything `value` holds: tensors, arrays and a module's parameters to 0, the integers
    of a configuration (a module's too) to 1, of a list to 0, the strings of a dict to ""."""
    if isinstance(value, torch.Tensor):
        value.zero_()
    elif isinstance(value, np.ndarray):
        value[...] = 0
    elif isinstance(value, torch.nn.Module):
        if not keep_parameters:
            for tensor in [*value.parameters(), *value.buffers()]:
                tensor.zero_()
        for attribute in vars(value).values():
            if dataclasses.is_dataclass(attribute):
                wreck(attribute)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            if type(getattr(value, field.name)) is int:
                setattr(value, field.name, 1)
    elif isinstance(value, (dict, list)):
        for key, item in (value.items() if isinstance(value, dict) else enumerate(value)):
            if isinstance(item, (str, int)):
                value[key] = type(item)()
            else:
                wreck(item)
    elif isinstance(value, tuple):
        for item in value:
            wreck(item)


def then_wrecking_its_inputs(exercise_id):
    """The solution, which afterwards wrecks everything it was given (an in-place exercise's model or block
    keeps the parameters it was asked to set)."""
    solution = SOLUTIONS[exercise_id]

    def answer(*args):
        result = copy.deepcopy(solution(*args))
        with torch.no_grad():
            if exercise_id in IN_PLACE:
                wreck(args[0], keep_parameters=True)
                args = args[1:]
            for arg in args:
                wreck(arg)
        return result
    return answer


@pytest.mark.parametrize("exercise_id", list(EXERCISES))
def test_a_right_answer_that_wrecks_its_inputs_afterwards_still_passes(exercise_id):
    # The expected result must not come from what the learner's function was given.
    result = run_check(exercise_id, then_wrecking_its_inputs(exercise_id))
    assert result.passed, result.messages


def test_a_wrong_answer_cannot_pass_by_zeroing_the_layers_it_is_given():
    def feed_forward_zeroing_its_layers(x, expand, project):
        with torch.no_grad():
            for parameter in [*expand.parameters(), *project.parameters()]:
                parameter.zero_()
        return torch.zeros_like(x)
    result = run_check("01.6", feed_forward_zeroing_its_layers)
    assert result.status == "failed"


@pytest.mark.parametrize("exercise_id", [exercise_id for exercise_id in EXERCISES if exercise_id not in IN_PLACE])
def test_a_function_that_returns_nothing_is_asked_about_return(exercise_id):
    result = run_check(exercise_id, lambda *args: None)
    assert result.status == "failed" and result.messages == [FORGOT_RETURN]


TENSOR_RESULTS = ["01.1", "01.3", "01.4", "01.5", "01.6", "01.7", "01.8", "01.10", "02.2", "02.3", "04.1", "04.2"]


@pytest.mark.parametrize("exercise_id", TENSOR_RESULTS + ["01.9", "02.1"])
def test_a_result_of_the_wrong_type_is_named(exercise_id):
    result = run_check(exercise_id, lambda *args: "0.5")
    assert result.status == "failed"
    assert "str" in result.messages[0] and not result.messages[0].startswith("your code raised"), result.messages


def on_meta(value):
    if isinstance(value, tuple):
        return tuple(on_meta(item) for item in value)
    return torch.as_tensor(value).to("meta")


WITH_TENSORS = [exercise_id for exercise_id in EXERCISES if exercise_id not in ("01.9", "05.2")]  # returned or changed


@pytest.mark.parametrize("exercise_id", WITH_TENSORS)
def test_a_result_on_another_device_is_named(exercise_id):
    solution = SOLUTIONS[exercise_id]

    def answer_on_meta(*args):
        result = solution(*args)
        if exercise_id in IN_PLACE:
            args[0].to("meta")  # a module moves in place
            return None
        return on_meta(result)
    result = run_check(exercise_id, answer_on_meta)
    assert result.status == "failed"
    assert "meta device" in result.messages[0] and not result.messages[0].startswith("your code raised"), \
        result.messages


@pytest.mark.parametrize("then_raises", [False, True])
def test_the_global_state_the_learners_code_changes_is_restored(then_raises):
    solution = SOLUTIONS["01.4"]

    def changing_the_global_state(scores):
        answer = solution(scores)
        torch.set_default_dtype(torch.float64)
        torch.set_grad_enabled(False)
        torch.set_default_device("meta")  # as "cuda" would, on a machine with a GPU
        torch.manual_seed(0)
        if then_raises:
            raise ValueError("and then fails")
        return answer

    random_state = torch.get_rng_state()
    try:
        result = run_check("01.4", changing_the_global_state)
        state = (torch.get_default_dtype(), torch.is_grad_enabled(), torch.get_default_device())
    finally:
        torch.set_default_dtype(torch.float32)
        torch.set_grad_enabled(True)
        torch.set_default_device(None)
    # restored after each call of the learner's function: the checker's own tensors after it are right too
    assert result.passed != then_raises, result.messages
    assert state == (torch.float32, True, torch.device("cpu"))
    assert torch.equal(torch.get_rng_state(), random_state)


needs_sigalrm = pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="no SIGALRM on this platform")


@needs_sigalrm
@pytest.mark.parametrize("how", ["busy", "asleep"])
def test_a_function_that_does_not_return_is_stopped_at_the_time_limit(how):
    solution = SOLUTIONS["01.3"]

    def not_returning(queries, keys, values):  # 10 s stands for forever: a broken limit fails the test, not hangs
        if how == "asleep":
            time.sleep(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pass
        return solution(queries, keys, values)

    handler, start = signal.getsignal(signal.SIGALRM), time.monotonic()
    result = run_check("01.3", not_returning, time_limit_s=0.5)
    assert time.monotonic() - start < 5
    assert result.status == "failed" and len(result.messages) == 1, result.messages
    assert result.messages[0].startswith("your function did not return within 0.5 s"), result.messages
    assert signal.getsignal(signal.SIGALRM) is handler and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


@needs_sigalrm
def test_the_time_limit_leaves_a_timer_set_outside_the_check_running():
    fired = []
    previous = signal.signal(signal.SIGALRM, lambda *args: fired.append(True))
    try:
        signal.setitimer(signal.ITIMER_REAL, 100)
        assert run_check("01.3", SOLUTIONS["01.3"], time_limit_s=5).passed
        remaining = signal.getitimer(signal.ITIMER_REAL)[0]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert 90 < remaining <= 100 and not fired


def test_off_the_main_thread_the_check_runs_without_a_time_limit():
    results = []
    thread = threading.Thread(target=lambda: results.append(run_check("01.3", SOLUTIONS["01.3"], time_limit_s=0.5)))
    thread.start()
    thread.join()
    assert results and results[0].passed, results


def test_a_finished_exercise_that_calls_an_unfinished_one_is_not_called_unattempted():
    def causal_attention_weights(scores):
        raise NotImplementedError

    def multi_head_attention(x, qkv, out_proj, n_heads):
        return causal_attention_weights(x)

    result = run_check("01.5", multi_head_attention)
    assert result.status == "failed"
    assert result.messages == ["a function your code calls, causal_attention_weights, still raises "
                               "NotImplementedError: finish it first"]


def test_the_reference_for_wrong_multi_head_answers_is_right_when_nothing_is_switched_off():
    from gpt2_from_scratch.architecture import CausalSelfAttention
    attention = CausalSelfAttention(12, 3, qkv_bias=True).eval()
    x = torch.randn(2, 5, 12)
    with torch.no_grad():
        assert torch.allclose(multi_head_reference(x, attention.qkv, attention.out_proj, 3), attention(x), atol=1e-6)


# --------------------------------------------------------------------------- wrong answers

def mha(**switch):
    return lambda x, qkv, out_proj, n_heads: multi_head_reference(x, qkv, out_proj, n_heads, **switch)


def scaled_attention_with_keys_T(matmul):
    """01.3 with keys.T, which on (batch, n_tokens, d_k) keys reverses all three axes."""
    def answer(queries, keys, values):
        with warnings.catch_warnings():  # .T on a 3-D tensor is deprecated: torch says so, once
            warnings.simplefilter("ignore", UserWarning)
            keys_transposed = keys.T
        return torch.softmax(matmul(queries, keys_transposed) / 4, dim=-1) @ values
    return answer


def causal_weights_masking(mask, fill=float("-inf")):
    """01.4 with the (6, 6) boolean `mask`'s entries set to `fill` before the softmax."""
    return lambda scores: torch.softmax(scores.masked_fill(mask, fill), dim=-1)


def layer_norm_with(variance_unbiased=False, eps_outside=False, affine=True, dim=-1):
    def answer(x, weight, bias, eps=1e-5):
        mean = x.mean(dim=dim, keepdim=True)
        variance = x.var(dim=dim, keepdim=True, unbiased=variance_unbiased)
        normalised = (x - mean) / (torch.sqrt(variance) + eps if eps_outside else torch.sqrt(variance + eps))
        return normalised * weight + bias if affine else normalised
    return answer


def block_post_ln(block, x):
    x = block.norm1(x + block.attn(x))
    return block.norm2(x + block.ff(x))


def block_without_shortcuts(block, x):
    return block.ff(block.norm2(block.attn(block.norm1(x))))


def block_in_parallel(block, x):  # GPT-J's block: both halves read the same x
    return x + block.attn(block.norm1(x)) + block.ff(block.norm2(x))


def block_feed_forward_first(block, x):
    x = x + block.ff(block.norm2(x))
    return x + block.attn(block.norm1(x))


def block_feed_forward_first_with_norm1(block, x):  # the halves swapped, the norms left in their order
    x = x + block.ff(block.norm1(x))
    return x + block.attn(block.norm2(x))


def params_counting_the_tied_head(cfg):
    return SOLUTIONS["01.9"](cfg) + (cfg.vocab_size * cfg.emb_dim if cfg.tie_weights else 0)


def params_without_layer_norms(cfg):
    return SOLUTIONS["01.9"](cfg) - (4 * cfg.n_layers + 2) * cfg.emb_dim


def gpt_forward_without_positions(model, token_ids):
    x = model.tok_emb(token_ids)
    for block in model.blocks:
        x = block(x)
    return model.out_head(model.final_norm(x))


def gpt_forward_without_final_norm(model, token_ids):
    x = model.tok_emb(token_ids) + model.pos_emb(torch.arange(token_ids.shape[1]))
    for block in model.blocks:
        x = block(x)
    return model.out_head(x)


def init_without_residual_scaling(model):
    for name, parameter in model.named_parameters():
        if "norm" in name:
            continue  # layer norms stay as they are: weight 1, bias 0
        elif name.endswith("bias"):
            torch.nn.init.zeros_(parameter)
        else:
            torch.nn.init.normal_(parameter, std=0.02)


def init_everything_normal(model):
    for parameter in model.parameters():
        torch.nn.init.normal_(parameter, std=0.02)


def lr_decaying_to_zero(step, total, peak, warmup, initial, minimum):
    return SOLUTIONS["02.1"](step, total, peak, warmup, initial, 0.0)


def lr_without_warmup(step, total, peak, warmup, initial, minimum):
    return SOLUTIONS["02.1"](step, total, peak, 0, initial, minimum)


def nucleus_dropping_the_crossing_token(probabilities, top_p):
    ordered, order = probabilities.sort(dim=-1, descending=True)
    keep = torch.zeros_like(ordered, dtype=torch.bool).scatter(-1, order, ordered.cumsum(-1) < top_p)
    kept = probabilities * keep
    return kept / kept.sum(-1, keepdim=True)


def nucleus_not_renormalised(probabilities, top_p):
    kept = SOLUTIONS["02.2"](probabilities, top_p)
    return probabilities * (kept > 0)


def load_block_untransposed(block, block_params):
    SOLUTIONS["03.1"](block, block_params)
    with torch.no_grad():  # c_proj is square, so the forgotten transpose still fits
        block.attn.out_proj.weight.copy_(torch.from_numpy(block_params["attn"]["c_proj"]["w"]))


def load_block_swapping_gain_and_bias(block, block_params):
    SOLUTIONS["03.1"](block, block_params)
    with torch.no_grad():
        block.norm2.weight.copy_(torch.from_numpy(block_params["ln_2"]["b"]))
        block.norm2.bias.copy_(torch.from_numpy(block_params["ln_2"]["g"]))


def load_block_never_transposing(block, block_params):
    with torch.no_grad():
        block.attn.qkv.weight.copy_(torch.from_numpy(block_params["attn"]["c_attn"]["w"]))


def collate_without_end_token(batch):
    inputs, targets = SOLUTIONS["05.1"](batch)
    for row, (token_ids, _) in enumerate(batch):
        targets[row, len(token_ids) - 1] = -100
    return inputs, targets


def collate_masking_one_too_many(batch):
    inputs, targets = SOLUTIONS["05.1"](batch)
    for row, (_, prompt_length) in enumerate(batch):
        targets[row, : prompt_length] = -100
    return inputs, targets


def prompt_always_with_input(entry):
    return SOLUTIONS["05.2"]({**entry, "input": entry["input"] or " "}).replace("### Input:\n \n", "### Input:\n\n")


WRONG_ANSWERS = [
    ("01.1", lambda ids, tok, pos: tok(ids), "the position embeddings are missing"),
    ("01.1", lambda ids, tok, pos: tok(ids) + pos(ids), "pos_emb is looked up by token id"),
    ("01.1", lambda ids, tok, pos: tok(ids) + pos(torch.arange(1, ids.shape[1] + 1)), "the positions start at 1"),
    ("01.2", lambda x: (torch.softmax(x @ x.T, dim=0), torch.softmax(x @ x.T, dim=0) @ x), "the wrong axis"),
    ("01.2", lambda x: (x @ x.T, x @ x.T @ x), "these are the raw scores"),
    ("01.3", lambda q, k, v: torch.softmax(q @ k.transpose(-2, -1), -1) @ v, "the scores are not scaled"),
    ("01.3", lambda q, k, v: torch.softmax(q @ k.transpose(-2, -1) / k.shape[-1], -1) @ v, "divided by d_k = 16"),
    ("01.3", lambda q, k, v: torch.softmax(q @ k.transpose(-2, -1) / 4, -2) @ v, "the queries' axis"),
    ("01.3", scaled_attention_with_keys_T(torch.matmul), "keys.T reverses all three axes"),
    ("01.3", scaled_attention_with_keys_T(torch.bmm), "keys.T reverses all three axes"),
    ("01.4", lambda s: torch.softmax(s, -1).masked_fill(torch.ones(6, 6).triu(1).bool(), 0.0),
     "the future was zeroed after the softmax"),
    ("01.4", lambda s: torch.softmax(s.masked_fill(torch.ones(6, 6).triu(0).bool(), float("-inf")), -1),
     "the diagonal is masked too"),
    ("01.4", lambda s: torch.softmax(s.masked_fill(torch.ones(6, 6).tril(-1).bool(), float("-inf")), -1),
     "hides the past"),
    ("01.4", lambda s: torch.softmax(s.masked_fill(torch.ones(6, 6).triu(1).bool(), 0.0), -1),
     "set to 0 before the softmax"),
    ("01.4", causal_weights_masking(torch.ones(6, 6).triu(0).bool()), "row 0 of the attention weights is NaN"),
    ("01.4", causal_weights_masking(torch.ones(6, 6).triu(0).bool(), -1e9), "the diagonal is masked too"),
    ("01.4", causal_weights_masking(torch.ones(6, 6).tril(0).bool()), "row 5 of the attention weights is NaN"),
    ("01.5", mha(causal=False), "tokens see the future"),
    ("01.5", mha(merge_right=False), "merged in the wrong order"),
    ("01.5", mha(split_right=False, merge_right=False), "split in the wrong order"),
    ("01.5", mha(project=False), "the output projection is missing"),
    ("01.5", mha(scale=12 ** 0.5), "divided by √emb_dim"),
    ("01.6", lambda x, expand, project: project(F.relu(expand(x))), "not ReLU"),
    ("01.6", lambda x, expand, project: project(F.gelu(expand(x))), "tanh approximation"),
    ("01.6", lambda x, expand, project: project(expand(x)), "activation between the two layers is missing"),
    ("01.7", layer_norm_with(variance_unbiased=True), "unbiased"),
    ("01.7", layer_norm_with(eps_outside=True), "eps must go inside the square root"),
    ("01.7", layer_norm_with(affine=False), "(weight) and shift (bias) are not applied"),
    ("01.7", layer_norm_with(dim=0), "over the wrong axis"),
    ("01.8", block_post_ln, "post-LN"),
    ("01.8", block_without_shortcuts, "the shortcuts are missing"),
    ("01.8", lambda block, x: x + block.attn(block.norm1(x)), "the feed-forward half is missing"),
    ("01.8", block_in_parallel, "the two halves run in parallel"),
    ("01.8", block_feed_forward_first, "the feed-forward half comes first"),
    ("01.8", block_feed_forward_first_with_norm1, "the feed-forward half comes first"),
    ("01.9", params_counting_the_tied_head, "you counted out_head's weight"),
    ("01.9", params_without_layer_norms, "the layer norms are missing"),
    ("01.9", lambda cfg: SOLUTIONS["01.9"](cfg) - 5 * cfg.emb_dim * cfg.n_layers, "the feed-forward biases are missing"),
    ("01.10", gpt_forward_without_positions, "the position embeddings are missing"),
    ("01.10", gpt_forward_without_final_norm, "the final layer norm is missing"),
    ("01.11", init_without_residual_scaling, "the residual projections are scaled down"),
    ("01.11", init_everything_normal, "should be 1: layer norms start as the identity"),
    ("02.1", lr_decaying_to_zero, "the cosine decays to 0"),
    ("02.1", lr_without_warmup, "there is no warmup"),
    ("02.2", nucleus_dropping_the_crossing_token, "makes the sum reach top_p is dropped"),
    ("02.2", nucleus_not_renormalised, "not renormalised"),
    ("02.3", lambda logits, t, k: SOLUTIONS["02.3"](logits, 1.0, k) / t, "divide the logits by the temperature"),
    ("02.3", lambda logits, t, k: SOLUTIONS["02.3"](logits * t * t, t, k), "multiplied by the temperature"),
    ("02.3", lambda logits, t, k: SOLUTIONS["02.3"](logits, t, k - 1), "keep exactly top_k tokens"),
    ("02.3", lambda logits, t, k: torch.softmax(torch.where(
        logits / t < (logits / t).topk(k).values[..., -1:], 0.0, logits / t), -1), "were set to 0"),
    ("03.1", load_block_untransposed, "attn.out_proj.weight holds its transpose"),
    ("03.1", load_block_swapping_gain_and_bias, "norm2.weight holds norm2.bias's values"),
    ("03.1", load_block_never_transposing, "a shape does not fit"),
    ("03.2", lambda w: tuple(torch.from_numpy(part) for part in np.split(w, 3, axis=-1)), "is not transposed"),
    ("03.2", lambda w: tuple(torch.from_numpy(part) for part in np.split(w, 3, axis=0)), "along the first axis"),
    ("04.1", lambda logits, lengths: logits[:, -1], "these are the last positions"),
    ("04.1", lambda logits, lengths: logits[torch.arange(len(lengths)), lengths], "off by one"),
    ("04.2", lambda x, linear, A, B, alpha: linear(x) + alpha * (x @ A @ B), "scale it by alpha / rank"),
    ("04.2", lambda x, linear, A, B, alpha: alpha / A.shape[1] * (x @ A @ B), "own output is missing"),
    ("05.1", lambda batch: __import__("gpt2_from_scratch.instruct", fromlist=["x"]).custom_collate_fn(batch),
     "the prompt's targets are not masked"),
    ("05.1", collate_without_end_token, "first <|endoftext|> must stay a target"),
    ("05.1", collate_masking_one_too_many, "one prompt target too many is masked"),
    ("05.2", prompt_always_with_input, "no '### Input:' section"),
    ("05.2", lambda entry: SOLUTIONS["05.2"](entry).removesuffix("\n\n### Response:\n"), "must end with the response"),
]


def test_every_exercise_has_at_least_two_wrong_answers():
    counts = {exercise_id: 0 for exercise_id in EXERCISES}
    for exercise_id, _, _ in WRONG_ANSWERS:
        counts[exercise_id] += 1
    assert min(counts.values()) >= 2, counts


@pytest.mark.parametrize("exercise_id, wrong_answer, expected_message", WRONG_ANSWERS,
                         ids=[f"{exercise_id}-{message[:30]}" for exercise_id, _, message in WRONG_ANSWERS])
def test_a_wrong_answer_fails_with_its_message(exercise_id, wrong_answer, expected_message):
    result = run_check(exercise_id, wrong_answer)
    assert result.status == "failed"
    # The intended message comes first; a second one may only concern another output (05.1's inputs, ...).
    assert expected_message in result.messages[0], result.messages
    # Exercises checked on several cases or parameters may add a message per case.
    assert len(result.messages) == 1 or exercise_id in ("01.9", "01.11", "02.2", "03.1", "03.2"), result.messages


def test_a_token_id_in_a_message_is_a_whole_number():
    from exercises.checks import compare
    message = compare(torch.tensor([[50256, 7]]), torch.tensor([[50256, 50256]]), "the targets")
    assert message.endswith("at index (0, 1) it is 7, expected 50256"), message


def test_many_messages_alike_but_for_their_numbers_are_collapsed():
    # init_without_residual_scaling leaves all 16 residual projections (2 in each of 8 blocks) 4 times too wide
    result = run_check("01.11", init_without_residual_scaling)
    assert result.messages[0].startswith("blocks.0.attn.out_proj.weight has mean"), result.messages
    assert [message.split(" has ")[0] for message in result.messages[:3]] == [
        "blocks.0.attn.out_proj.weight", "blocks.0.ff.project.weight", "blocks.1.attn.out_proj.weight"]
    assert result.messages[3:] == ["… and 13 more like these"], result.messages


def test_collapsing_keeps_different_messages_and_their_order():
    from exercises.checks import collapse_alike
    alike = [f"block {i} has std 0.0{i}" for i in range(5)]
    assert collapse_alike(["first", *alike, "last"]) == ["first", *alike[:3], "… and 2 more like these", "last"]
    assert collapse_alike(alike[:4]) == alike[:4]  # one line hidden would take a line to say so: shown
    assert collapse_alike(["a 1", "b", "a 2"]) == ["a 1", "a 2", "b"]  # alike ones are said together


def init_as_gpt_model_does(model):
    """01.11 as 01's GPTModel initialises itself: module by module, then the residual projections."""
    model.apply(model._init_weights)
    for name, parameter in model.named_parameters():
        if name.endswith(("attn.out_proj.weight", "ff.project.weight")):
            torch.nn.init.normal_(parameter, std=0.02 / math.sqrt(2 * len(model.blocks)))


RIGHT_ANSWERS_IN_OTHER_WORDS = [
    ("01.3", lambda q, k, v: torch.softmax(q @ k.transpose(1, 2) / 4, dim=-1) @ v),
    ("01.3", lambda q, k, v: torch.softmax(q @ k.mT / math.sqrt(k.shape[-1]), dim=-1) @ v),
    ("01.3", lambda q, k, v: torch.softmax(torch.einsum("bqd,bkd->bqk", q, k) / 4, dim=-1) @ v),
    ("01.3", lambda q, k, v: F.scaled_dot_product_attention(q, k, v)),
    ("01.4", causal_weights_masking(torch.ones(6, 6).triu(1).bool(), -1e9)),
    ("01.4", causal_weights_masking(torch.ones(6, 6).triu(1).bool(), torch.finfo(torch.float32).min)),
    ("01.4", causal_weights_masking(torch.ones(6, 6).tril() == 0)),
    ("01.4", lambda s: torch.softmax(s + torch.full((6, 6), float("-inf")).triu(1), dim=-1)),
    ("01.4", lambda s: torch.softmax(torch.where(torch.ones(6, 6).tril().bool(), s, -torch.inf), dim=-1)),
    ("01.8", lambda block, x: block(x)),
    ("01.11", init_as_gpt_model_does),
]


@pytest.mark.parametrize("exercise_id, answer", RIGHT_ANSWERS_IN_OTHER_WORDS,
                         ids=[f"{exercise_id}-{i}" for i, (exercise_id, _) in enumerate(RIGHT_ANSWERS_IN_OTHER_WORDS)])
def test_a_right_answer_in_other_words_passes(exercise_id, answer):
    result = run_check(exercise_id, answer)
    assert result.passed, result.messages
