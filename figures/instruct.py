"""The figures of 05_finetune_instruct.ipynb: the Alpaca prompt of one training example, and
custom_collate_fn on a worked batch."""

import json
import textwrap

from matplotlib.patches import Rectangle

from gpt2_from_scratch.instruct import RESPONSE_MARKER, custom_collate_fn, format_input

from figures.drawing import COLORS, REPO_ROOT, box, canvas, label, notebook_value, save


def fig_05_alpaca_prompt(path):
    entry = json.loads((REPO_ROOT / "data" / "instruction-data.json").read_text(encoding="utf-8"))[1]
    prompt = format_input(entry)
    preamble, rest = prompt.split("\n\n", 1)
    instruction_part, input_part = rest.split("\n\n", 1) if entry["input"] else (rest, "")
    pieces = [
        (preamble, "white", "preamble: the same for every example"),
        (instruction_part, COLORS["token"], "### Instruction: and entry['instruction']"),
        (input_part, "#deebf7", "### Input: and entry['input'] (only when there is one)"),
        (RESPONSE_MARKER.strip("\n"), COLORS["layer"], "RESPONSE_MARKER: the prompt ends here"),
        (entry["output"], COLORS["target"], "entry['output']: the response the model learns to write"),
        ("<|endoftext|>", COLORS["target"], "appended by custom_collate_fn: the model learns to stop"),
    ]
    fig, ax = canvas(29, 11.4)
    label(ax, 0.3, 10.9, "One training example (instruction-data.json, entry 1) in an Alpaca-style template", ha="left",
          size=10.5)
    y = 10.3
    for index, (text, color, note) in enumerate(pieces):
        lines = [line for paragraph in text.split("\n") for line in textwrap.wrap(paragraph, 70) or [""]]
        h = 0.55 * len(lines) + 0.35
        box(ax, 0.4, y - h, 15.5, h, "", color=color, rounded=False)
        for k, line in enumerate(lines):
            label(ax, 0.6, y - 0.45 - k * 0.55, line, ha="left", size=8.5, family="monospace")
        label(ax, 16.3, y - h / 2, note, ha="left", size=8.5, color=COLORS["muted"])
        y -= h + 0.25
        if index == 3:  # the response marker: the prompt ends here
            prompt_bottom = y + 0.25
    ax.plot([24.6, 24.8, 24.8, 24.6], [10.3, 10.3, prompt_bottom, prompt_bottom], color=COLORS["edge"], lw=1.2)
    label(ax, 25.0, (10.3 + prompt_bottom) / 2, "prompt:\nformat_input(entry)\n+ RESPONSE_MARKER", ha="left",
          size=8, rotation=0)
    label(ax, 0.4, 0.4, "At inference the model gets the prompt only and writes the rest; with mask_prompt=True the "
          "loss counts only the red part.", ha="left", size=9.5)
    save(fig, path)


def fig_05_collate_batch(path):
    worked_batch = notebook_value("05_finetune_instruct.ipynb", "worked_batch")
    fig, ax = canvas(23.6, 13.0)
    label(ax, 0.3, 12.5, "custom_collate_fn on 05's worked batch: three examples of 5, 2 and 3 tokens "
          "(prompt lengths 3, 1 and 2)", ha="left", size=10.5)
    cell = 1.0

    def row(x, y, values, example, prompt_length, is_target, masked_prompt):
        n_real = len(example)
        for k, value in enumerate(values):
            position = k + 1 if is_target else k  # which token of the padded example this cell holds
            if value == -100:
                in_prompt = masked_prompt and position < prompt_length and position <= n_real - 1
                color, text = COLORS["masked"], "-100"
                if in_prompt:  # a prompt target masked by mask_prompt: grey, hatched
                    ax.add_patch(Rectangle((x + k * cell * 1.3, y), cell * 1.3 - 0.08, 0.7, facecolor=color,
                                           edgecolor=COLORS["muted"], hatch="///", lw=0))
                    label(ax, x + k * cell * 1.3 + 0.6, y + 0.35, text, size=7.5, color=COLORS["text"],
                          bbox=dict(facecolor=color, edgecolor="none", pad=0.5))
                    continue
            elif position < n_real:
                color = COLORS["target"] if is_target and position >= prompt_length else COLORS["token"]
                text = str(value)
            elif position == n_real and is_target:
                color, text = "#cb181d", "50256"
            else:
                color, text = COLORS["masked"], "50256"
            ax.add_patch(Rectangle((x + k * cell * 1.3, y), cell * 1.3 - 0.08, 0.7, facecolor=color,
                                   edgecolor="white"))
            label(ax, x + k * cell * 1.3 + 0.6, y + 0.35, text, size=7.5,
                  color="white" if color == "#cb181d" else COLORS["text"])

    for column, (title, options) in enumerate((("padding only", {}), ("mask_prompt=True", {"mask_prompt": True}))):
        inputs, targets = custom_collate_fn(worked_batch, **options)
        x = 2.4 + column * 12.6
        label(ax, x + 3.0, 11.9, title, size=10, weight="bold")
        label(ax, x - 0.2, 11.3, "inputs", size=9, ha="left")
        label(ax, x - 0.2, 7.6, "targets", size=9, ha="left")
        for i, (example, prompt_length) in enumerate(worked_batch):
            row(x, 10.3 - i * 0.9, inputs[i].tolist(), example, prompt_length, False, options.get("mask_prompt"))
            row(x, 6.6 - i * 0.9, targets[i].tolist(), example, prompt_length, True, options.get("mask_prompt"))
    legend = [(COLORS["token"], "a token of the example; as a target, a prompt token (counted unless mask_prompt)"),
              (COLORS["target"], "a response token the loss counts"),
              ("#cb181d", "the appended <|endoftext|> (50256): a target, so the model learns to stop"),
              (COLORS["masked"], "padding (50256): as an input harmless, as a target -100, ignored by the loss"),
              (None, "a prompt target set to -100 by mask_prompt=True")]
    for k, (color, text) in enumerate(legend):
        hatch = "///" if color is None else None
        ax.add_patch(Rectangle((0.6, 3.0 - k * 0.55), 0.8, 0.4, facecolor=color or COLORS["masked"],
                               edgecolor=COLORS["edge"], lw=0.5, hatch=hatch))
        label(ax, 1.6, 3.2 - k * 0.55, text, ha="left", size=8.5)
    label(ax, 16.0, 2.4, "each example is padded to the longest + 1 tokens;\ninputs drop the last token, targets "
          "the first,\nso both are as long as the longest example;\ncross_entropy skips every target equal to -100", ha="left", size=8.5, color=COLORS["muted"])
    save(fig, path)

