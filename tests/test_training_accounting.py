"""02's AdamW parameter groups, its perplexity axis and its training-memory prediction, on the notebook's own code."""

import math
import time

import matplotlib
import numpy as np
import pytest
import torch
import torch.nn.functional as F

matplotlib.use("Agg")  # no window: the figure is only inspected
import matplotlib.pyplot as plt  # noqa: E402

MATRIX_SUFFIXES = ("qkv.weight", "out_proj.weight", "expand.weight", "project.weight")


def small_model(nb02, seed=0, **overrides):
    torch.manual_seed(seed)
    settings = dict(vocab_size=97, context_length=16, emb_dim=32, n_heads=4, n_layers=2, drop_rate=0.1)
    return nb02.GPTModel(nb02.GPTConfig(**{**settings, **overrides}))


def names_of(model, parameters):
    by_identity = {id(parameter): name for name, parameter in model.named_parameters()}
    return {by_identity[id(parameter)] for parameter in parameters}


# --- which parameters AdamW decays ---------------------------------------------------------------------------

@pytest.mark.parametrize("tie_weights", [True, False])
def test_the_groups_decay_the_matrices_and_embeddings_and_nothing_else(nb02, tie_weights):
    model = small_model(nb02, tie_weights=tie_weights, qkv_bias=True)
    decayed, not_decayed = nb02.parameter_groups(model, weight_decay=0.1)
    assert decayed["weight_decay"] == 0.1 and not_decayed["weight_decay"] == 0.0
    expected = {"tok_emb.weight", "pos_emb.weight"} | {f"blocks.{layer}.{part}" for layer in range(2)
                                                       for part in ("attn.qkv.weight", "attn.out_proj.weight",
                                                                    "ff.expand.weight", "ff.project.weight")}
    if not tie_weights:
        expected.add("out_head.weight")  # tied, it is tok_emb.weight, listed once
    assert names_of(model, decayed["params"]) == expected
    # Not decayed: every bias (the qkv bias included) and both scale and shift of every layer norm
    assert names_of(model, not_decayed["params"]) == {name for name, _ in model.named_parameters()} - expected
    assert all(name.endswith("bias") or "norm" in name for name in names_of(model, not_decayed["params"]))
    every_parameter = decayed["params"] + not_decayed["params"]
    assert len(every_parameter) == len({id(parameter) for parameter in every_parameter}) == len(list(model.parameters()))


def test_frozen_parameters_are_in_no_group(nb02):
    model = small_model(nb02, tie_weights=False)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name.startswith("blocks.1.") or name.startswith("out_head"))
    optimizer = nb02.make_optimizer(model, lr=1e-3, weight_decay=0.1)
    in_groups = names_of(model, [parameter for group in optimizer.param_groups for parameter in group["params"]])
    assert in_groups == {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    assert all(group["fused"] for group in optimizer.param_groups)  # fused on the CPU, as before the groups


def test_a_step_shrinks_exactly_the_decayed_parameters(nb02):
    """With zero gradients Adam's update is zero, so one step only decays: w -> w (1 - lr wd) for the matrices
    and embeddings, unchanged for biases and layer norms."""
    model = small_model(nb02, tie_weights=False, qkv_bias=True)
    with torch.no_grad():  # give the biases and layer-norm shifts values that decay would visibly move
        for name, parameter in model.named_parameters():
            if parameter.dim() == 1:
                parameter.uniform_(0.5, 1.5)
    before = {name: parameter.detach().clone() for name, parameter in model.named_parameters()}
    lr, weight_decay = 0.1, 0.5
    optimizer = nb02.make_optimizer(model, lr=lr, weight_decay=weight_decay)
    for parameter in model.parameters():
        parameter.grad = torch.zeros_like(parameter)
    optimizer.step()
    for name, parameter in model.named_parameters():
        factor = 1 - lr * weight_decay if parameter.dim() >= 2 else 1.0
        torch.testing.assert_close(parameter.detach(), before[name] * factor, rtol=1e-6, atol=0, msg=name)


def test_with_only_matrices_to_train_the_undecayed_group_is_empty_and_steps(nb02):
    """As with 05's LoRA, where only the low-rank matrices train."""
    model = small_model(nb02, tie_weights=False)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name.endswith("qkv.weight"))
    optimizer = nb02.make_optimizer(model, lr=1e-3, weight_decay=0.1)
    assert [len(group["params"]) for group in optimizer.param_groups] == [2, 0]
    model.train()(torch.randint(0, 97, (2, 8))).sum().backward()
    optimizer.step()
    optimizer.load_state_dict(optimizer.state_dict())  # what resuming does


def test_an_optimizer_needs_something_to_train(nb02):
    model = small_model(nb02).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        nb02.make_optimizer(model, lr=1e-3, weight_decay=0.1)


# --- the perplexity axis -------------------------------------------------------------------------------------

def test_the_perplexity_axis_reads_the_loss_axis_as_exp_loss(nb02, monkeypatch):
    monkeypatch.setattr(plt, "show", lambda: None)
    history = {"epoch": [0.5, 1, 2, 3], "tokens_seen": [10, 20, 40, 60], "train_loss": [9.5, 6.0, 4.0, 2.5],
               "val_loss": [9.6, 6.5, 6.2, 6.3]}
    nb02.plot_losses({"a": history, "b": {**history, "val_loss": [9.7, 6.4, 6.25, 6.35]}})
    figure = plt.gcf()
    pairs = [(axis, child) for axis in figure.axes for child in axis.child_axes if "perplexity" in child.get_ylabel()]
    assert len(pairs) == 2  # the main panel and the zoomed one
    perplexity_axes = [child for _, child in pairs]
    for loss_axis, perplexity_axis in pairs:
        low, high = loss_axis.get_ylim()
        assert np.allclose(perplexity_axis.get_ylim(), (math.exp(low), math.exp(high)), rtol=1e-9)
        ticks = [tick for tick in perplexity_axis.get_yticks() if math.exp(low) <= tick <= math.exp(high)]
        assert len(ticks) >= 2
        figure.canvas.draw()
        for tick in ticks:  # drawn where the loss axis has log(tick): the inverse is right too
            drawn_at = perplexity_axis.transData.transform((0, tick))[1]
            assert drawn_at == pytest.approx(loss_axis.transData.transform((0, math.log(tick)))[1], abs=1e-6)
    main_ticks = perplexity_axes[0].get_yticks()
    assert list(main_ticks) == [10.0, 100.0, 1000.0, 10000.0]  # losses 2.5 to 9.6: the decades inside
    plt.close(figure)


# --- the training-memory prediction ---------------------------------------------------------------------------

def saved_for_backward(model, token_ids):
    """Bytes of the tensors autograd keeps for backward (each storage once, parameters excluded), and the loss."""
    parameter_storages = {parameter.untyped_storage().data_ptr() for parameter in model.parameters()}
    saved = {}

    def keep(tensor):
        if tensor.untyped_storage().data_ptr() not in parameter_storages:
            saved[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
        logits = model.train()(token_ids[:, :-1])
        F.cross_entropy(logits.flatten(0, 1), token_ids[:, 1:].flatten())
    return sum(saved.values())


@pytest.mark.parametrize("batch_size, n_tokens, overrides", [
    (2, 16, dict()),
    (3, 11, dict(tie_weights=False, qkv_bias=True)),
    (2, 16, dict(n_layers=3, n_heads=2, emb_dim=48)),  # (at batch 1 a saved view keeps all of q, k, v alive)
])
def test_the_activations_term_is_what_autograd_keeps(nb02, batch_size, n_tokens, overrides):
    model = small_model(nb02, **overrides)
    token_ids = torch.randint(0, model.cfg.vocab_size, (batch_size, n_tokens + 1), generator=torch.Generator().manual_seed(1))
    predicted = nb02.training_memory(model, batch_size, n_tokens)["activations"]
    counted = saved_for_backward(model, token_ids)
    # Left out of the prediction: each layer norm's mean and spread (2 floats a token; 2 norms a block and the
    # final one), the token ids (inputs and targets, as slices of token_ids), the positions and the loss itself
    left_out = (4 * 2 * batch_size * n_tokens * (2 * model.cfg.n_layers + 1) + 8 * token_ids.numel()
                + 8 * batch_size * n_tokens + 8 * n_tokens + 4)
    assert predicted <= counted <= predicted + left_out, (predicted, counted)


def test_the_state_is_4_bytes_a_weight_and_12_a_trainable_one(nb02):
    model = small_model(nb02, tie_weights=True)
    model.pos_emb.requires_grad_(False)  # frozen: its weights count, no gradient or moments
    every = sum(parameter.numel() for parameter in model.parameters())  # the tied head once
    trainable = every - model.pos_emb.weight.numel()
    memory = nb02.training_memory(model, batch_size=2, n_tokens=8)
    assert (memory["weights"], memory["gradients"], memory["AdamW moments"]) == (4 * every, 4 * trainable, 8 * trainable)


# --- timing a step's limit ---------------------------------------------------------------------------------------

def test_fastest_seconds_is_the_fastest_call_after_a_warm_up(nb02):
    delays = iter([0.01, 0.2, 0.05, 0.2])  # the first call, the warm-up, is not timed (nor taken as the fastest)
    calls = []

    def function():
        calls.append(None)
        time.sleep(next(delays))

    fastest = nb02.fastest_seconds(function, "cpu", repeats=3)
    assert len(calls) == 4 and 0.05 <= fastest < 0.2
