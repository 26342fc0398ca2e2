"""02's beam_search and repetition penalty give Hugging Face's tokens: generate(num_beams=..., length_penalty=...,
early_stopping=..., repetition_penalty=...) on the same weights, for several prompts and settings.

Both models run in float64 and both decoders score in float32 (Hugging Face casts the logits to float32
before its log-softmax; beam_search does the same), so the scores are bitwise the same unless two float64
logits, equal to ~1e-16, round to different float32 numbers: about one chance in 10**8 per logit, far
too rare to flip an ordering here. A mismatch therefore means a different rule, not rounding.
"""

import pytest
import torch

from test_pretrained_weights import TINY, hf_to_openai_params, random_hf_model

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def twins(nb03):
    hf_model = random_hf_model(TINY, seed=3).double()
    ours = nb03.gpt_for_checkpoint(TINY)
    nb03.load_weights_into_gpt(ours, hf_to_openai_params(random_hf_model(TINY, seed=3), TINY))
    return ours.double().eval(), hf_model


PROMPTS = [[1, 2, 3, 4], [17], [250, 8, 499, 31, 7, 7, 60]]
SETTINGS = [  # (num_beams, length_penalty, early_stopping, repetition_penalty)
    (2, 1.0, False, 1.0), (4, 1.0, False, 1.0), (4, 0.0, True, 1.0), (4, 2.0, "never", 1.0),
    (3, -1.0, False, 1.0), (4, 1.0, "never", 1.3), (5, 0.5, True, 0.8), (4, 1.0, False, 1.3),
]


def end_token_it_reaches(nb02, ours, prompt):
    """A token greedy decoding writes third: an end token that beams do reach, so that finishing is tested."""
    return nb02.generate(ours, prompt, 3)[0, -1].item()


@pytest.mark.parametrize("prompt", PROMPTS, ids=lambda prompt: f"{len(prompt)}-token prompt")
@pytest.mark.parametrize("with_end_token", [False, True], ids=["no end token", "end token"])
def test_beam_search_gives_hugging_faces_tokens(nb02, twins, prompt, with_end_token):
    ours, hf_model = twins
    prompt = torch.tensor([prompt])
    eos_id = end_token_it_reaches(nb02, ours, prompt) if with_end_token else None
    lengths = set()
    for num_beams, length_penalty, early_stopping, repetition_penalty in SETTINGS:
        expected = hf_model.generate(prompt, max_new_tokens=12, do_sample=False, num_beams=num_beams,
                                     length_penalty=length_penalty, early_stopping=early_stopping,
                                     repetition_penalty=repetition_penalty, eos_token_id=eos_id, pad_token_id=0)
        actual = nb02.beam_search(ours, prompt, 12, num_beams=num_beams, length_penalty=length_penalty,
                                  early_stopping=early_stopping, eos_id=eos_id, repetition_penalty=repetition_penalty)
        assert actual.tolist() == expected.tolist(), (num_beams, length_penalty, early_stopping, repetition_penalty)
        lengths.add(actual.shape[1])
    if with_end_token:
        assert len(lengths) > 1  # some settings stop at the end token, others go on: both paths were taken


def test_never_searches_on_where_false_stops(nb02, twins):
    """A case (found by search) where early_stopping="never" with a length penalty goes on to a better text than
    False's heuristic, which judges the running beams at their present length: both as Hugging Face's."""
    ours, hf_model = twins
    prompt, eos_id = torch.tensor([[314, 267]]), 100
    outputs = {}
    for early_stopping in (False, "never"):
        expected = hf_model.generate(prompt, max_new_tokens=15, do_sample=False, num_beams=2, length_penalty=1.0,
                                     early_stopping=early_stopping, eos_token_id=eos_id, pad_token_id=0)
        outputs[early_stopping] = nb02.beam_search(ours, prompt, 15, num_beams=2, length_penalty=1.0,
                                                   early_stopping=early_stopping, eos_id=eos_id)
        assert outputs[early_stopping].tolist() == expected.tolist(), early_stopping
    assert outputs[False].tolist() != outputs["never"].tolist()


@pytest.mark.parametrize("repetition_penalty", [1.0, 1.5, 0.7])
def test_greedy_with_a_repetition_penalty_gives_hugging_faces_tokens(nb02, twins, repetition_penalty):
    ours, hf_model = twins
    for prompt in PROMPTS:
        prompt = torch.tensor([prompt])
        expected = hf_model.generate(prompt, max_new_tokens=15, do_sample=False, repetition_penalty=repetition_penalty,
                                     pad_token_id=0)
        assert nb02.generate(ours, prompt, 15, repetition_penalty=repetition_penalty).tolist() == expected.tolist()


def test_the_penalty_changes_the_tokens(nb02, twins):
    """(So that the comparisons above would notice a penalty left out.)"""
    ours, _ = twins
    prompt = torch.tensor([PROMPTS[0]])
    assert nb02.generate(ours, prompt, 15, repetition_penalty=1.5).tolist() != nb02.generate(ours, prompt, 15).tolist()
    assert (nb02.beam_search(ours, prompt, 12, repetition_penalty=1.3).tolist()
            != nb02.beam_search(ours, prompt, 12).tolist())


@pytest.mark.parametrize("options, message", [
    (dict(num_beams=1), "num_beams >= 2"), (dict(early_stopping="soon"), "early_stopping True, False or 'never'"),
    (dict(repetition_penalty=0.0), "repetition_penalty > 0"), (dict(eos_id=500), "eos_id must be a token id"),
])
def test_bad_settings_are_refused(nb02, twins, options, message):
    with pytest.raises(ValueError, match=message):
        nb02.beam_search(twins[0], torch.tensor([[1, 2]]), 3, **options)
    with pytest.raises(ValueError, match="one prompt"):
        nb02.beam_search(twins[0], torch.tensor([[1, 2], [3, 4]]), 3)
