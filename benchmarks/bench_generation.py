"""The generation and evaluation sections of benchmarks/bench.py, and the helpers its training section
shares with them (the two models with the same weights, timing in turns). Run bench.py, not this file.

- generation: greedy decoding of random tokens, at batch 1 (ours before, with generate's cache grown by
  concatenation; ours after, generate_batch with its cache written in place; Hugging Face's generate) and
  at batch 8 (prompts of 8 lengths, left-padded), in fp32 and with bf16 weights;
- evaluation: the pass of 05's evaluation over its 110 test prompts, on random stand-ins of the real
  sizes, before (one prompt at a time with generate) and after (generate_batch, 8 prompts at a time).
"""

from __future__ import annotations

import copy
import json
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from gpt2_from_scratch.architecture import GPTConfig, GPTModel, load_gpt2_tokenizer
from gpt2_from_scratch.instruct import RESPONSE_MARKER, format_input, split_instruction_data
from gpt2_from_scratch.pretraining import bf16_weights, generate, generate_batch, pick_precision, text_to_token_ids
from gpt2_from_scratch.weights import gpt_to_openai_params, hparams_from_config, to_hugging_face
from gpt2_support.hub import hf_config_from_hparams

REPO_ROOT = Path(__file__).resolve().parent.parent
INSTRUCTION_DATA = REPO_ROOT / "data" / "instruction-data.json"
EVALUATION_BATCH_SIZE = 8  # 05's GENERATION_BATCH_SIZE: its evaluation answers 8 test prompts at a time
MAX_RESPONSE_TOKENS = 256  # 05's limit on a response's new tokens


# --- shared with bench.py's training section --------------------------------------------------------------------

def our_config(smoke, drop_rate):
    if smoke:
        return GPTConfig(vocab_size=512, context_length=256, emb_dim=64, n_heads=4, n_layers=2, drop_rate=drop_rate)
    return GPTConfig.from_preset("124M", drop_rate=drop_rate)  # OpenAI's 124M architecture


def hugging_face_twin(model, drop_rate):
    """transformers' GPT2LMHeadModel with our model's configuration, dropout and weights."""
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = model.cfg
    hparams = hparams_from_config(cfg)
    state = to_hugging_face(gpt_to_openai_params(model), hparams).state_dict()  # 03's converters
    config = GPT2Config.from_dict(hf_config_from_hparams(hparams) | {  # the Hub's config.json, with our dropout
        "resid_pdrop": drop_rate, "embd_pdrop": drop_rate, "attn_pdrop": drop_rate,
        "bos_token_id": cfg.vocab_size - 1, "eos_token_id": cfg.vocab_size - 1})
    hf_model = GPT2LMHeadModel(config)
    hf_model.load_state_dict(state)
    return hf_model


def check_same_logits(ours, theirs, vocab_size):
    token_ids = torch.randint(0, vocab_size, (1, 16), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        difference = (ours.eval()(token_ids) - theirs.eval()(token_ids).logits).abs().max().item()
    assert difference < 1e-4, f"the two models disagree (max |logit difference| {difference:.1e})"
    return difference


def interleaved_times(functions, repeats, device, warmup):
    """Call each function `warmup` times, then `repeats` rounds in turn (so drift in the machine's speed hits
    all of them alike); returns {name: [seconds, ...]}."""
    for function in functions.values():
        for _ in range(warmup):
            function()
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            synchronize(device)
            start = time.perf_counter()
            function()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return times


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def linear_weights(model):
    """(number, bytes) of the weights of all nn.Linear layers, the output head included: the matrices a
    forward pass multiplies by. A head tied to the token embedding counts once (the embedding is no Linear)."""
    weights = [module.weight for module in model.modules() if isinstance(module, nn.Linear)]
    return sum(w.numel() for w in weights), sum(w.numel() * w.element_size() for w in weights)


# --- generation -------------------------------------------------------------------------------------------------

def ours_after(model, prompts, n_new):
    """generate_batch's new tokens, (batch, n_new), for a list of 1-D prompts."""
    outputs = generate_batch(model, prompts, n_new)
    return torch.stack([output[len(prompt):] for prompt, output in zip(prompts, outputs)])


def hf_generate(model, prompts, n_new):
    """Hugging Face's greedy generate, with its cache, on the prompts left-padded (attention mask 0 on the
    padding): its new tokens, (batch, n_new)."""
    longest = max(len(prompt) for prompt in prompts)
    token_ids = torch.zeros(len(prompts), longest, dtype=torch.long, device=prompts[0].device)
    mask = torch.zeros_like(token_ids)
    for row, prompt in enumerate(prompts):
        token_ids[row, longest - len(prompt):], mask[row, longest - len(prompt):] = prompt, 1
    with torch.inference_mode():
        # min_new_tokens: never stop at the end token (our calls have none)
        output = model.generate(token_ids, attention_mask=mask, max_new_tokens=n_new, min_new_tokens=n_new,
                                do_sample=False, use_cache=True, pad_token_id=0)
    return output[:, longest:]


def agreement(a, b):
    """How alike two (batch, n_new) tensors of new tokens are, in words."""
    text = f"{(a == b).float().mean().item():.0%} of new tokens identical"
    if len(a) > 1:
        text += f" ({sum(torch.equal(x, y) for x, y in zip(a, b))} of {len(a)} rows entirely)"
    return text


def time_generation(smoke, device, repeats):
    """Greedy generation of n_new tokens at batch 1 (an 8-token prompt) and batch 8 (prompts of 40 to 110
    tokens): ours before and after, Hugging Face's. At batch 1 in fp32 all three must give the same tokens.
    Where pick_precision says bf16, again with bf16 weights."""
    n_new = 24 if smoke else 200
    torch.manual_seed(123)
    ours = GPTModel(our_config(smoke, 0.0)).eval()
    theirs = hugging_face_twin(ours, 0.0).eval()
    check_same_logits(ours, theirs, ours.cfg.vocab_size)
    ours.to(device), theirs.to(device)
    vocab_size = ours.cfg.vocab_size
    generator = torch.Generator().manual_seed(2)
    prompt = torch.randint(0, vocab_size, (8,), generator=generator).to(device)
    lengths = [40, 90, 60, 110, 50, 100, 70, 80]
    prompts_8 = [torch.randint(0, vocab_size, (n,), generator=generator).to(device) for n in lengths]

    before, after_1, hf_1 = ("batch 1, before: generate, cache by concatenation", "batch 1, after: generate_batch",
                             "batch 1, Hugging Face generate")
    after_8, hf_8 = "batch 8, after: generate_batch", "batch 8, Hugging Face generate"
    models = {"fp32": (ours, theirs)}
    if pick_precision(device) == "bf16":
        models["bf16 weights"] = (bf16_weights(ours), copy.deepcopy(theirs).to(torch.bfloat16))
    rows, outputs, facts = [], {}, []
    for precision, (our_model, their_model) in models.items():
        functions = {}
        if precision == "fp32":
            functions[before] = lambda m=our_model: generate(m, prompt.unsqueeze(0), n_new)[:, len(prompt):]
        functions |= {after_1: lambda m=our_model: ours_after(m, [prompt], n_new),
                      hf_1: lambda m=their_model: hf_generate(m, [prompt], n_new),
                      after_8: lambda m=our_model: ours_after(m, prompts_8, n_new),
                      hf_8: lambda m=their_model: hf_generate(m, prompts_8, n_new)}
        got = outputs[precision] = {name: function() for name, function in functions.items()}  # also the warm-up
        if precision == "fp32":
            for name in (after_1, hf_1):
                assert torch.equal(got[name], got[before]), f"{name} generated other tokens than generate"
            facts.append(f"fp32 at batch 8, ours and Hugging Face's: {agreement(got[after_8], got[hf_8])}")
        else:
            facts.append(f"{precision}, ours and Hugging Face's: batch 1 {agreement(got[after_1], got[hf_1])}, "
                         f"batch 8 {agreement(got[after_8], got[hf_8])}; {precision} against fp32, ours: batch 1 "
                         f"{agreement(got[after_1], outputs['fp32'][after_1])}, batch 8 "
                         f"{agreement(got[after_8], outputs['fp32'][after_8])}")
        times = interleaved_times(functions, repeats, device, warmup=0)
        _, weight_bytes = linear_weights(our_model)  # Hugging Face's model in bf16 reads as many bytes
        for name, seconds in times.items():
            batch = 8 if name.startswith("batch 8") else 1
            row = {"section": "generation", "precision": precision, "what": name,
                   "value": batch * n_new / statistics.median(seconds), "unit": "tokens/s", "runs": len(seconds)}
            if batch == 1:  # at batch 1 a step reads every matrix once: its share of the matrix-vector rate
                row |= {"limit precision": "bf16" if precision.startswith("bf16") else "fp32",
                        "weight bytes per token": weight_bytes}
            rows.append(row)
    note = (f"{n_new} new tokens, greedy; batch 1: an 8-token prompt, where in fp32 all three give identical tokens "
            f"(checked); batch 8: prompts of {min(lengths)} to {max(lengths)} tokens, left-padded, tokens/s counting "
            f"the new tokens of all 8 rows (near-ties may round apart); " + "; ".join(facts)
            + f". Share of the limit (batch 1): tokens/s x the bytes of all linear layers' weights, output head "
              f"included ({linear_weights(ours)[1] / 1e6:,.3g} MB in fp32, half in bf16), over the matrix-vector "
              f"rate of that precision")
    return rows, note


# --- evaluation -------------------------------------------------------------------------------------------------

def evaluation_prompts(n_prompts):
    """05's test prompts (format_input + RESPONSE_MARKER, its split of data/instruction-data.json), the first
    n_prompts, as 1-D token tensors, and each one's number of new tokens to emulate: its reference output's
    tokens + 1 for the end token, at most MAX_RESPONSE_TOKENS."""
    tokenizer = load_gpt2_tokenizer(REPO_ROOT / "data" / "gpt2-tokenizer", REPO_ROOT / ".cache" / "tiktoken")
    _, test_data, _ = split_instruction_data(json.loads(INSTRUCTION_DATA.read_text(encoding="utf-8")))
    entries = test_data[:n_prompts]
    prompts = [text_to_token_ids(format_input(entry) + RESPONSE_MARKER, tokenizer)[0] for entry in entries]
    # as 05's InstructionDataset encodes a response (an "<|endoftext|>" in the text is text)
    n_new = [min(len(tokenizer.encode(entry["output"], disallowed_special=())) + 1, MAX_RESPONSE_TOKENS)
             for entry in entries]
    return prompts, n_new


def time_evaluation(smoke, device, sizes, n_prompts):
    """Seconds for 05's evaluation pass over the test prompts on a random stand-in of each size: before, one
    prompt at a time with generate; after, generate_batch over consecutive groups of 8. Each timed once. Then
    the same for the first 8 prompts with every answer 256 tokens long (the limit), the upper bound."""
    prompts, n_new = evaluation_prompts(8 if smoke else n_prompts)
    prompts = [prompt.to(device) for prompt in prompts]
    longest_answers = 24 if smoke else MAX_RESPONSE_TOKENS
    passes = {"": (prompts, n_new),  # answers as long as the references
              f"8 prompts x {longest_answers} tokens, ": (prompts[:8], [longest_answers] * len(prompts[:8]))}

    def groups(n):
        return [range(start, min(start + EVALUATION_BATCH_SIZE, n)) for start in range(0, n, EVALUATION_BATCH_SIZE)]

    def before(model, pass_prompts, pass_new):
        for prompt, n in zip(pass_prompts, pass_new):
            generate(model, prompt.unsqueeze(0), n)

    def after(model, pass_prompts, pass_new):
        # A real model stops each row at its end token, but a batch runs until its longest answer is done.
        for group in groups(len(pass_prompts)):
            generate_batch(model, [pass_prompts[i] for i in group], max(pass_new[i] for i in group))

    rows = []
    for size in ["tiny"] if smoke else sizes:
        torch.manual_seed(123)
        cfg = (GPTConfig(vocab_size=50257, context_length=1024, emb_dim=64, n_heads=4, n_layers=2, drop_rate=0.0)
               if smoke else GPTConfig.from_preset(size, drop_rate=0.0))
        model = GPTModel(cfg).to(device).eval()
        variants = {("fp32", "before: generate, one prompt at a time"): (before, model),
                    ("fp32", f"after: generate_batch, {EVALUATION_BATCH_SIZE} at a time"): (after, model)}
        if pick_precision(device) == "bf16":
            variants[("bf16 weights", f"after: generate_batch, {EVALUATION_BATCH_SIZE} at a time")] = (
                after, bf16_weights(model))
        for label, (pass_prompts, pass_new) in passes.items():
            for (precision, what), (run, variant_model) in variants.items():
                generate_batch(variant_model, prompts[:2], 2)  # warm up (first calls load kernels)
                synchronize(device)
                start = time.perf_counter()
                run(variant_model, pass_prompts, pass_new)
                synchronize(device)
                rows.append({"section": "evaluation", "precision": precision, "what": f"{size}, {label}{what}",
                             "value": time.perf_counter() - start, "unit": "s", "runs": 1})
        del model, variants
    batched_steps = sum(max(n_new[i] for i in group) for group in groups(len(prompts)))
    note = (f"05's evaluation pass over {len(prompts)} of its 110 test prompts ({min(map(len, prompts))} to "
            f"{max(map(len, prompts))} tokens) on random stand-ins ({'a tiny model' if smoke else ', '.join(sizes)}; "
            f"random weights). A random model never writes the end token, so each answer's length is emulated: "
            f"its reference output's tokens + 1 (the end token), at most {MAX_RESPONSE_TOKENS}: mean "
            f"{statistics.mean(n_new):.1f}, max {max(n_new)}. Before: generate, one prompt at a time "
            f"({sum(n_new)} decoding steps); after: generate_batch over consecutive groups of "
            f"{EVALUATION_BATCH_SIZE}, each run until its longest answer is done, as a real model's batch is "
            f"({batched_steps} steps of up to {EVALUATION_BATCH_SIZE} rows); each timed once, after a warm-up. The "
            f"rows '8 prompts x {longest_answers} tokens' time the first 8 prompts with every answer at the limit, "
            f"as random weights (and models that never write the end token) do: the upper bound per answer")
    return rows, note
