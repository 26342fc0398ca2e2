"""02_pretraining's decoding, KV cache, schedule, checkpoints and resuming, on the notebook's own code."""

import dataclasses
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gpt2_from_scratch.architecture import create_dataloader  # 01's windows, which 02 trains on

VOCAB = 97


def tiny_model(nb02, seed=0, **overrides):
    torch.manual_seed(seed)
    settings = dict(vocab_size=VOCAB, context_length=16, emb_dim=32, n_heads=4, n_layers=2, drop_rate=0.0)
    return nb02.GPTModel(nb02.GPTConfig(**{**settings, **overrides})).eval()


class CharTokenizer:
    """One token per character (codes 32..126 -> ids 0..94), enough to drive the training loops."""

    def encode(self, text, allowed_special=()):
        return [min(max(ord(character) - 32, 0), VOCAB - 1) for character in text]

    def decode(self, ids):
        return "".join(chr(i + 32) for i in ids)


class CountingModel(nn.Module):
    """A stand-in model whose next token is always (last token + 1) % vocab: its outputs are known."""

    def __init__(self, vocab=10, context_length=8):
        super().__init__()
        self.cfg = SimpleNamespace(context_length=context_length, vocab_size=vocab)
        self.seen_lengths = []

    def forward(self, token_ids):
        assert token_ids.shape[1] <= self.cfg.context_length, "the prompt must be cropped to the context"
        self.seen_lengths.append(token_ids.shape[1])
        return nn.functional.one_hot((token_ids + 1) % self.cfg.vocab_size, self.cfg.vocab_size).float() * 10


# --- sampling -----------------------------------------------------------------------------------

def test_greedy_is_argmax(nb02):
    logits = torch.randn(3, 50)
    assert torch.equal(nb02.sample_next_token(logits, temperature=0.0), logits.argmax(-1, keepdim=True))


def test_top_k_filter_keeps_exactly_k(nb02):
    logits = torch.randn(4, 30)
    filtered = nb02.top_k_filter(logits, 5)
    assert torch.all(torch.isfinite(filtered).sum(-1) == 5)
    kept = torch.isfinite(filtered)
    assert torch.equal(kept, torch.zeros_like(kept).scatter(-1, logits.topk(5).indices, True))
    assert torch.equal(nb02.top_k_filter(logits, 1000), logits)  # k larger than the vocabulary keeps all


@pytest.mark.parametrize("top_p", [0.05, 0.3, 0.5, 0.9, 0.999])
def test_top_p_keeps_the_smallest_set_reaching_p(nb02, top_p):
    torch.manual_seed(1)
    probabilities = torch.softmax(2 * torch.randn(6, 40), dim=-1)
    filtered = nb02.top_p_filter(probabilities, top_p)
    torch.testing.assert_close(filtered.sum(-1), torch.ones(6))
    for row, kept in zip(probabilities, filtered):
        kept_mask = kept > 0
        kept_mass = row[kept_mask].sum()
        assert kept_mass >= top_p - 1e-6, "the kept tokens must reach p"
        assert kept_mass - row[kept_mask].min() < top_p, "dropping the least likely kept token must fall below p"
        dropped = row[~kept_mask]
        assert dropped.numel() == 0 or row[kept_mask].min() >= dropped.max(), "the kept tokens are the most likely"
        torch.testing.assert_close(kept[kept_mask], row[kept_mask] / kept_mass)


def test_top_p_edge_values(nb02):
    probabilities = torch.tensor([[0.5, 0.3, 0.2]])
    assert torch.equal(nb02.top_p_filter(probabilities, 1e-9), torch.tensor([[1.0, 0.0, 0.0]]))
    torch.testing.assert_close(nb02.top_p_filter(probabilities, 1.0), probabilities)
    torch.testing.assert_close(nb02.top_p_filter(probabilities, 0.8), torch.tensor([[0.625, 0.375, 0.0]]))


def test_temperature_sharpens_and_flattens(nb02):
    logits = torch.tensor([[2.0, 1.0, 0.0]])
    counts = {}
    for temperature in (0.3, 3.0):
        generator = torch.Generator().manual_seed(0)
        draws = torch.cat([nb02.sample_next_token(logits, temperature, generator=generator) for _ in range(2000)])
        counts[temperature] = torch.bincount(draws.flatten(), minlength=3)
    assert counts[0.3][0] > 1800  # p = 0.964 at T = 0.3
    assert 800 < counts[3.0][0] < 1000 and counts[3.0][2] > 400  # p = 0.45 and 0.23 at T = 3


# --- generate -----------------------------------------------------------------------------------

@pytest.mark.parametrize("options, message", [
    (dict(temperature=-0.1), "temperature"),
    (dict(temperature=1.0, top_k=0), "top_k"),
    (dict(temperature=1.0, top_p=0.0), "top_p"),
    (dict(temperature=1.0, top_p=1.01), "top_p"),
])
def test_generate_rejects_bad_options(nb02, options, message):
    with pytest.raises(ValueError, match=message):
        nb02.generate(tiny_model(nb02), torch.tensor([[1, 2]]), 3, **options)


def test_generate_rejects_an_empty_prompt(nb02):
    with pytest.raises(ValueError, match="empty"):
        nb02.generate(tiny_model(nb02), torch.zeros(1, 0, dtype=torch.long), 3)


def test_generate_crops_a_long_prompt(nb02):
    model = CountingModel(vocab=10, context_length=8)
    output = nb02.generate(model, torch.arange(20).remainder(10).unsqueeze(0), 3, use_cache=False)
    assert output.shape == (1, 23) and output[0, -3:].tolist() == [0, 1, 2]
    assert max(model.seen_lengths) == 8


def test_generate_stops_at_the_end_token_and_pads_finished_rows(nb02):
    model = CountingModel(vocab=10)
    prompt = torch.tensor([[4], [1]])
    output = nb02.generate(model, prompt, 10, eos_id=7, use_cache=False)
    # Row 0 reaches 7 after 3 steps, row 1 after 6; generation stops when both have finished.
    assert output.tolist() == [[4, 5, 6, 7, 7, 7, 7], [1, 2, 3, 4, 5, 6, 7]]


def test_generate_is_repeatable_with_a_seed(nb02):
    model, prompt = tiny_model(nb02), torch.tensor([[3, 1, 4]])
    sample = lambda seed: nb02.generate(model, prompt, 12, temperature=1.5, seed=seed)
    assert torch.equal(sample(7), sample(7))
    assert not torch.equal(sample(7), sample(8))
    greedy = nb02.generate(model, prompt, 12)
    assert torch.equal(nb02.generate(model, prompt, 12, temperature=1.0, top_k=1, seed=7), greedy)


# --- KV cache -----------------------------------------------------------------------------------

@pytest.mark.parametrize("qkv_bias, tie_weights", [(False, False), (True, True)])
def test_cached_forward_equals_the_full_forward(nb02, qkv_bias, tie_weights):
    model = tiny_model(nb02, qkv_bias=qkv_bias, tie_weights=tie_weights)
    token_ids = torch.randint(0, VOCAB, (2, 16))
    with torch.no_grad():
        expected = model(token_ids)
        chunks, cache = [], None
        for start, end in [(0, 5), (5, 6), (6, 7), (7, 11), (11, 16)]:  # a prefill, single tokens, and chunks
            logits, cache = nb02.forward_with_cache(model, token_ids[:, start:end], cache)
            chunks.append(logits)
    torch.testing.assert_close(torch.cat(chunks, dim=1), expected, rtol=0, atol=1e-5)
    assert len(cache) == 2 and cache[0][0].shape == (2, 4, 16, 8)


def test_cache_refuses_to_grow_past_the_context(nb02):
    model = tiny_model(nb02)
    _, cache = nb02.forward_with_cache(model, torch.zeros(1, 16, dtype=torch.long))
    with pytest.raises(ValueError, match="context length"):
        nb02.forward_with_cache(model, torch.zeros(1, 1, dtype=torch.long), cache)


@pytest.mark.parametrize("context_length", [None, 5])
def test_cached_generation_gives_the_same_tokens(nb02, context_length):
    model = tiny_model(nb02, seed=3)
    prompt = torch.randint(0, VOCAB, (2, 4))
    options = dict(max_new_tokens=30, context_length=context_length)  # 34 tokens: past both contexts
    with_cache = nb02.generate(model, prompt, use_cache=True, **options)
    assert torch.equal(with_cache, nb02.generate(model, prompt, use_cache=False, **options))
    assert torch.equal(with_cache, nb02.generate_greedy(model, prompt, 30, context_length=context_length))
    sampled = dict(temperature=1.0, top_p=0.9, seed=1, **options)
    assert torch.equal(nb02.generate(model, prompt, use_cache=True, **sampled),
                       nb02.generate(model, prompt, use_cache=False, **sampled))


# --- loss, schedule -----------------------------------------------------------------------------

def test_loss_over_a_limited_number_of_batches(nb02):
    model = tiny_model(nb02)
    batches = [(torch.randint(0, VOCAB, (2, 8)), torch.randint(0, VOCAB, (2, 8))) for _ in range(4)]
    with torch.no_grad():
        per_batch = [nb02.calc_loss_batch(x, y, model, "cpu").item() for x, y in batches]
        assert nb02.calc_loss_loader(batches, model, "cpu", num_batches=2) == pytest.approx(sum(per_batch[:2]) / 2)
        assert nb02.calc_loss_loader(batches, model, "cpu", num_batches=99) == pytest.approx(sum(per_batch) / 4)
    with pytest.raises(ValueError, match="empty"):
        nb02.calc_loss_loader([], model, "cpu")


def test_learning_rate_schedule(nb02):
    total, warmup, peak = 100, 20, 1e-3
    rates = [nb02.learning_rate_at(step, total, peak, warmup) for step in range(total)]
    assert rates[0] == pytest.approx(1e-5)
    assert rates[warmup] == pytest.approx(peak)
    assert all(a < b for a, b in zip(rates[:warmup], rates[1 : warmup + 1]))
    assert all(a >= b for a, b in zip(rates[warmup:], rates[warmup + 1 :]))
    assert nb02.learning_rate_at(total, total, peak, warmup) == pytest.approx(0.1 * peak)
    midway = warmup + (total - warmup) // 2
    assert rates[midway] == pytest.approx(0.1 * peak + 0.5 * 0.9 * peak)


# --- checkpoints and resuming -------------------------------------------------------------------

def test_checkpoint_round_trip_is_bitwise(nb02, tmp_path):
    model = tiny_model(nb02, tie_weights=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randint(0, VOCAB, (2, 8))).sum().backward()
    optimizer.step()  # so the optimizer has state to save

    path = nb02.save_checkpoint(tmp_path / "run" / "model.pt", model, optimizer, step=42, val_loss=3.5)
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.pt", "model.pt.sha256"], "no partial file may remain"
    checkpoint = nb02.load_checkpoint(path)
    reloaded = nb02.model_from_checkpoint(checkpoint)
    assert reloaded.cfg == model.cfg and checkpoint["step"] == 42 and checkpoint["val_loss"] == 3.5
    for (name, tensor), (_, again) in zip(model.state_dict().items(), reloaded.state_dict().items()):
        assert torch.equal(tensor, again), name
    assert reloaded.out_head.weight is reloaded.tok_emb.weight, "tying survives the round trip"
    state, state_again = optimizer.state_dict()["state"], checkpoint["optimizer"]["state"]
    assert all(torch.equal(state[k][name], state_again[k][name]) for k in state for name in state[k])


def test_a_failed_save_leaves_the_old_checkpoint(nb02, tmp_path, monkeypatch):
    model = tiny_model(nb02)
    path = nb02.save_checkpoint(tmp_path / "model.pt", model, step=1)
    before = path.read_bytes()

    def crash_while_writing(obj, target, *args, **kwargs):
        open(target, "wb").write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(nb02.torch, "save", crash_while_writing)
    with pytest.raises(OSError, match="disk full"):
        nb02.save_checkpoint(path, model, step=2)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "model.pt.sha256"], "no temporary file remains"
    assert nb02.load_checkpoint(path)["step"] == 1, "the old checkpoint still matches its recorded SHA-256"


@pytest.mark.parametrize("stop_after_epoch", [0, 1])
def test_the_improved_loop_resumes_mid_schedule_exactly(nb02, tmp_path, stop_after_epoch):
    """Stopped after an epoch and resumed from its checkpoint, the warmup-and-cosine loop takes the same
    learning rates and reaches the same losses and weights as an uninterrupted run (02, section 9)."""
    text = "It was a dark and stormy night; the rain fell in torrents, except at occasional intervals. " * 3
    tokenizer = CharTokenizer()

    def run(resume_from=None, **settings):
        torch.manual_seed(0)
        loader = create_dataloader(text, tokenizer, batch_size=2, max_length=8, stride=8, shuffle=True)
        model = tiny_model(nb02, seed=1, drop_rate=0.1)  # dropout on: the random state matters
        optimizer = nb02.make_optimizer(model, lr=1e-3, weight_decay=0.1)
        settings = nb02.TrainingSettings(num_epochs=3, eval_freq=3, eval_iter=1, start_context="It", peak_lr=1e-3,
                                         **settings)
        history = nb02.train_model_improved(model, loader, loader, optimizer, "cpu", settings, tokenizer,
                                            resume_from=resume_from)
        return history, model, optimizer

    uninterrupted, model, optimizer = run()
    stopped, _, _ = run(checkpoint_path=tmp_path / "resume.pt", stop_after_epoch=stop_after_epoch)
    assert len(stopped["step"]) < len(uninterrupted["step"])  # it did stop early
    resumed, resumed_model, resumed_optimizer = run(resume_from=nb02.load_checkpoint(tmp_path / "resume.pt"))
    for key in ("step", "lr", "train_loss", "val_loss", "tokens_seen"):
        assert resumed[key] == uninterrupted[key], key
    assert resumed_optimizer.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]
    for name, tensor in resumed_model.state_dict().items():
        assert torch.equal(tensor, model.state_dict()[name]), name


def test_loading_a_missing_checkpoint_says_so(nb02, tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        nb02.load_checkpoint(tmp_path / "nothing.pt")


def test_resuming_continues_exactly_like_uninterrupted_training(nb02, tmp_path):
    text = "It was a dark and stormy night; the rain fell in torrents, except at occasional intervals. " * 3
    tokenizer = CharTokenizer()

    def fresh_run():
        torch.manual_seed(0)
        loader = create_dataloader(text, tokenizer, batch_size=2, max_length=8, stride=8, shuffle=True)
        model = tiny_model(nb02, seed=1, drop_rate=0.1)  # dropout on: the RNG state matters
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
        return loader, model, optimizer

    def train(model, optimizer, loader, epochs):
        # Evaluations iterate the shuffled loader, which draws from the global RNG, so both runs must
        # evaluate at the same points: once per epoch, at its first step.
        return nb02.train_model_simple(model, loader, loader, optimizer, "cpu", epochs, eval_freq=len(loader),
                                       eval_iter=1, start_context="It", tokenizer=tokenizer)

    loader, model, optimizer = fresh_run()
    history = train(model, optimizer, loader, epochs=2)
    uninterrupted = model.state_dict()

    loader, model, optimizer = fresh_run()
    train(model, optimizer, loader, epochs=1)
    path = nb02.save_checkpoint(tmp_path / "half.pt", model, optimizer, step=len(loader) - 1)
    torch.manual_seed(12345)  # disturb the global RNG: the checkpoint must restore it
    checkpoint = nb02.load_checkpoint(path)
    resumed = nb02.model_from_checkpoint(checkpoint).train()
    resumed_optimizer = torch.optim.AdamW(resumed.parameters(), lr=1e-3, weight_decay=0.1)
    resumed_optimizer.load_state_dict(checkpoint["optimizer"])
    torch.set_rng_state(checkpoint["rng_state"])
    train(resumed, resumed_optimizer, loader, epochs=1)

    assert history["train_loss"][-1] < history["train_loss"][0]
    for name, tensor in resumed.state_dict().items():
        assert torch.equal(tensor, uninterrupted[name]), name


def test_reinit_embeddings_draws_unit_scale_embeddings_only(nb02):
    model = tiny_model(nb02, emb_dim=64, tie_weights=False)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    nb02.reinit_embeddings(model)
    assert model.tok_emb.weight.std().item() == pytest.approx(1.0, rel=0.05)
    assert model.pos_emb.weight.std().item() == pytest.approx(1.0, rel=0.1)
    unchanged = [name for name in before if not name.startswith(("tok_emb", "pos_emb"))]
    assert all(torch.equal(before[name], model.state_dict()[name]) for name in unchanged)
    with pytest.raises(ValueError, match="tie_weights"):
        nb02.reinit_embeddings(tiny_model(nb02, tie_weights=True))


# --- cheaper steps: precision and optimizer -----------------------------------------------------

def test_pick_precision_and_autocast(nb02):
    assert nb02.pick_precision("cpu") in ("bf16", "fp32")
    assert nb02.pick_precision("meta") == "fp32"
    matrix = torch.randn(4, 4)
    with nb02.autocast("cpu", "fp32"):
        assert (matrix @ matrix).dtype == torch.float32
    with nb02.autocast("cpu", "bf16"):
        assert (matrix @ matrix).dtype == torch.bfloat16
        logits = tiny_model(nb02)(torch.tensor([[1, 2, 3]]))
        loss = nb02.calc_loss_batch(torch.tensor([[1, 2, 3]]), torch.tensor([[2, 3, 4]]), tiny_model(nb02), "cpu")
    assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32  # the loss stays float32


def test_make_optimizer_is_fused_and_takes_only_trainable_parameters(nb02):
    model = tiny_model(nb02, tie_weights=False)
    model.tok_emb.weight.requires_grad_(False)
    optimizer = nb02.make_optimizer(model, lr=1e-3, weight_decay=0.1)
    decayed, not_decayed = optimizer.param_groups  # the matrices and embeddings, and the rest (parameter_groups)
    assert all(group["fused"] and group["lr"] == 1e-3 for group in optimizer.param_groups)
    assert decayed["weight_decay"] == 0.1 and not_decayed["weight_decay"] == 0.0
    in_groups = decayed["params"] + not_decayed["params"]
    assert len(in_groups) == sum(parameter.requires_grad for parameter in model.parameters())
    assert all(parameter is not model.tok_emb.weight for parameter in in_groups)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_training_in_each_precision_learns_and_keeps_float32_weights(nb02, precision):
    text = "the quick brown fox jumps over the lazy dog. " * 12
    tokenizer = CharTokenizer()
    torch.manual_seed(0)
    loader = create_dataloader(text, tokenizer, batch_size=4, max_length=16, stride=16, shuffle=True)
    model = tiny_model(nb02, seed=1, drop_rate=0.1)
    optimizer = nb02.make_optimizer(model, lr=3e-3, weight_decay=0.1)
    # fp16 on the CPU exercises the GradScaler path (unscale before clipping) that older GPUs take.
    settings = nb02.TrainingSettings(num_epochs=4, eval_freq=2, eval_iter=2, start_context="the", peak_lr=3e-3,
                                     precision=precision)
    history = nb02.train_model_improved(model, loader, loader, optimizer, "cpu", settings, tokenizer)
    assert history["train_loss"][-1] < history["train_loss"][0] - 0.5
    assert all(parameter.dtype == torch.float32 for parameter in model.parameters())


# --- cheaper dropout on the CPU (02, section 4) ----------------------------------------------------

def test_fast_dropout_drops_p_and_rescales_the_rest(nb02):
    torch.manual_seed(0)
    x = torch.rand(1000, 1000) + 0.5  # no zeros of its own
    dropped = nb02.fast_dropout(x, 0.1)
    kept = dropped != 0
    assert abs((~kept).float().mean().item() - 0.1) < 0.002  # 1e6 draws: the standard error is 0.0003
    torch.testing.assert_close(dropped[kept], x[kept] / 0.9)
    assert nb02.fast_dropout(x, 0.1, training=False) is x and nb02.fast_dropout(x, 0.0) is x
    draw = lambda seed: (torch.manual_seed(seed), nb02.fast_dropout(x, 0.1))[1]
    assert torch.equal(draw(5), draw(5)) and not torch.equal(draw(5), draw(6))  # follows the global seed


def test_with_fast_dropout_switches_every_dropout_and_keeps_the_weights(nb02):
    model = tiny_model(nb02, drop_rate=0.1)
    plain = tiny_model(nb02, drop_rate=0.1)
    parameters = list(model.parameters())
    assert nb02.with_fast_dropout(model) is model
    dropouts = [module for module in model.modules() if isinstance(module, nn.Dropout)]
    assert len(dropouts) == 1 + 2 and all(  # the embeddings' and one per block
           type(module) is nb02.FastDropout for module in dropouts)
    assert all(module.p == 0.1 for module in dropouts)
    assert all(type(block.attn) is nb02.FastCausalSelfAttention for block in model.blocks)
    assert all(a is b for a, b in zip(model.parameters(), parameters))  # the same tensors: an optimizer keeps them
    tokens = torch.randint(0, VOCAB, (2, 16))
    with torch.inference_mode():  # evaluation mode: no dropout, so exactly the plain model's logits
        torch.testing.assert_close(model.eval()(tokens), plain.eval()(tokens), rtol=0, atol=0)


def test_explicit_attention_with_dropout(nb02):
    torch.manual_seed(0)
    queries, keys, values = torch.randn(3, 2, 4, 9, 8).unbind(0)
    expected = F.scaled_dot_product_attention(queries, keys, values, is_causal=True)
    torch.testing.assert_close(nb02.causal_attention_with_dropout(queries, keys, values, 0.0), expected)
    # With dropout, the average over many masks approaches the result without dropout.
    mean = torch.stack([nb02.causal_attention_with_dropout(queries, keys, values, 0.3) for _ in range(4000)]).mean(0)
    torch.testing.assert_close(mean, expected, atol=0.05, rtol=0)


def test_fast_attention_in_training_on_the_cpu_uses_fast_dropout(nb02):
    attention = nb02.FastCausalSelfAttention(16, 4, drop_rate=0.5, qkv_bias=True).train()
    x = torch.randn(2, 7, 16)
    torch.manual_seed(3)
    output = attention(x)
    queries, keys, values = map(attention.split_heads, attention.qkv(x).split(16, dim=-1))
    torch.manual_seed(3)
    context = nb02.causal_attention_with_dropout(queries, keys, values, 0.5)
    torch.testing.assert_close(output, attention.out_proj(context.transpose(1, 2).reshape(2, 7, 16)))


# --- damaged checkpoints and bad decoding options (issue 14) ----------------------------------------

@pytest.mark.parametrize("damage", ["empty", "truncated", "flipped byte"])
def test_a_damaged_checkpoint_is_reported_not_loaded(nb02, tmp_path, damage):
    path = nb02.save_checkpoint(tmp_path / "model.pt", tiny_model(nb02), step=3)
    data = bytearray(path.read_bytes())
    if damage == "empty":
        data = bytearray()
    elif damage == "truncated":
        data = data[: len(data) // 2]
    else:  # a byte deep inside a tensor: torch.load alone would load a wrong weight
        data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"{path.name} is damaged"):
        nb02.load_checkpoint(path)


def test_a_checkpoint_records_its_sha256_beside_it(nb02, tmp_path):
    import hashlib

    path = nb02.save_checkpoint(tmp_path / "model.pt", tiny_model(nb02), step=3)
    recorded = (tmp_path / "model.pt.sha256").read_text().split()[0]
    assert recorded == hashlib.sha256(path.read_bytes()).hexdigest()
    assert nb02.load_checkpoint(path)["step"] == 3
    (tmp_path / "model.pt.sha256").unlink()  # a checkpoint saved without one still loads
    assert nb02.load_checkpoint(path)["step"] == 3


def test_a_save_that_does_not_read_back_says_so_and_leaves_nothing(nb02, tmp_path, monkeypatch):
    def unreadable(*args, **kwargs):
        raise RuntimeError("simulated unreadable file")

    monkeypatch.setattr(nb02.torch, "load", unreadable)
    with pytest.raises(RuntimeError, match=r"model.pt: the saved checkpoint did not read back .*simulated"):
        nb02.save_checkpoint(tmp_path / "model.pt", tiny_model(nb02), step=1)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("options, message", [
    (dict(temperature=float("nan")), "temperature"),
    (dict(context_length=0), "context_length"),
    (dict(context_length=-4), "context_length"),
])
def test_generate_rejects_nan_temperature_and_non_positive_context(nb02, options, message):
    with pytest.raises(ValueError, match=message):
        nb02.generate(tiny_model(nb02), torch.tensor([[1, 2, 3]]), 2, **options)


# --- a checkpoint and its check are one file; resuming checks what it resumes; the sampler's edges -------

def same_weights(model, state_dict):
    return all(torch.equal(tensor, state_dict[name]) for name, tensor in model.state_dict().items())


def test_an_interrupted_save_leaves_a_complete_verified_checkpoint(nb02, tmp_path, monkeypatch):
    """Ctrl-C (or a full disk) at each file operation of save_checkpoint in turn: whatever is then on disk
    loads, verified, and is the old checkpoint or the new one, whole; a .sha256 beside it is its own."""
    import hashlib
    import os
    from pathlib import Path

    old_model, new_model = tiny_model(nb02, seed=0), tiny_model(nb02, seed=1)
    calls = {"count": 0, "fail_at": None}

    def interruptible(function):
        def wrapper(*args, **kwargs):
            calls["count"] += 1
            if calls["count"] == calls["fail_at"]:
                raise KeyboardInterrupt("simulated Ctrl-C")
            return function(*args, **kwargs)
        return wrapper

    for owner, name in [(torch, "save"), (torch, "load"), (os, "replace"), (Path, "unlink"), (Path, "write_text"),
                        (nb02, "sha256_of")]:
        monkeypatch.setattr(owner, name, interruptible(getattr(owner, name)))
    fail_at, finished = 0, False
    while not finished:
        fail_at += 1
        path = tmp_path / f"attempt{fail_at}" / "model.pt"
        calls["fail_at"] = None
        nb02.save_checkpoint(path, old_model, step=1)
        calls["count"], calls["fail_at"] = 0, fail_at
        try:
            nb02.save_checkpoint(path, new_model, step=2)
            finished = True
        except KeyboardInterrupt:
            pass
        calls["fail_at"] = None
        checkpoint = nb02.load_checkpoint(path)  # must not raise: the file on disk is complete and verified
        saved_model = {1: old_model, 2: new_model}[checkpoint["step"]]
        assert same_weights(saved_model, checkpoint["model"]), f"interrupted at operation {fail_at}"
        sidecar = path.with_name(path.name + ".sha256")
        if sidecar.exists():  # what `sha256sum -c` reads: it must never name another file's SHA-256
            assert sidecar.read_text().split()[0] == hashlib.sha256(path.read_bytes()).hexdigest(), fail_at
    assert checkpoint["step"] == 2 and fail_at > 5, "every operation of the save was interrupted once"


@pytest.mark.parametrize("sidecar", ["", "0" * 64 + "  model.pt\n", "not a hash at all"])
def test_the_sha256_file_never_condemns_a_good_checkpoint(nb02, tmp_path, sidecar):
    path = nb02.save_checkpoint(tmp_path / "model.pt", tiny_model(nb02), step=3)
    (tmp_path / "model.pt.sha256").write_text(sidecar)  # empty, stale (another file's), or garbage
    assert nb02.load_checkpoint(path)["step"] == 3


def test_a_flipped_byte_is_caught_without_the_sha256_file(nb02, tmp_path):
    path = nb02.save_checkpoint(tmp_path / "model.pt", tiny_model(nb02), step=3)
    (tmp_path / "model.pt.sha256").unlink()  # the check travels inside the checkpoint
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a byte deep inside a tensor
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"model.pt is damaged"):
        nb02.load_checkpoint(path)


def test_a_checkpoint_from_before_content_sha256_loads_when_the_sha256_beside_it_matches(nb02, tmp_path):
    """Checkpoints of the previous version carry no content_sha256; the file's SHA-256 beside them vouches."""
    model = tiny_model(nb02)
    old = {"config": dataclasses.asdict(model.cfg), "model": model.state_dict(), "optimizer": None, "step": 3}
    path = tmp_path / "old.pt"
    torch.save(old, path)
    beside = tmp_path / "old.pt.sha256"
    beside.write_text(f"{nb02.sha256_of(path)}  old.pt\n")
    assert nb02.load_checkpoint(path)["step"] == 3
    beside.write_text(f"{'0' * 64}  old.pt\n")
    with pytest.raises(ValueError, match=r"old.pt records no content_sha256, and no old.pt.sha256 beside it matches"):
        nb02.load_checkpoint(path)
    beside.unlink()
    with pytest.raises(ValueError, match=r"old.pt records no content_sha256"):
        nb02.load_checkpoint(path)


@pytest.fixture(scope="module")
def interrupted_run(nb02, tmp_path_factory):
    """A tiny run of 2 epochs stopped after the first: its last.pt (for resuming) and best.pt (weights only)."""
    folder = tmp_path_factory.mktemp("interrupted")
    run_in_loop(nb02, tiny_model(nb02, seed=1), checkpoint_path=folder / "last.pt", best_checkpoint_path=folder / "best.pt",
                stop_after_epoch=0)
    return folder


RESUME_TEXT = "It was a dark and stormy night; the rain fell in torrents, except at occasional intervals. " * 3


def resume_loader(nb02, batch_size=2):
    torch.manual_seed(0)
    return create_dataloader(RESUME_TEXT, CharTokenizer(), batch_size=batch_size, max_length=8, stride=8,
                             shuffle=True)


def run_in_loop(nb02, model, loader=None, num_epochs=2, peak_lr=1e-3, optimizer=None, resume_from=None, **settings):
    loader = loader or resume_loader(nb02)
    optimizer = optimizer or nb02.make_optimizer(model, lr=peak_lr, weight_decay=0.1)
    settings = nb02.TrainingSettings(num_epochs=num_epochs, eval_freq=5, eval_iter=1, start_context="It",
                                     peak_lr=peak_lr, **settings)
    return nb02.train_model_improved(model, loader, loader, optimizer, "cpu", settings, CharTokenizer(),
                                     resume_from=resume_from)


def step_gradients(nb02, batch_size, accumulation_steps):
    """Each parameter's gradient after one step of train_model_improved over the same four windows."""
    windows = torch.utils.data.Subset(create_dataloader(RESUME_TEXT, CharTokenizer(), batch_size=1, max_length=8,
                                                        stride=8, shuffle=False).dataset, range(4))
    loader = torch.utils.data.DataLoader(windows, batch_size=batch_size, shuffle=False)
    model = tiny_model(nb02, seed=3)
    run_in_loop(nb02, model, loader, num_epochs=1, clip_norm=math.inf, accumulation_steps=accumulation_steps)
    return {name: parameter.grad.clone() for name, parameter in model.named_parameters()}


def test_accumulation_gives_the_large_batchs_gradient_and_02s_check_sees_a_forgotten_scaling(nb02, monkeypatch):
    """02's check (relative difference of each gradient below 1e-3) on the loop itself: it holds for two
    accumulated batches of 2 against one of 4, and fails when the loop's 1 / accumulation_steps is undone."""
    def largest_relative_difference(reference, other):
        return max(((other[name] - reference[name]).norm() / reference[name].norm()).item() for name in reference)

    one_batch_of_4 = step_gradients(nb02, batch_size=4, accumulation_steps=1)
    assert largest_relative_difference(one_batch_of_4, step_gradients(nb02, 2, 2)) < 1e-3
    calc_loss_batch = nb02.calc_loss_batch
    monkeypatch.setattr(nb02, "calc_loss_batch", lambda *args: 2 * calc_loss_batch(*args))  # as if not divided by 2
    assert largest_relative_difference(one_batch_of_4, step_gradients(nb02, 2, 2)) > 0.5


@pytest.mark.parametrize("change, named", [
    (dict(model=dict(n_heads=2)), "n_heads"),  # 2 heads of 16 instead of 4 of 8: the same shapes
    (dict(model=dict(drop_rate=0.1)), "drop_rate"),
    (dict(num_epochs=3), "num_epochs"),
    (dict(batch_size=4), "steps_per_epoch"),
    (dict(accumulation_steps=2), "accumulation_steps"),
    (dict(peak_lr=2e-3), "peak_lr"),
    (dict(warmup_fraction=0.5), "warmup_steps"),
    (dict(best=True), "weights-only"),
    (dict(no_schedule=True), "before checkpoints recorded their schedule"),
])
def test_a_refused_resume_names_the_difference_and_changes_nothing(nb02, interrupted_run, change, named):
    change = dict(change)
    model = tiny_model(nb02, seed=5, **change.pop("model", {}))
    optimizer = nb02.make_optimizer(model, lr=1e-3, weight_decay=0.1)
    checkpoint = nb02.load_checkpoint(interrupted_run / ("best.pt" if change.pop("best", False) else "last.pt"))
    if change.pop("no_schedule", False):  # as the previous version of save_checkpoint wrote it
        del checkpoint["schedule"]
    loader = resume_loader(nb02, change.pop("batch_size", 2))
    torch.manual_seed(99)
    weights, rng_state = {name: tensor.clone() for name, tensor in model.state_dict().items()}, torch.get_rng_state()
    with pytest.raises(ValueError, match=named) as refused:
        run_in_loop(nb02, model, loader, optimizer=optimizer, resume_from=checkpoint, **change)
    assert same_weights(model, weights), "a refused resume must not load the checkpoint's weights"
    assert optimizer.state_dict()["state"] == {}, "nor the optimizer's state"
    assert torch.equal(torch.get_rng_state(), rng_state), "nor the random state"
    if named == "weights-only":
        assert "last.pt" in str(refused.value)


def test_resuming_with_the_same_settings_is_still_exact(nb02, interrupted_run):
    uninterrupted = tiny_model(nb02, seed=1)
    expected = run_in_loop(nb02, uninterrupted)
    resumed = tiny_model(nb02, seed=1)
    history = run_in_loop(nb02, resumed, resume_from=nb02.load_checkpoint(interrupted_run / "last.pt"))
    assert history["val_loss"] == expected["val_loss"] and same_weights(resumed, uninterrupted.state_dict())


def test_the_schedule_changes_with_exactly_the_settings_a_resumed_run_must_repeat(nb02):
    """TrainingSettings marks each field "must match" or "may change" on resuming: the schedule that a checkpoint
    records and check_resumable compares changes with every field marked "must match", and with no other."""
    settings = nb02.TrainingSettings(num_epochs=3, peak_lr=1e-3, eval_freq=5, eval_iter=1, start_context="It")
    others = dict(num_epochs=4, peak_lr=2e-3, eval_freq=6, eval_iter=2, start_context="At", warmup_fraction=0.5,
                  accumulation_steps=2, clip_norm=0.5, precision="bf16", best_checkpoint_path=Path("best.pt"),
                  checkpoint_path=Path("last.pt"), stop_after_epoch=1)
    assert others.keys() == {setting.name for setting in dataclasses.fields(settings)}  # every field is tried
    schedule = settings.schedule(steps_per_epoch=10, processes=2)
    changes_the_schedule = {name for name, value in others.items()
                            if dataclasses.replace(settings, **{name: value}).schedule(10, 2) != schedule}
    assert changes_the_schedule == set(nb02.TrainingSettings.must_match())
    assert set(nb02.TrainingSettings.must_match()) == {"num_epochs", "peak_lr", "warmup_fraction", "accumulation_steps"}
    # What checkpoints have recorded since schedules were (so that they still resume): the warmup in steps.
    assert schedule == dict(num_epochs=3, steps_per_epoch=10, accumulation_steps=1, processes=2, peak_lr=1e-3,
                            warmup_steps=6)


@pytest.mark.parametrize("contents", [torch.zeros(3), [1, 2], {"model": {}}, {"config": {}}],
                         ids=["bare tensor", "list", "no config", "no model"])
def test_a_file_that_is_not_a_checkpoint_is_refused_naming_it(nb02, tmp_path, contents):
    torch.save(contents, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"other\.pt is not a checkpoint") as refused:
        nb02.load_checkpoint(tmp_path / "other.pt")
    assert "\n" not in str(refused.value)


# PyTorch before 2.5 (requirements.txt admits 2.4) has no get_unsafe_globals_in_checkpoint to name the code.
@pytest.mark.parametrize("names_code", [True, False], ids=["PyTorch names the code", "PyTorch 2.4"])
def test_a_checkpoint_that_carries_code_is_refused_in_our_words(nb02, tmp_path, monkeypatch, names_code):
    marker = tmp_path / "code_ran"

    class CreatesAFile:
        def __reduce__(self):
            return open, (str(marker), "w")

    torch.save({"config": {}, "model": {}, "hook": CreatesAFile()}, tmp_path / "with_code.pt")
    if not names_code:
        monkeypatch.delattr(torch.serialization, "get_unsafe_globals_in_checkpoint")
    with pytest.raises(ValueError, match=r"with_code\.pt holds code .* and was not loaded") as refused:
        nb02.load_checkpoint(tmp_path / "with_code.pt")
    assert "weights_only" not in str(refused.value) and "\n" not in str(refused.value)
    assert not marker.exists()


def test_a_failed_write_names_the_file_and_keeps_the_previous_checkpoint(nb02, tmp_path, monkeypatch):
    path = nb02.save_checkpoint(tmp_path / "last.pt", tiny_model(nb02), step=1)

    def full_disk(*args, **kwargs):  # what torch.save raises when a write fails
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="could not be written") as refused:
        nb02.save_checkpoint(path, tiny_model(nb02, seed=1), step=2)
    assert refused.value.filename == str(path)
    monkeypatch.undo()
    assert nb02.load_checkpoint(path)["step"] == 1


@pytest.mark.parametrize("key, value", [("vocab_size", 95.0), ("n_layers", "2"), ("qkv_bias", 1), ("drop_rate", True)])
def test_a_config_value_of_the_wrong_type_is_refused_naming_it(nb02, tmp_path, key, value):
    checkpoint = {"config": dataclasses.asdict(tiny_model(nb02).cfg), "model": {}}
    checkpoint["config"][key] = value
    with pytest.raises(ValueError, match=rf"wrong type \({key}={value!r}\)"):
        nb02.config_from_checkpoint(checkpoint, source="edited.pt")
    checkpoint["config"].update({key: dataclasses.asdict(tiny_model(nb02).cfg)[key], "drop_rate": 0})
    assert nb02.config_from_checkpoint(checkpoint).drop_rate == 0  # an int where a float is expected is a number


@pytest.mark.parametrize("field_change, key", [("extra", "n_experts"), ("missing", "qkv_bias")])
def test_a_config_with_an_unknown_or_missing_key_is_refused_naming_it(nb02, tmp_path, field_change, key):
    import dataclasses

    model = tiny_model(nb02)
    config = dataclasses.asdict(model.cfg)
    if field_change == "extra":
        config["n_experts"] = 8
    else:
        del config["qkv_bias"]
    model.cfg = dataclasses.make_dataclass("OtherConfig", list(config))(**config)  # what save_checkpoint records
    path = nb02.save_checkpoint(tmp_path / "other_config.pt", model)
    with pytest.raises(ValueError, match=rf"other_config\.pt.*'{key}'"):
        nb02.load_checkpoint(path)
    with pytest.raises(ValueError, match=rf"'{key}'"):
        nb02.model_from_checkpoint({"config": config, "model": model.state_dict()})


# 2e-38 and 1e-37 sit above float32's smallest normal number (1.2e-38), so they take the sampling path, where
# logits of about 30 divided by them overflow unless the largest logit is subtracted first.
@pytest.mark.parametrize("temperature", [1e-30, 1e-37, 2e-38, 1e-38, 1e-39, 1e-45, 1e-46, 5e-324])
def test_a_tiny_temperature_is_greedy(nb02, temperature):
    torch.manual_seed(0)
    logits = 10 * torch.randn(4, 50)
    assert torch.equal(nb02.sample_next_token(logits, temperature), logits.argmax(-1, keepdim=True))
    model, prompt = tiny_model(nb02), torch.tensor([[3, 1, 4]])
    assert torch.equal(nb02.generate(model, prompt, 5, temperature=temperature, seed=0), nb02.generate(model, prompt, 5))


@pytest.mark.parametrize("eos_id", [VOCAB, -1])
def test_generate_refuses_an_end_token_outside_the_vocabulary(nb02, eos_id):
    with pytest.raises(ValueError, match="eos_id"):
        nb02.generate(tiny_model(nb02), torch.tensor([[1, 2]]), 3, eos_id=eos_id)


@pytest.mark.parametrize("prompt, problem", [
    (torch.tensor([[1, VOCAB]]), str(VOCAB)),
    (torch.tensor([[-1, 2]]), "-1"),
    (torch.tensor([1, 2, 3]), r"\(batch, n_tokens\)"),
    (torch.tensor([[[1, 2]]]), r"\(batch, n_tokens\)"),
])
def test_generate_refuses_a_prompt_out_of_range_or_of_the_wrong_shape(nb02, prompt, problem):
    with pytest.raises(ValueError, match=problem):
        nb02.generate(tiny_model(nb02), prompt, 3)
