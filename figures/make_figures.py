"""Draw the series' diagrams: every `figures/*.png` that a notebook shows comes from this script.

From the repository's top folder:

    python -m figures.make_figures                  # redraw them all into figures/
    python -m figures.make_figures 01_causal_mask   # redraw some, by name
    python -m figures.make_figures --out DIR        # draw into another folder (the tests compare)

The diagrams are drawn with matplotlib (figures/drawing.py), from the series' own code and data wherever
there are numbers: token ids come from `data/` through 01's `BytePairTokenizer`, attention weights from
01's classes on 01's example vectors, 02's schedule from `learning_rate_at` and its loss curves from
`recorded_runs/`, the keys of a checkpoint from a short run of `train_model_improved`, the decoding panels from
02's filters, the checkpoint's names from the table of weight names and its shapes from
`gpt2_support.layout.openai_variable_shapes`, 04's counts from its data, splits and `make_classifier`, the
collated batches from 05's `custom_collate_fn` and the ROUGE-L table from its `longest_common_subsequence`. Each notebook's figures are drawn in their own module: figures/architecture.py
(01), pretraining.py (02), weights.py (03), classify.py (04), instruct.py (05).

Each PNG records the digest of what it shows (figures/drawing.py, `save`); tests/test_figures.py redraws
every figure and compares.
"""

import argparse
import sys
from pathlib import Path

if not __package__:  # run as a file: then figures/ is not importable as the package it is
    sys.exit("run this from the repository's top folder as `python -m figures.make_figures` "
             "(with the names of the figures to draw, or --out DIR)")

from figures import architecture, classify, instruct, pretraining, weights  # noqa: E402

FIGURES_DIR = Path(__file__).resolve().parent

FIGURES = {
    "01_text_to_embeddings": architecture.fig_01_text_to_embeddings,
    "01_sliding_windows": architecture.fig_01_sliding_windows,
    "01_attention_weights": architecture.fig_01_attention_weights,
    "01_qkv": architecture.fig_01_qkv,
    "01_causal_mask": architecture.fig_01_causal_mask,
    "01_heads": architecture.fig_01_heads,
    "01_transformer_block": architecture.fig_01_transformer_block,
    "01_gpt_model": architecture.fig_01_gpt_model,
    "02_training_loop": pretraining.fig_02_training_loop,
    "02_train_val_gap": pretraining.fig_02_train_val_gap,
    "02_lr_schedule": pretraining.fig_02_lr_schedule,
    "02_gradient_accumulation": pretraining.fig_02_gradient_accumulation,
    "02_decoding": pretraining.fig_02_decoding,
    "02_kv_cache": pretraining.fig_02_kv_cache,
    "02_checkpoint_contents": pretraining.fig_02_checkpoint_contents,
    "03_openai_files": weights.fig_03_openai_files,
    "03_loading_flow": weights.fig_03_loading_flow,
    "03_safetensors_layout": weights.fig_03_safetensors_layout,
    "03_weight_tying": weights.fig_03_weight_tying,
    "03_checkpoint_mapping": weights.fig_03_checkpoint_mapping,
    "04_data_pipeline": classify.fig_04_data_pipeline,
    "04_padded_batch": classify.fig_04_padded_batch,
    "04_classification_head": classify.fig_04_classification_head,
    "04_trainable_parameters": classify.fig_04_trainable_parameters,
    "04_confusion_metrics": classify.fig_04_confusion_metrics,
    "04_lora_update": classify.fig_04_lora_update,
    "05_alpaca_prompt": instruct.fig_05_alpaca_prompt,
    "05_collate_batch": instruct.fig_05_collate_batch,
    "05_prompt_mask": instruct.fig_05_prompt_mask,
    "05_rouge_lcs": instruct.fig_05_rouge_lcs,
    "05_evaluation": instruct.fig_05_evaluation,
}


def draw(names=None, out_dir=FIGURES_DIR):
    """Draw the named figures (all by default) into out_dir as NAME.png; return their paths."""
    names = list(FIGURES) if not names else names
    unknown = [name for name in names if name not in FIGURES]
    if unknown:
        raise ValueError(f"no figure named {', '.join(unknown)}; the figures are: {', '.join(FIGURES)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        path = out_dir / f"{name}.png"
        FIGURES[name](path)
        paths.append(path)
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m figures.make_figures", description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="figures to draw (default: all)")
    parser.add_argument("--out", default=FIGURES_DIR, help="folder to write into (default: figures/)")
    arguments = parser.parse_args(argv)
    for written in draw(arguments.names, arguments.out):
        print(written)


if __name__ == "__main__":
    main()
