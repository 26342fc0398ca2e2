"""03's logit_lens: the readout after block k is what a model of the first k blocks would output."""

import copy

import pytest
import torch


def tiny_model(nb01, tie_weights):
    torch.manual_seed(0)
    config = nb01.GPTConfig(vocab_size=61, context_length=16, emb_dim=32, n_heads=4, n_layers=3, drop_rate=0.1,
                            qkv_bias=True, tie_weights=tie_weights)
    return nb01.GPTModel(config).eval()


@pytest.mark.parametrize("tie_weights", [True, False])
def test_each_readout_is_the_output_of_the_model_cut_after_that_block(nb01, nb03, tie_weights):
    model = tiny_model(nb01, tie_weights)
    token_ids = torch.randint(0, 61, (2, 9), generator=torch.Generator().manual_seed(1))
    readouts = nb03.logit_lens(model, token_ids)
    assert readouts.shape == (4, 2, 9, 61)
    with torch.inference_mode():
        for n_blocks in range(4):
            cut = copy.deepcopy(model)
            cut.blocks = cut.blocks[:n_blocks]  # no blocks at all: the embeddings read out directly
            assert torch.equal(readouts[n_blocks], cut(token_ids)), n_blocks
        assert torch.equal(readouts[-1], model(token_ids))  # the last readout is the model's own output
