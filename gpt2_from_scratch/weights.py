# Generated from 03_pretrained_weights.ipynb; edit the notebook, then regenerate: python tools/export_package.py
"""The definitions of 03_pretrained_weights.ipynb, for later notebooks, the tests and the benchmarks.

Each part below is one exported cell of the notebook, headed by the cell's number (counted from 0,
markdown cells included) and its section.
"""


__all__ = [
    "config_from_hparams", "hparams_from_config", "checkpoint_array", "load_weights_into_gpt",
    "gpt_for_checkpoint", "hf_tensors", "to_hugging_face", "gpt_to_openai_params", "random_gpt2_params",
    "TENSORFLOW_MISSING_EXIT_CODE", "write_variables_with_tensorflow", "tensorflow_child_environment",
    "run_tensorflow_writer", "params_to_variables", "write_gpt2_checkpoint", "check_read_back", "publish_folder",
    "write_gpt2_safetensors", "write_gpt2_weights", "logit_lens",
]


# 03_pretrained_weights.ipynb, cell 5 (section "Setup")
import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

# The support package: what OpenAI and the Hub published, the two readers, the checkpoint's layout, the manifest
from gpt2_support.catalogue import FILES, HF_FILES, HPARAMS_KEYS, TOKENIZER_DIR, model_folder, weights_source
from gpt2_support.tf_checkpoint import load_gpt2_params_from_tf_ckpt
from gpt2_support.hub import hparams_from_hf_config, load_gpt2_params_from_safetensors
from gpt2_support.layout import openai_variable_shapes, params_location, variables_to_params
from gpt2_support.verify import record_written_files
from gpt2_from_scratch.architecture import GPTConfig, GPTModel  # 01, sections 4.5 and 5: the model


# 03_pretrained_weights.ipynb, cell 27 (section "4. A model with the checkpoint's shape")
def config_from_hparams(hparams, drop_rate=0.0):
    """The GPTConfig of an OpenAI checkpoint, from its hparams.json."""
    return GPTConfig(vocab_size=hparams["n_vocab"], context_length=hparams["n_ctx"], emb_dim=hparams["n_embd"],
                     n_heads=hparams["n_head"], n_layers=hparams["n_layer"], drop_rate=drop_rate,
                     qkv_bias=True, tie_weights=True)


def hparams_from_config(cfg):
    """hparams.json for a GPTConfig (the inverse of config_from_hparams)."""
    return {"n_vocab": cfg.vocab_size, "n_ctx": cfg.context_length, "n_embd": cfg.emb_dim,
            "n_head": cfg.n_heads, "n_layer": cfg.n_layers}


# 03_pretrained_weights.ipynb, cell 33 (section "5. Copying the weights into the model")
from gpt2_support.weight_names import weight_names


def checkpoint_array(params, name):
    """The array of checkpoint variable `name` ("model/h3/attn/c_attn/w") in nested params; a ValueError
    naming it if params lacks it."""
    try:
        node, keys = params_location(params, name)  # the reader's map from names to the nesting
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
    parameters = dict(model.named_parameters())  # the tied output head is listed once, as tok_emb.weight
    planned = {}  # model parameter name -> (array, transpose, checkpoint name)
    for model_name, checkpoint_name, _, transpose in weight_names(len(model.blocks)):  # the one table
        if model_name not in parameters:
            raise ValueError(f"the model has no parameter {model_name} for {checkpoint_name}")
        if model_name in planned:
            raise ValueError(f"{checkpoint_name} would overwrite {planned[model_name][2]}")
        array = checkpoint_array(params, checkpoint_name)
        if tuple(array.shape[::-1] if transpose else array.shape) != tuple(parameters[model_name].shape):
            raise ValueError(f"{checkpoint_name}: shape {list(array.shape)}{' transposed' if transpose else ''} "
                             f"does not fit {model_name} {list(parameters[model_name].shape)}")
        planned[model_name] = (array, transpose, checkpoint_name)
    missing = [name for name in parameters if name not in planned]
    if missing:
        raise ValueError(f"no checkpoint tensor was assigned to {missing}")
    with torch.no_grad():  # everything is checked: now copy
        for name, (array, transpose, _) in planned.items():
            tensor = torch.from_numpy(np.asarray(array))
            parameters[name].copy_(tensor.T if transpose else tensor)
    return {name: checkpoint_name.removeprefix("model/") for name, (_, _, checkpoint_name) in planned.items()}


# 03_pretrained_weights.ipynb, cell 35 (section "5. Copying the weights into the model")
def gpt_for_checkpoint(hparams, device="cpu"):
    """A GPTModel shaped for an OpenAI checkpoint, with uninitialised weights: load them next."""
    with torch.device("meta"):
        model = GPTModel(config_from_hparams(hparams))
    model.to_empty(device=device)  # memory that is never written stays virtual: it costs no RAM
    model.out_head.weight = model.tok_emb.weight  # to_empty gave the head a tensor of its own: tie it again
    return model


# 03_pretrained_weights.ipynb, cell 42 (section "The Hub's names")
def hf_tensors(params, hparams):
    """OpenAI's nested params under the Hub's names, as its model.safetensors stores them:
    {"wte.weight": [n_vocab, n_embd], "h.0.attn.c_attn.weight": [n_embd, 3 * n_embd], ...}."""
    return {hub_name: checkpoint_array(params, openai_name)
            for _, openai_name, hub_name, _ in weight_names(hparams["n_layer"])}


# 03_pretrained_weights.ipynb, cell 47 (section "6. The same logits as Hugging Face's GPT-2")
from gpt2_support.hub import hf_config_from_hparams  # hparams -> the Hub's config.json, in one place


def to_hugging_face(params, hparams):
    """A transformers GPT2LMHeadModel holding OpenAI's weights (its parameters are named like the checkpoint)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    # The Hub's config.json for these sizes (section 9 writes the same one), with dropout off for inference
    config = GPT2Config.from_dict(hf_config_from_hparams(hparams) | {"resid_pdrop": 0.0, "embd_pdrop": 0.0,
                                                                     "attn_pdrop": 0.0})
    state = {f"transformer.{name}": np.asarray(array) for name, array in hf_tensors(params, hparams).items()}
    hf_model = GPT2LMHeadModel(config).eval()
    missing, unexpected = hf_model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)  # lm_head is tied to wte
    return hf_model


# 03_pretrained_weights.ipynb, cell 60 (section "9. Exporting a model in OpenAI's format, or the Hub's")
def gpt_to_openai_params(model):
    """A GPTModel's weights as OpenAI's nested params (the inverse of load_weights_into_gpt)."""
    parameters = dict(model.named_parameters())
    variables = {}
    for model_name, checkpoint_name, _, transpose in weight_names(len(model.blocks)):  # section 5's table
        tensor = parameters[model_name].detach().float().cpu()
        variables[checkpoint_name] = (tensor.T if transpose else tensor).contiguous().numpy()
    return variables_to_params(variables, {"n_layer": len(model.blocks)})  # nested as the reader nests them


def random_gpt2_params(hparams, seed=0):
    """A freshly initialised GPTModel for these hparams, as OpenAI-layout params: a stand-in checkpoint
    for the smoke profile and the tests. The global random state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return gpt_to_openai_params(GPTModel(config_from_hparams(hparams)))


# 03_pretrained_weights.ipynb, cell 62 (section "9. Exporting a model in OpenAI's format, or the Hub's")
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


# 03_pretrained_weights.ipynb, cell 64 (section "9. Exporting a model in OpenAI's format, or the Hub's")
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


# 03_pretrained_weights.ipynb, cell 66 (section "9. Exporting a model in OpenAI's format, or the Hub's")
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


# 03_pretrained_weights.ipynb, cell 68 (section "9. Exporting a model in OpenAI's format, or the Hub's")
def write_gpt2_checkpoint(params, hparams, model_dir, tokenizer_dir=None):
    """Write params in OpenAI's layout: checkpoint, hparams.json, model.ckpt.{data-00000-of-00001,index,meta},
    encoder.json, vocab.bpe, plus the downloader's manifest, so download_and_load_gpt2 finds the folder
    complete and downloads nothing. Returns model_dir.

    tokenizer_dir: where encoder.json and vocab.bpe are; by default the repository's data/gpt2-tokenizer/.
    """
    model_dir = Path(model_dir)
    tokenizer_dir = Path(tokenizer_dir or TOKENIZER_DIR)  # the repository's data/gpt2-tokenizer/, from anywhere
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
    """Record the written files in the downloader's manifest (as the writer's, not downloads), then give
    tmp_dir the name model_dir; if that rename fails, an earlier folder of that name is put back."""
    record_written_files(tmp_dir, names)
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


# 03_pretrained_weights.ipynb, cell 70 (section "9. Exporting a model in OpenAI's format, or the Hub's")
def write_gpt2_safetensors(params, hparams, model_dir):
    """Write params as the Hugging Face Hub publishes GPT-2: config.json and model.safetensors (the Hub's
    names, float32), plus the downloader's manifest, so download_and_load_gpt2(..., source="huggingface")
    finds the folder complete. Needs no TensorFlow. Returns model_dir."""
    from safetensors.numpy import save_file

    model_dir = Path(model_dir)
    variables = params_to_variables(params, hparams)  # checks every shape against hparams
    tensors = {name: np.ascontiguousarray(array, dtype=np.float32) for name, array in hf_tensors(params, hparams).items()}
    config = hf_config_from_hparams(hparams)
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


# 03_pretrained_weights.ipynb, cell 80 (section "11. The logit lens: a prediction after every block")
@torch.inference_mode()
def logit_lens(model, token_ids):
    """Next-token logits read out of the residual stream through the final layer norm and the output head,
    before the first block (the embeddings) and after each block: (n_layers + 1, batch, n_tokens, vocab_size).
    The last readout is the model's own output. Call it on a model in eval mode (in training mode the blocks'
    dropout would apply)."""
    positions = torch.arange(token_ids.shape[1], device=token_ids.device)
    hidden = model.tok_emb(token_ids) + model.pos_emb(positions)
    readouts = [model.out_head(model.final_norm(hidden))]
    for block in model.blocks:
        hidden = block(hidden)
        readouts.append(model.out_head(model.final_norm(hidden)))
    return torch.stack(readouts)
