"""The exercise checkers: every solution passes, every notebook skeleton reports "not attempted", and
typical wrong answers (at least two per exercise, kept here) fail with the message meant for them."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import REPO_ROOT, import_script
from exercises import EXERCISES, check_exercise, run_check
from exercises.checks import NOT_ATTEMPTED, multi_head_reference

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
    ("01.4", lambda s: torch.softmax(s, -1).masked_fill(torch.ones(6, 6).triu(1).bool(), 0.0),
     "the future was zeroed after the softmax"),
    ("01.4", lambda s: torch.softmax(s.masked_fill(torch.ones(6, 6).triu(0).bool(), float("-inf")), -1),
     "the diagonal is masked too"),
    ("01.4", lambda s: torch.softmax(s.masked_fill(torch.ones(6, 6).tril(-1).bool(), float("-inf")), -1),
     "hides the past"),
    ("01.5", mha(causal=False), "tokens see the future"),
    ("01.5", mha(merge_right=False), "merged in the wrong order"),
    ("01.5", mha(split_right=False, merge_right=False), "split in the wrong order"),
    ("01.5", mha(project=False), "the output projection is missing"),
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
    ("01.9", params_counting_the_tied_head, "you counted out_head's weight"),
    ("01.9", params_without_layer_norms, "the layer norms are missing"),
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
