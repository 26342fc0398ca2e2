"""02's generate_batch (many prompts at once, a cache written in place, bf16 weights) and 05's use of it."""

import json

import pytest
import torch
from torch import nn

VOCAB = 97


def tiny_model(nb02, seed=0, dtype=torch.float64, **overrides):
    torch.manual_seed(seed)
    settings = dict(vocab_size=VOCAB, context_length=32, emb_dim=32, n_heads=4, n_layers=2, drop_rate=0.0)
    return nb02.GPTModel(nb02.GPTConfig(**{**settings, **overrides})).to(dtype).eval()


def random_prompts(lengths, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(0, VOCAB, (length,), generator=generator) for length in lengths]


# In float64 a batch's other summation order cannot flip a greedy choice (a near-tie would have to lie within
# about 1e-15 of the logits' size), so batched and alone must agree token for token.
@pytest.mark.parametrize("qkv_bias, tie_weights", [(False, False), (True, True)])
def test_each_prompt_in_a_batch_gets_the_tokens_it_gets_alone(nb02, qkv_bias, tie_weights):
    model = tiny_model(nb02, qkv_bias=qkv_bias, tie_weights=tie_weights)
    prompts = random_prompts([1, 5, 9, 3, 9])
    outputs = nb02.generate_batch(model, prompts, 20)
    for prompt, output in zip(prompts, outputs):
        assert torch.equal(output, nb02.generate(model, prompt.unsqueeze(0), 20)[0])


def test_rows_stop_at_their_own_end_token(nb02):
    model = tiny_model(nb02, seed=2)
    prompts = random_prompts([4, 7, 2], seed=3)
    eos_id = nb02.generate_batch(model, prompts[:1], 6)[0][4 + 5].item()  # row 0's 6th new token
    outputs = nb02.generate_batch(model, prompts, 20, eos_id=eos_id)
    for prompt, output in zip(prompts, outputs):
        assert torch.equal(output, nb02.generate(model, prompt.unsqueeze(0), 20, eos_id=eos_id)[0])
    assert outputs[0][-1] == eos_id and len(outputs[0]) <= 4 + 6  # it stopped at (or before) that token
    assert len({len(output) - len(prompt) for prompt, output in zip(prompts, outputs)}) > 1


def test_sampling_in_a_batch_is_repeatable_with_a_seed(nb02):
    model, prompts = tiny_model(nb02), random_prompts([3, 6])
    sample = lambda seed: nb02.generate_batch(model, prompts, 12, temperature=1.5, top_p=0.95, seed=seed)
    assert all(torch.equal(a, b) for a, b in zip(sample(7), sample(7)))
    assert not all(torch.equal(a, b) for a, b in zip(sample(7), sample(8)))
    greedy = nb02.generate_batch(model, prompts, 12)
    top_1 = nb02.generate_batch(model, prompts, 12, temperature=1.0, top_k=1, seed=7)
    assert all(torch.equal(a, b) for a, b in zip(greedy, top_1))


def test_padding_positions_and_who_attends_to_whom(nb02):
    is_token = torch.tensor([[False, False, True, True, True], [True, True, True, True, True]])
    positions, allowed = nb02.padding_and_positions(is_token, start=0)
    assert positions.tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]
    # Row 0: the padding slots 0 and 1 attend to themselves only; real tokens to the real tokens up to their own.
    assert allowed[0].int().tolist() == [[1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 1, 1, 0],
                                         [0, 0, 1, 1, 1]]
    assert torch.equal(allowed[1], torch.ones(5, 5, dtype=torch.bool).tril())
    positions, allowed = nb02.padding_and_positions(is_token, start=4)
    assert positions.tolist() == [[2], [4]] and allowed.shape == (2, 1, 5)


def test_the_cache_is_written_in_place_and_equals_a_full_forward(nb02):
    model = tiny_model(nb02)
    token_ids = torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(4))
    cache = nb02.KVCache(model, batch=2, max_tokens=12, dtype=torch.float64, device="cpu")
    storage = cache.keys.data_ptr(), cache.values.data_ptr()
    every_slot = torch.ones(2, 1, dtype=torch.bool)
    with torch.inference_mode():
        full = model(token_ids)
        logits = [nb02.forward_into_cache(model, token_ids[:, :5], every_slot.expand(2, 5), cache)]
        for slot in range(5, 12):
            logits.append(nb02.forward_into_cache(model, token_ids[:, slot:slot + 1], every_slot, cache))
    assert (cache.keys.data_ptr(), cache.values.data_ptr()) == storage and cache.length == 12
    torch.testing.assert_close(torch.stack(logits, dim=1), full[:, 4:], rtol=0, atol=1e-12)


@pytest.mark.parametrize("prompts, max_new_tokens, problem", [
    ([[1] * 30], 4, "context length"),  # 30 + 4 - 1 = 33 tokens would be fed: one more than the context
    ([[1, 2], []], 3, "empty"),
    ([[1, VOCAB]], 3, str(VOCAB)),
    ([], 3, "at least one prompt"),
    ([[1, 2]], -1, "max_new_tokens"),
    ([[[1, 2], [3, 4]]], 3, "prompt 0 must be a 1-D"),
    ([[1, 2], [1.5, 2.0]], 3, "prompt 1 must be a 1-D"),
])
def test_generate_batch_refuses_what_it_cannot_do(nb02, prompts, max_new_tokens, problem):
    with pytest.raises(ValueError, match=problem):
        nb02.generate_batch(tiny_model(nb02), prompts, max_new_tokens)


@pytest.mark.parametrize("options, problem", [(dict(temperature=-1.0), "temperature"), (dict(eos_id=VOCAB), "eos_id"),
                                              (dict(temperature=1.0, top_p=0.0), "top_p")])
def test_generate_batch_refuses_bad_options(nb02, options, problem):
    with pytest.raises(ValueError, match=problem):
        nb02.generate_batch(tiny_model(nb02), [[1, 2]], 3, **options)


def test_bf16_weights_copies_the_linear_layers_only(nb02):
    model = tiny_model(nb02, dtype=torch.float32, tie_weights=True)
    model_bf16 = nb02.bf16_weights(model)
    assert all(parameter.dtype == torch.float32 for parameter in model.parameters())  # the original is untouched
    for name, module in model_bf16.named_modules():
        if isinstance(module, nn.Linear):
            assert module.weight.dtype == torch.bfloat16, name
        if isinstance(module, nn.LayerNorm):
            assert module.weight.dtype == torch.float32, name
    assert model_bf16.tok_emb.weight is model_bf16.out_head.weight  # still tied
    prompts = random_prompts([3, 8])
    outputs = nb02.generate_batch(model_bf16, prompts, 10)  # under bf16 autocast, with a bf16 cache
    assert [len(output) for output in outputs] == [13, 18]
    assert all(0 <= token < VOCAB for output in outputs for token in output.tolist())


def test_05_writes_the_same_responses_in_batches_as_one_at_a_time(nb01, nb02, nb05, repo_root):
    tokenizer = nb01.load_gpt2_tokenizer()
    entries = json.loads((repo_root / "data" / "instruction-data.json").read_text(encoding="utf-8"))[:5]
    model = tiny_model(nb02, vocab_size=50257, context_length=256, emb_dim=16, n_layers=1)
    one_at_a_time = nb05.generate_responses(model, entries, tokenizer, "cpu", max_new_tokens=8, batch_size=1)
    batched = nb05.generate_responses(model, entries, tokenizer, "cpu", max_new_tokens=8, batch_size=3)
    assert batched == one_at_a_time and len(batched) == 5 and any(batched)


def test_05_writes_its_responses_with_bf16_weights_only_when_asked(nb02, nb05, monkeypatch):
    writers = []
    monkeypatch.setattr(nb05, "generate_responses",
                        lambda model, entries, *args: writers.append(model.out_head.weight.dtype) or ["x"] * len(entries))
    monkeypatch.setattr(nb05, "calc_loss_loader", lambda loader, model, device: 1.0)
    model = tiny_model(nb02, dtype=torch.float32)
    for precision in ("fp32", "bf16"):
        nb05.evaluate_instruction_model(model, [{"output": "x"}], None, None, "cpu", 4, 2, precision)
    assert writers == [torch.float32, torch.bfloat16]
    assert model.out_head.weight.dtype == torch.float32  # the model evaluated is not changed


def test_the_last_new_token_needs_no_slot_in_the_cache(nb02):
    model, prompt = tiny_model(nb02), random_prompts([30])
    output = nb02.generate_batch(model, prompt, 3)[0]  # 30 + 3 - 1 = 32 tokens fed: exactly the context
    assert torch.equal(output, nb02.generate(model, prompt[0].unsqueeze(0), 3)[0])


def test_bf16_weights_of_a_lora_model(nb02, nb04):
    model = nb04.add_lora(tiny_model(nb02, dtype=torch.float32), rank=2, alpha=2, train_head=False)
    model_bf16 = nb02.bf16_weights(model)
    assert all(parameter.dtype == torch.float32 for parameter in model.parameters())
    outputs = nb02.generate_batch(model_bf16, random_prompts([3, 5]), 6)
    assert [len(output) for output in outputs] == [9, 11]


def test_05_refuses_an_unknown_generation_precision(nb02, nb05, monkeypatch):
    monkeypatch.setattr(nb05, "calc_loss_loader", lambda loader, model, device: 1.0)
    with pytest.raises(ValueError, match="generation_precision"):
        nb05.evaluate_instruction_model(tiny_model(nb02), [{"output": "x"}], None, None, "cpu", 4, 2, "fp16")
