# Generated from 03_pretrained_weights.ipynb; edit the notebook, then regenerate: python tools/export_package.py
"""The definitions of 03_pretrained_weights.ipynb, for later notebooks, the tests and the benchmarks."""


# 03_pretrained_weights.ipynb: Setup
import inspect
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from gpt_download import (FILES, checkpoint_variables, download_and_load_gpt2, load_gpt2_params_from_tf_ckpt,
                          openai_variable_shapes, params_location, sha256_of, write_manifest, HPARAMS_KEYS,
                          WRITER_SOURCE)
from gpt_download import (HF_ENDPOINT, HF_FILES, HF_TO_OPENAI, HF_TOP_LEVEL, hf_file_url, hparams_from_hf_config,
                          load_gpt2_params_from_safetensors, model_folder, safetensors_variables,
                          weights_source)  # the Hugging Face Hub's copy of the same weights
from gpt2_from_scratch.architecture import load_gpt2_tokenizer, create_dataloader  # 01, section 1
from gpt2_from_scratch.architecture import MultiHeadAttention  # 01, section 3.6: attention step by step
from gpt2_from_scratch.architecture import GPTConfig, GPTModel  # 01, sections 4.5 and 5: the model
from gpt2_from_scratch.architecture import count_parameters, parameter_count  # 01, section 5.1
from gpt2_from_scratch.pretraining import text_to_token_ids, token_ids_to_text  # 02, section 1
from gpt2_from_scratch.pretraining import calc_loss_loader  # 02, section 4: the mean loss over a data set
from gpt2_from_scratch.pretraining import generate  # 02, section 8: decoding with a key/value cache


# 03_pretrained_weights.ipynb: 4. A model with the checkpoint's shape
def config_from_hparams(hparams, drop_rate=0.0):
    """The GPTConfig of an OpenAI checkpoint, from its hparams.json."""
    return GPTConfig(vocab_size=hparams["n_vocab"], context_length=hparams["n_ctx"], emb_dim=hparams["n_embd"],
                     n_heads=hparams["n_head"], n_layers=hparams["n_layer"], drop_rate=drop_rate,
                     qkv_bias=True, tie_weights=True)


# 03_pretrained_weights.ipynb: 5. Copying the weights into the model
def checkpoint_array(params, name):
    """The array of checkpoint variable `name` ("model/h3/attn/c_attn/w") in nested params; a ValueError
    naming it if params lacks it."""
    try:
        node, keys = params_location(params, name)  # gpt_download's map from names to the nesting
    except (KeyError, IndexError, ValueError):
        node, keys = None, [None]
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            raise ValueError(f"{name} is missing from params: were they read from a whole checkpoint?")
        node = node[key]
    return node


def load_weights_into_gpt(model, params):
    """Copy OpenAI's weights (as load_gpt2_params_from_tf_ckpt returns them) into a GPTModel.

    Returns {model parameter name: checkpoint tensor name}. Every tensor is found and checked first: a
    missing tensor, a shape that does not fit, or a parameter assigned twice or not at all raises a
    ValueError naming it, and the model is left unchanged. Only then are the tensors copied.
    """
    if not model.cfg.tie_weights:
        raise ValueError("GPT-2's output head is its token embedding: build the model with tie_weights=True")
    if len(params.get("blocks", [])) != len(model.blocks):
        raise ValueError(f"the checkpoint has {len(params.get('blocks', []))} blocks, the model {len(model.blocks)}")
    parameter_names = {id(parameter): name for name, parameter in model.named_parameters()}
    planned = {}  # model parameter name -> (parameter, array, transpose, checkpoint name)

    def assign(parameter, checkpoint_name, transpose=False):
        array = checkpoint_array(params, f"model/{checkpoint_name}")
        name = parameter_names[id(parameter)]
        if tuple(array.shape[::-1] if transpose else array.shape) != tuple(parameter.shape):
            raise ValueError(f"{checkpoint_name}: shape {list(array.shape)}{' transposed' if transpose else ''} "
                             f"does not fit {name} {list(parameter.shape)}")
        if name in planned:
            raise ValueError(f"{checkpoint_name} would overwrite {planned[name][3]}")
        planned[name] = (parameter, array, transpose, checkpoint_name)

    assign(model.tok_emb.weight, "wte")  # also out_head.weight: one shared tensor
    assign(model.pos_emb.weight, "wpe")
    for index, block in enumerate(model.blocks):
        prefix = f"h{index}"
        assign(block.norm1.weight, f"{prefix}/ln_1/g")
        assign(block.norm1.bias, f"{prefix}/ln_1/b")
        # c_attn's last axis is [queries | keys | values], the order in which CausalSelfAttention splits
        # the output of qkv, so the fused matrix transfers whole. (nn.Linear stores [out, in]: transpose.)
        assign(block.attn.qkv.weight, f"{prefix}/attn/c_attn/w", transpose=True)
        assign(block.attn.qkv.bias, f"{prefix}/attn/c_attn/b")
        assign(block.attn.out_proj.weight, f"{prefix}/attn/c_proj/w", transpose=True)
        assign(block.attn.out_proj.bias, f"{prefix}/attn/c_proj/b")
        assign(block.norm2.weight, f"{prefix}/ln_2/g")
        assign(block.norm2.bias, f"{prefix}/ln_2/b")
        assign(block.ff.expand.weight, f"{prefix}/mlp/c_fc/w", transpose=True)
        assign(block.ff.expand.bias, f"{prefix}/mlp/c_fc/b")
        assign(block.ff.project.weight, f"{prefix}/mlp/c_proj/w", transpose=True)
        assign(block.ff.project.bias, f"{prefix}/mlp/c_proj/b")
    assign(model.final_norm.weight, "ln_f/g")
    assign(model.final_norm.bias, "ln_f/b")
    missing = [name for name in parameter_names.values() if name not in planned]
    if missing:
        raise ValueError(f"no checkpoint tensor was assigned to {missing}")
    with torch.no_grad():  # everything is checked: now copy
        for parameter, array, transpose, _ in planned.values():
            tensor = torch.from_numpy(np.asarray(array))
            parameter.copy_(tensor.T if transpose else tensor)
    return {name: checkpoint_name for name, (_, _, _, checkpoint_name) in planned.items()}


# 03_pretrained_weights.ipynb: 5. Copying the weights into the model
def gpt_for_checkpoint(hparams, device="cpu"):
    """A GPTModel shaped for an OpenAI checkpoint, with uninitialised weights: load them next."""
    with torch.device("meta"):
        model = GPTModel(config_from_hparams(hparams))
    model.to_empty(device=device)  # memory that is never written stays virtual: it costs no RAM
    model.out_head.weight = model.tok_emb.weight  # to_empty gave the head a tensor of its own: tie it again
    return model


# 03_pretrained_weights.ipynb: The Hub's names
def hf_tensors(params, hparams):
    """OpenAI's nested params under the Hub's names, as its model.safetensors stores them:
    {"wte.weight": [n_vocab, n_embd], "h.0.attn.c_attn.weight": [n_embd, 3 * n_embd], ...}."""
    tensors = {hub_name: checkpoint_array(params, openai_name) for hub_name, openai_name in HF_TOP_LEVEL.items()}
    for index in range(hparams["n_layer"]):
        for hub_name, openai_name in HF_TO_OPENAI.items():
            tensors[f"h.{index}.{hub_name}"] = checkpoint_array(params, f"model/h{index}/{openai_name}")
    return tensors


# 03_pretrained_weights.ipynb: 6. The same logits as Hugging Face's GPT-2
def to_hugging_face(params, hparams):
    """A transformers GPT2LMHeadModel holding OpenAI's weights (its parameters are named like the checkpoint)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=hparams["n_vocab"], n_positions=hparams["n_ctx"], n_embd=hparams["n_embd"],
                        n_layer=hparams["n_layer"], n_head=hparams["n_head"], activation_function="gelu_new",
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5)
    state = {f"transformer.{name}": np.asarray(array) for name, array in hf_tensors(params, hparams).items()}
    hf_model = GPT2LMHeadModel(config).eval()
    missing, unexpected = hf_model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)  # lm_head is tied to wte
    return hf_model


# 03_pretrained_weights.ipynb: 9. Exporting a model in OpenAI's format, or the Hub's
def gpt_to_openai_params(model):
    """A GPTModel's weights as OpenAI's nested params (the inverse of load_weights_into_gpt)."""
    def array(parameter, transpose=False):
        tensor = parameter.detach().float().cpu()
        return (tensor.T if transpose else tensor).contiguous().numpy()

    def linear(layer):
        return {"w": array(layer.weight, transpose=True), "b": array(layer.bias)}

    def norm(layer):
        return {"g": array(layer.weight), "b": array(layer.bias)}

    blocks = [{"ln_1": norm(block.norm1), "attn": {"c_attn": linear(block.attn.qkv), "c_proj": linear(block.attn.out_proj)},
               "ln_2": norm(block.norm2), "mlp": {"c_fc": linear(block.ff.expand), "c_proj": linear(block.ff.project)}}
              for block in model.blocks]
    return {"wte": array(model.tok_emb.weight), "wpe": array(model.pos_emb.weight), "blocks": blocks,
            **norm(model.final_norm)}


def hparams_from_config(cfg):
    """hparams.json for a GPTConfig (the inverse of config_from_hparams)."""
    return {"n_vocab": cfg.vocab_size, "n_ctx": cfg.context_length, "n_embd": cfg.emb_dim,
            "n_head": cfg.n_heads, "n_layer": cfg.n_layers}


def random_gpt2_params(hparams, seed=0):
    """A freshly initialised GPTModel for these hparams, as OpenAI-layout params: a stand-in checkpoint
    for the smoke profile and the tests. The global random state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return gpt_to_openai_params(GPTModel(config_from_hparams(hparams)))


# 03_pretrained_weights.ipynb: 9. Exporting a model in OpenAI's format, or the Hub's
TENSORFLOW_MISSING_EXIT_CODE = 3


def write_variables_with_tensorflow(folder):
    """Run in a child process: write folder/variables.npz as folder/model.ckpt.{data-*,index,meta},
    with tf.compat.v1.train.Saver, as OpenAI did."""
    import sys
    import traceback

    import numpy as np

    try:
        import tensorflow as tf
    except ImportError:
        traceback.print_exc()  # a broken install says why here; the parent passes it on
        sys.exit(3)  # TENSORFLOW_MISSING_EXIT_CODE: this function runs alone, without the module's constants
    with np.load(f"{folder}/variables.npz") as stored:
        variables = {name: stored[name] for name in stored.files}
    graph = tf.Graph()
    with graph.as_default():
        tf_variables, assigns = [], []
        for name, array in variables.items():
            variable = tf.compat.v1.get_variable(name, shape=array.shape, dtype=tf.float32,
                                                 initializer=tf.compat.v1.zeros_initializer())
            # Filled through a placeholder: an initializer constant would copy every weight into the
            # graph (model.ckpt.meta) as well.
            value = tf.compat.v1.placeholder(tf.float32, shape=array.shape)
            tf_variables.append(variable)
            assigns.append((variable.assign(value), value, array))
        saver = tf.compat.v1.train.Saver(tf_variables, save_relative_paths=True)
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            session.run([assign for assign, _, _ in assigns], feed_dict={value: array for _, value, array in assigns})
            saver.save(session, f"{folder}/model.ckpt", write_state=False)


# 03_pretrained_weights.ipynb: 9. Exporting a model in OpenAI's format, or the Hub's
def tensorflow_child_environment():
    """The environment of a child process that runs TensorFlow: quiet, and kept off the GPU (it needs
    none here, and would otherwise claim the GPU's memory)."""
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")


def run_tensorflow_writer(folder):
    """Run write_variables_with_tensorflow(folder) in a fresh Python process, and wait for it."""
    script = inspect.getsource(write_variables_with_tensorflow) + "\nwrite_variables_with_tensorflow(sys.argv[1])\n"
    result = subprocess.run([sys.executable, "-c", "import sys\n" + script, str(folder)],
                            env=tensorflow_child_environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace")
    if result.returncode == TENSORFLOW_MISSING_EXIT_CODE:
        raise ImportError("Writing a checkpoint in OpenAI's TensorFlow format needs TensorFlow, and "
                          f"{sys.executable} could not import it: pip install tensorflow (or pip install -r "
                          "requirements.txt). Reading one does not need it. The import failed with:\n"
                          + result.stdout[-3000:])
    if result.returncode != 0:
        raise RuntimeError(f"TensorFlow failed to write a checkpoint into {folder} (exit code "
                           f"{result.returncode}); its output ends:\n{result.stdout[-3000:]}")


# 03_pretrained_weights.ipynb: 9. Exporting a model in OpenAI's format, or the Hub's
def params_to_variables(params, hparams):
    """OpenAI's nested params -> {checkpoint variable name: float32 array} (what the reader nests)."""
    variables = {}
    for name, shape in openai_variable_shapes(hparams).items():
        array = np.asarray(checkpoint_array(params, name), dtype=np.float32)  # section 5
        if len(shape) == 3 and array.shape == shape[1:]:
            array = array[None]  # restore the leading axis of a [1, in, out] weight
        if array.shape != shape:
            raise ValueError(f"{name} has shape {array.shape}; these hparams need {shape}")
        variables[name] = array
    return variables


# 03_pretrained_weights.ipynb: 9. Exporting a model in OpenAI's format, or the Hub's
def write_gpt2_checkpoint(params, hparams, model_dir, tokenizer_dir=None):
    """Write params in OpenAI's layout: checkpoint, hparams.json, model.ckpt.{data-00000-of-00001,index,meta},
    encoder.json, vocab.bpe, plus gpt_download's manifest, so download_and_load_gpt2 finds the folder
    complete and downloads nothing. Returns model_dir.

    tokenizer_dir: where encoder.json and vocab.bpe are; by default the repository's data/gpt2-tokenizer/.
    """
    model_dir = Path(model_dir)
    # The repository's tokenizer files, found from gpt_download.py, which sits at the repository's top.
    tokenizer_dir = Path(tokenizer_dir or Path(inspect.getfile(download_and_load_gpt2)).parent / "data/gpt2-tokenizer")
    missing = [name for name in ("encoder.json", "vocab.bpe") if not (tokenizer_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{tokenizer_dir} lacks {', '.join(missing)}: pass tokenizer_dir=<a folder with "
                                "GPT-2's encoder.json and vocab.bpe> (the repository has them in data/gpt2-tokenizer/)")
    variables = params_to_variables(params, hparams)
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=model_dir.name + ".partial-", dir=model_dir.parent))
    try:
        np.savez(tmp_dir / "variables.npz", **variables)
        run_tensorflow_writer(tmp_dir)
        (tmp_dir / "variables.npz").unlink()
        # The `checkpoint` file exactly as OpenAI's (relative paths).
        (tmp_dir / "checkpoint").write_text('model_checkpoint_path: "model.ckpt"\n'
                                            'all_model_checkpoint_paths: "model.ckpt"\n')
        hparams_json = {key: hparams[key] for key in HPARAMS_KEYS}  # in OpenAI's order
        (tmp_dir / "hparams.json").write_text(json.dumps(hparams_json, indent=2) + "\n")  # as OpenAI's, byte for byte
        for name in ("encoder.json", "vocab.bpe"):
            shutil.copyfile(tokenizer_dir / name, tmp_dir / name)
        check_read_back(load_gpt2_params_from_tf_ckpt(tmp_dir / "model.ckpt", hparams), variables, hparams)
        publish_folder(tmp_dir, model_dir, FILES)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return model_dir


def check_read_back(read_back, variables, hparams):
    """Every tensor read back from a written file must equal, bit for bit, the one written."""
    for name, array in params_to_variables(read_back, hparams).items():
        if not np.array_equal(array, variables[name]):
            raise RuntimeError(f"{name} read back differently from what was written")


def publish_folder(tmp_dir, model_dir, names):
    """Record the written files in gpt_download's manifest (as the writer's, not downloads), then give
    tmp_dir the name model_dir; if that rename fails, an earlier folder of that name is put back."""
    write_manifest(tmp_dir, {name: {"size": (tmp_dir / name).stat().st_size, "sha256": sha256_of(tmp_dir / name),
                                    "source": WRITER_SOURCE} for name in names})
    if model_dir.exists():
        old = model_dir.with_name(tmp_dir.name + "-old")
        os.replace(model_dir, old)
        try:
            os.replace(tmp_dir, model_dir)
        except OSError:
            os.replace(old, model_dir)  # put the earlier folder back
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp_dir, model_dir)


# 03_pretrained_weights.ipynb: 9. Exporting a model in OpenAI's format, or the Hub's
HF_CONFIG = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "activation_function": "gelu_new",
              "layer_norm_epsilon": 1e-05, "bos_token_id": 50256, "eos_token_id": 50256}  # GPT-2's, as on the Hub


def write_gpt2_safetensors(params, hparams, model_dir):
    """Write params as the Hugging Face Hub publishes GPT-2: config.json and model.safetensors (the Hub's
    names, float32), plus gpt_download's manifest, so download_and_load_gpt2(..., source="huggingface")
    finds the folder complete. Needs no TensorFlow. Returns model_dir."""
    from safetensors.numpy import save_file

    model_dir = Path(model_dir)
    variables = params_to_variables(params, hparams)  # checks every shape against hparams
    tensors = {name: np.ascontiguousarray(array, dtype=np.float32) for name, array in hf_tensors(params, hparams).items()}
    config = HF_CONFIG | {"vocab_size": hparams["n_vocab"], "n_positions": hparams["n_ctx"], "n_ctx": hparams["n_ctx"],
                           "n_embd": hparams["n_embd"], "n_head": hparams["n_head"], "n_layer": hparams["n_layer"]}
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=model_dir.name + ".partial-", dir=model_dir.parent))
    try:
        (tmp_dir / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        save_file(tensors, tmp_dir / "model.safetensors", metadata={"format": "pt"})
        read_back = load_gpt2_params_from_safetensors(tmp_dir / "model.safetensors", hparams_from_hf_config(config))
        check_read_back(read_back, variables, hparams)
        publish_folder(tmp_dir, model_dir, HF_FILES)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return model_dir


def write_gpt2_weights(params, hparams, models_dir, model_size, source=None):
    """Write params where download_and_load_gpt2(model_size, models_dir, source=source) reads them:
    OpenAI's files (write_gpt2_checkpoint) or the Hub's (write_gpt2_safetensors). Returns the folder."""
    model_dir = model_folder(model_size, models_dir, source)
    if weights_source(source) == "huggingface":
        return write_gpt2_safetensors(params, hparams, model_dir)
    return write_gpt2_checkpoint(params, hparams, model_dir)
