"""The reader of Hugging Face's GPT-2 safetensors files (gpt2_support.hub): the same params as OpenAI's checkpoint,
the same logits as Hugging Face's model, and a named error for every file it must refuse."""

import json

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from gpt2_support.hub import (hf_config_from_hparams, hparams_from_hf_config, load_gpt2_params_from_safetensors,
                              openai_name_of_hf)
from gpt2_support.layout import CheckpointError
from gpt2_support.weight_names import weight_names

HPARAMS = {"n_vocab": 97, "n_ctx": 16, "n_embd": 32, "n_head": 4, "n_layer": 2}


@pytest.fixture(scope="module")
def saved(tmp_path_factory, nb03):
    """A random GPT-2 in OpenAI's params, and the same weights saved by transformers as safetensors."""
    params = nb03.random_gpt2_params(HPARAMS, seed=7)
    folder = tmp_path_factory.mktemp("hf")
    hf_model = nb03.to_hugging_face(params, HPARAMS)
    hf_model.save_pretrained(folder, safe_serialization=True)
    return params, hf_model, folder


def test_the_same_params_as_openais_layout(saved, nb03):
    params, _, folder = saved
    hparams = hparams_from_hf_config(json.loads((folder / "config.json").read_text()))
    assert hparams == HPARAMS
    # params_to_variables (03) lists every variable hparams imply and refuses a missing one or a wrong shape.
    loaded = nb03.params_to_variables(load_gpt2_params_from_safetensors(folder / "model.safetensors", hparams), HPARAMS)
    for name, array in nb03.params_to_variables(params, HPARAMS).items():
        assert np.array_equal(loaded[name], array), name


def test_loaded_into_our_model_it_gives_hugging_faces_logits(saved, nb03):
    _, hf_model, folder = saved
    params = load_gpt2_params_from_safetensors(folder / "model.safetensors", HPARAMS)
    model = nb03.gpt_for_checkpoint(HPARAMS)
    nb03.load_weights_into_gpt(model, params)
    token_ids = torch.randint(0, HPARAMS["n_vocab"], (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        difference = (model.eval()(token_ids) - hf_model(token_ids).logits).abs().max().item()
    assert difference < 1e-5


def test_hub_style_names_without_prefix_and_with_mask_buffers_and_tied_head(saved, tmp_path, nb03):
    """The Hub's own files name tensors without "transformer." and may carry the causal-mask buffers."""
    params, _, folder = saved
    tensors = {name.removeprefix("transformer."): array for name, array in load_file(folder / "model.safetensors").items()}
    tensors["h.0.attn.bias"] = np.ones((1, 1, 16, 16), dtype=np.float32)
    tensors["lm_head.weight"] = tensors["wte.weight"].copy()
    save_file(tensors, tmp_path / "hub.safetensors")
    loaded = nb03.params_to_variables(load_gpt2_params_from_safetensors(tmp_path / "hub.safetensors", HPARAMS), HPARAMS)
    assert all(np.array_equal(loaded[name], array) for name, array in nb03.params_to_variables(params, HPARAMS).items())


def rewritten(folder, tmp_path, change):
    tensors = load_file(folder / "model.safetensors")
    change(tensors)
    save_file(tensors, tmp_path / "changed.safetensors")
    return tmp_path / "changed.safetensors"


@pytest.mark.parametrize("change, message", [
    (lambda t: t.pop("transformer.h.1.mlp.c_fc.weight"), r"lacks 1 tensors config.json implies, e.g. \['model/h1/mlp/c_fc/w'\]"),
    (lambda t: t.update({"transformer.h.0.attn.c_proj.weight": np.zeros((32, 31), np.float32)}),
     r"transformer.h.0.attn.c_proj.weight in .* is float32 \[32, 31\]; config.json implies float32 \[32, 32\]"),
    (lambda t: t.update({"transformer.wte.weight": t["transformer.wte.weight"].astype(np.float16)}),
     r"is float16 \[97, 32\]; config.json implies float32"),
    (lambda t: t.update({"transformer.h.2.ln_1.weight": np.ones(32, np.float32)}), r"which config.json's sizes do not imply"),
    (lambda t: t.update({"transformer.h.0.attn.rotary": np.ones(3, np.float32)}), r"is not a tensor of a Hugging Face GPT-2"),
    (lambda t: t.update({"h.0.ln_1.weight": t["transformer.h.0.ln_1.weight"]}), r"holds model/h0/ln_1/g twice"),
    (lambda t: t.update({"lm_head.weight": np.zeros((97, 32), np.float32)}), r"lm_head.weight differs from wte.weight"),
])
def test_a_file_that_does_not_fit_is_refused_naming_the_tensor(saved, tmp_path, change, message):
    _, _, folder = saved
    with pytest.raises(CheckpointError, match=message):
        load_gpt2_params_from_safetensors(rewritten(folder, tmp_path, change), HPARAMS)


def test_a_damaged_file_is_refused_naming_it(saved, tmp_path):
    _, _, folder = saved
    damaged = tmp_path / "model.safetensors"
    damaged.write_bytes((folder / "model.safetensors").read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=f"{damaged} is damaged or not a safetensors file"):
        load_gpt2_params_from_safetensors(damaged, HPARAMS)


def test_names_map_one_to_one_and_a_config_without_sizes_is_refused():
    assert openai_name_of_hf("transformer.h.11.mlp.c_proj.bias") == "model/h11/mlp/c_proj/b"
    assert openai_name_of_hf("ln_f.weight") == "model/ln_f/g"
    assert openai_name_of_hf("h.3.attn.masked_bias") is None
    assert openai_name_of_hf("h.3.attn.bias") is None
    assert openai_name_of_hf("h.3.attn.c_attn.bias") == "model/h3/attn/c_attn/b"  # not the mask buffer
    with pytest.raises(CheckpointError, match="config.json lacks 'n_embd'"):
        hparams_from_hf_config({"vocab_size": 10, "n_positions": 8, "n_head": 2, "n_layer": 1})


def test_every_name_of_the_one_table_maps_to_openais():
    """hub.py's maps are derived from gpt2_support.weight_names: each Hub name there, with or without
    "transformer.", is read as the table's OpenAI name."""
    rows = weight_names(3)
    assert len(rows) == 4 + 3 * 12
    for _, openai, hub, _ in rows:
        assert openai_name_of_hf(hub) == openai and openai_name_of_hf("transformer." + hub) == openai, hub


def test_config_json_from_hparams_and_back(saved):
    """hf_config_from_hparams writes what transformers writes for the same sizes (its config.json here),
    and hparams_from_hf_config reads the same hparams back."""
    _, _, folder = saved
    written = json.loads((folder / "config.json").read_text())
    config = hf_config_from_hparams(HPARAMS)
    assert hparams_from_hf_config(config) == HPARAMS
    assert {key: written[key] for key in config if key != "n_ctx"} == {key: value for key, value in config.items()
                                                                       if key != "n_ctx"}
