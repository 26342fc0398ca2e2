"""The figures of 05_finetune_instruct.ipynb: the Alpaca prompt of one training example, custom_collate_fn on a
worked batch, the prompt masked in the targets of a real test example, the evaluation of a test entry, and
ROUGE-L's longest common subsequence on one of the notebook's examples.

The numbers come from 05's own code: the worked batch and the ROUGE-L examples are read from the notebook's
cells (notebook_value); the split from split_instruction_data, the token ids from InstructionDataset with 01's
tokenizer, the targets from custom_collate_fn, the subsequence lengths from longest_common_subsequence and the
score from rouge_l_f1; the evaluation diagram names the functions it shows by their code objects.
"""

import json
import math
import textwrap

from matplotlib.patches import Rectangle

from gpt2_from_scratch.architecture import load_gpt2_tokenizer
from gpt2_from_scratch.instruct import (JUDGE_MODEL, RESPONSE_MARKER, InstructionDataset, custom_collate_fn,
                                        evaluate_instruction_model, extract_response, format_input,
                                        generate_responses, judge_prompt, longest_common_subsequence,
                                        parse_score, query_ollama, rouge_l_f1, rouge_l_words,
                                        split_instruction_data)
from gpt2_from_scratch.pretraining import calc_loss_loader, generate_batch

from figures.drawing import COLORS, REPO_ROOT, arrow, box, canvas, label, notebook_value, save, shown

END_TOKEN_COLOR = "#cb181d"  # the appended <|endoftext|>, a target the loss counts


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


def token_color(position, prompt_length, n_real, is_target):
    """The colour of a cell that holds token `position` of a padded example: the prompt's tokens blue, the
    response's light red, the appended end token (a target only) dark red, padding grey; the same in the
    inputs and in the targets."""
    if position < n_real:
        return COLORS["token"] if position < prompt_length else COLORS["target"]
    if position == n_real and is_target:
        return END_TOKEN_COLOR
    return COLORS["masked"]


def token_cell(ax, x, y, w, h, text, color, hatch=False, size=7.5):
    """One cell of a row of inputs or targets; hatched grey: a prompt target set to -100 by mask_prompt."""
    ax.add_patch(Rectangle((x, y), w, h, facecolor=color, edgecolor=COLORS["muted"] if hatch else "white",
                           hatch="///" if hatch else None, lw=0 if hatch else 1.0))
    label(ax, x + w / 2, y + h / 2, text, size=size, color="white" if color == END_TOKEN_COLOR else COLORS["text"],
          bbox=dict(facecolor=color, edgecolor="none", pad=0.5) if hatch else None)


def fig_05_collate_batch(path):
    worked_batch = notebook_value("05_finetune_instruct.ipynb", "worked_batch")
    fig, ax = canvas(23.6, 13.6)
    label(ax, 0.3, 13.1, "custom_collate_fn on 05's worked batch: three examples of 5, 2 and 3 tokens "
          "(prompt lengths 3, 1 and 2)", ha="left", size=10.5)
    width = 1.3

    def row(x, y, values, example, prompt_length, is_target):
        for k, value in enumerate(values):
            position = k + 1 if is_target else k  # which token of the padded example this cell holds
            masked_prompt = value == -100 and position < min(prompt_length, len(example) + 1)
            color = COLORS["masked"] if value == -100 else token_color(position, prompt_length, len(example),
                                                                        is_target)
            token_cell(ax, x + k * width, y, width - 0.08, 0.7, str(value), color, hatch=masked_prompt)

    for column, (title, options) in enumerate((("padding only", {}), ("mask_prompt=True", {"mask_prompt": True}))):
        inputs, targets = custom_collate_fn(worked_batch, **options)
        x = 2.4 + column * 12.6
        label(ax, x + 3.0, 12.5, title, size=10, weight="bold")
        label(ax, x - 0.2, 11.9, "inputs", size=9, ha="left")
        label(ax, x - 0.2, 8.2, "targets", size=9, ha="left")
        for i, (example, prompt_length) in enumerate(worked_batch):
            row(x, 10.9 - i * 0.9, inputs[i].tolist(), example, prompt_length, False)
            row(x, 7.2 - i * 0.9, targets[i].tolist(), example, prompt_length, True)
        counted = int((targets != -100).sum())
        label(ax, x + 3.2, 4.3, f"the loss counts {counted} of {targets.numel()} targets", size=9)
    legend = [(COLORS["token"], "a prompt token (in the inputs and in the targets alike)"),
              (COLORS["target"], "a response token"),
              (END_TOKEN_COLOR, "the appended <|endoftext|> (50256), a target: the model learns to stop"),
              (COLORS["masked"], "padding: 50256 in the inputs, -100 in the targets (the loss ignores it)"),
              (None, "a prompt target set to -100 by mask_prompt=True (the loss ignores it)")]
    for k, (color, text) in enumerate(legend):
        hatch = "///" if color is None else None
        ax.add_patch(Rectangle((0.6, 3.0 - k * 0.55), 0.8, 0.4, facecolor=color or COLORS["masked"],
                               edgecolor=COLORS["edge"], lw=0.5, hatch=hatch))
        label(ax, 1.6, 3.2 - k * 0.55, text, ha="left", size=8.5)
    label(ax, 15.6, 2.3, "each example is padded to the longest + 1 tokens;\ninputs drop the last token, targets "
          "the first,\nso both are as long as the longest example;\ncross_entropy counts every target "
          "except -100", ha="left", size=8.5, color=COLORS["muted"])
    save(fig, path)


def shortest_test_example():
    """The test split's shortest example (the first, if several are as short): its entry, token ids and prompt
    length, as InstructionDataset gives them with 01's tokenizer."""
    data = json.loads((REPO_ROOT / "data" / "instruction-data.json").read_text(encoding="utf-8"))
    _, test_data, _ = split_instruction_data(data)
    tokenizer = load_gpt2_tokenizer(REPO_ROOT / "data" / "gpt2-tokenizer", REPO_ROOT / ".cache" / "tiktoken")
    dataset = InstructionDataset(test_data, tokenizer)
    index = min(range(len(dataset)), key=lambda i: len(dataset[i][0]))
    token_ids, prompt_length = dataset[index]
    return test_data[index], token_ids, prompt_length, tokenizer


def fig_05_prompt_mask(path):
    entry, token_ids, prompt_length, tokenizer = shortest_test_example()
    inputs, targets = custom_collate_fn([(token_ids, prompt_length)], mask_prompt=True)
    inputs, targets = inputs[0].tolist(), targets[0].tolist()
    n_real, first_shown = len(token_ids), prompt_length - 8
    fig, ax = canvas(33.5, 12.4)
    label(ax, 0.3, 11.9, f"custom_collate_fn(..., mask_prompt=True) on the test split's shortest example: "
          f"{n_real} tokens, the first {prompt_length} of them the prompt", ha="left", size=10.5)
    label(ax, 0.3, 11.2, f"instruction: {entry['instruction']!r}    reference response: {entry['output']!r}",
          ha="left", size=9, color=COLORS["muted"])
    width, height, x0, input_y, target_y = 1.95, 1.1, 6.6, 7.6, 4.2
    label(ax, 0.3, input_y + height / 2, "inputs", ha="left", size=9.5)
    label(ax, 0.3, target_y + height / 2, "targets", ha="left", size=9.5)
    # the positions before first_shown: prompt tokens whose targets are all -100
    box(ax, 1.9, input_y, 4.4, height, f"positions 0-{first_shown - 1}:\nprompt tokens", color=COLORS["token"],
        size=8, rounded=False, edge="white")
    token_cell(ax, 1.9, target_y, 4.4, height, f"{first_shown} targets, all -100", COLORS["masked"], hatch=True,
               size=8)
    for k in range(first_shown, len(inputs)):
        x = x0 + (k - first_shown) * width
        label(ax, x + width / 2, input_y + height + 0.35, str(k), size=7.5, color=COLORS["muted"])
        token_cell(ax, x, input_y, width - 0.08, height,
                   f"{shown(tokenizer.decode([inputs[k]]))}\n{inputs[k]}",
                   token_color(k, prompt_length, n_real, False))
        target = targets[k]
        if target == -100:
            token_cell(ax, x, target_y, width - 0.08, height, "-100", COLORS["masked"], hatch=True)
        else:
            token_cell(ax, x, target_y, width - 0.08, height, f"{shown(tokenizer.decode([target]))}\n{target}",
                       token_color(k + 1, prompt_length, n_real, True))
        if k + 1 < len(inputs):  # target k is input token k + 1
            arrow(ax, (x + width * 1.5 - 0.04, input_y), (x + width / 2 - 0.04, target_y + height),
                  color=COLORS["masked"], lw=0.8)
    # the last prompt position predicts the first response token: its target counts
    boundary = x0 + (prompt_length - 1 - first_shown) * width
    ax.add_patch(Rectangle((boundary - 0.06, target_y - 0.1), width + 0.04, input_y + height - target_y + 0.2,
                           fill=False, edgecolor=COLORS["highlight"], lw=2.0))
    prompt_end = x0 + (prompt_length - first_shown) * width
    ax.plot([x0, prompt_end - 0.1], [input_y + height + 0.85] * 2, color=COLORS["token"], lw=3)
    label(ax, (x0 + prompt_end) / 2, input_y + height + 1.25, f"the prompt: positions 0-{prompt_length - 1}, ending with "
          "RESPONSE_MARKER", size=8.5)
    last = x0 + (len(inputs) - first_shown) * width
    ax.plot([prompt_end, last - 0.1], [input_y + height + 0.85] * 2, color=COLORS["target"], lw=3)
    label(ax, (prompt_end + last) / 2, input_y + height + 1.25, f"the response ({n_real - prompt_length} tokens)",
          size=8.5)
    counted = sum(target != -100 for target in targets)
    label(ax, 0.3, 2.9, f"Target i is input token i + 1 (the grey arrows), so the targets of positions 0 to "
          f"prompt_length - 2 = {prompt_length - 2} are prompt tokens and become -100.", ha="left", size=9)
    label(ax, 0.3, 2.1, f"Position {prompt_length - 1} (framed), the prompt's last token, predicts the response's "
          f"first token: its target counts, so target_row[: prompt_length - 1] is masked, not [: prompt_length].",
          ha="left", size=9)
    label(ax, 0.3, 1.3, f"The loss counts {counted} of the {len(targets)} targets: the {n_real - prompt_length} "
          "response tokens and the appended <|endoftext|> (50256).", ha="left", size=9)
    label(ax, 0.3, 0.5, "Blue: a prompt token; light red: a response token; dark red: the appended end token; "
          "hatched grey: a target set to -100, which the loss ignores.", ha="left", size=8.5, color=COLORS["muted"])
    save(fig, path)


def fig_05_evaluation(path):
    fig, ax = canvas(35.4, 15.0)
    label(ax, 0.3, 14.5, f"{evaluate_instruction_model.__name__}: what happens to each test entry it is given, "
          "before and after fine-tuning (section 4); the judge, only after (section 7)", ha="left", size=10.5)
    w, h, gap, x0 = 5.0, 2.3, 1.0, 6.0
    column = [x0 + k * (w + gap) for k in range(5)]  # the last column: the measures
    box(ax, 0.3, 5.9, 4.6, 6.7, "a test entry\n(evaluation_data):\ninstruction,\ninput (or \"\"),\noutput "
        "(the\nreference)", color="white", size=9)
    rows = [  # (y, [(column, text, colour), ...], measure): white boxes are plain Python, grey ones run a model
        (10.6, [(0, f"{format_input.__name__}(entry)\n+ RESPONSE_MARKER:\nthe prompt", "white"),
                (1, f"{generate_batch.__name__}(model,\nprompts, eos_id=50256):\ngreedy, 8 at a time,\nat most max_new_tokens",
                 COLORS["layer"]),
                (2, f"{extract_response.__name__}:\nthe text after the\nprompt, up to the end\ntoken or a new ###",
                 "white"),
                (3, f"{rouge_l_f1.__name__}(\nresponse,\nentry['output'])", "white")],
         "ROUGE-L F1\n(mean over\nthe entries)"),
        (6.3, [(0, "InstructionDataset,\ncustom_collate_fn(\nmask_prompt=True):\nevaluation_loader", "white"),
               (1, f"{calc_loss_loader.__name__}(\nevaluation_loader,\nmodel): cross-entropy\nof the response "
                "tokens", COLORS["layer"])],
         "response loss,\nand exp(loss):\nthe perplexity"),
        (2.0, [(1, f"{judge_prompt.__name__}(entry,\nresponse): entry,\nreference and response\nin one question",
                "white"),
               (2, f"{query_ollama.__name__}:\na local {JUDGE_MODEL!r}\n(Ollama), seed 123,\ntemperature 0",
                COLORS["layer"]),
               (3, f"{parse_score.__name__}(\nreply): an integer\nfrom 0 to 100", "white")],
         "the judge's\nscore (mean over\nthe responses)"),
    ]
    for y, steps, measure in rows:
        previous_end = 4.9 if steps[0][0] == 0 else None
        for k, text, color in steps:
            box(ax, column[k], y, w, h, text, color=color, size=8)
            if previous_end is not None:
                arrow(ax, (previous_end, y + h / 2), (column[k], y + h / 2))
            previous_end = column[k] + w
        box(ax, column[4], y + 0.1, w, h - 0.2, measure, color="white", size=8.5, weight="bold", lw=2.0,
            edge=COLORS["highlight"])
        arrow(ax, (previous_end, y + h / 2), (column[4], y + h / 2))
    # the judge reads the entry and the response of the top row
    response_x = column[2] + w + gap / 2
    ax.plot([response_x, response_x], [10.6 + h / 2, 5.4], color=COLORS["muted"], lw=1.2, ls="--")
    arrow(ax, (response_x, 5.4), (column[1] + w / 2 + 1.0, 2.0 + h), color=COLORS["muted"], ls="--")
    label(ax, response_x + 0.2, 9.9, "the response", ha="left", size=8, color=COLORS["muted"])
    ax.plot([2.6, 2.6], [5.9, 3.15], color=COLORS["muted"], lw=1.2, ls="--")
    arrow(ax, (2.6, 3.15), (column[1], 3.15), color=COLORS["muted"], ls="--")
    label(ax, 0.3, 0.9, f"Top: {generate_responses.__name__} writes a response, scored against the reference. "
          "Middle: the reference response's loss given its prompt (the prompt's targets -100). Bottom: optional, "
          "only if an Ollama server answers.", ha="left", size=8.5, color=COLORS["muted"])
    label(ax, 0.3, 0.3, "Grey boxes run a model (the one evaluated; bottom, the judge); white boxes are plain "
          "Python; framed: what is printed.", ha="left", size=8.5, color=COLORS["muted"])
    save(fig, path)


def lcs_table(candidate_words, reference_words):
    """table[i][j]: longest_common_subsequence of the first i candidate words and the first j reference words."""
    return [[longest_common_subsequence(candidate_words[:i], reference_words[:j])
             for j in range(len(reference_words) + 1)] for i in range(len(candidate_words) + 1)]


def lcs_matches(table, candidate_words, reference_words):
    """(i, j) word pairs of one longest common subsequence, read back from the table's last cell."""
    i, j, matches = len(candidate_words), len(reference_words), []
    while i > 0 and j > 0:
        if candidate_words[i - 1] == reference_words[j - 1] and table[i][j] == table[i - 1][j - 1] + 1:
            matches.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif table[i - 1][j] >= table[i][j - 1]:
            i -= 1
        else:
            j -= 1
    return matches[::-1]


def fig_05_rouge_lcs(path):
    candidate, reference = notebook_value("05_finetune_instruct.ipynb", "rouge_examples")[1]
    candidate_words, reference_words = rouge_l_words(candidate), rouge_l_words(reference)
    table = lcs_table(candidate_words, reference_words)
    matches = lcs_matches(table, candidate_words, reference_words)
    lcs = table[-1][-1]
    fig, ax = canvas(30.0, 13.6)
    label(ax, 0.3, 13.1, f"ROUGE-L of the candidate {candidate!r} against the reference {reference!r} "
          "(section 4's second example)", ha="left", size=10.5)
    cell, x0, y0 = 1.2, 3.6, 10.3  # y0: top of the table
    label(ax, x0 + (len(reference_words) + 1) * cell / 2, y0 + 1.5, "reference words (rouge_l_words) →", size=9)
    label(ax, 0.3, y0 - (len(candidate_words) + 1) * cell / 2, "candidate\nwords\n↓", ha="left", size=9)
    for j, word in enumerate([""] + reference_words):
        label(ax, x0 + (j + 0.5) * cell, y0 + 0.45, word, size=8.5)
    for i, word in enumerate([""] + candidate_words):
        label(ax, x0 - 0.15, y0 - (i + 0.5) * cell, word, ha="right", size=8.5)
    for i, values in enumerate(table):
        for j, value in enumerate(values):
            matched = (i - 1, j - 1) in matches
            ax.add_patch(Rectangle((x0 + j * cell, y0 - (i + 1) * cell), cell, cell,
                                   facecolor=COLORS["token"] if matched else "white", edgecolor=COLORS["masked"],
                                   lw=1.0))
            label(ax, x0 + (j + 0.5) * cell, y0 - (i + 0.5) * cell, str(value), size=8.5)
    for i, j in matches:
        ax.add_patch(Rectangle((x0 + (j + 1) * cell, y0 - (i + 2) * cell), cell, cell, fill=False,
                               edgecolor=COLORS["highlight"], lw=1.8))
    label(ax, x0, y0 - (len(candidate_words) + 1) * cell - 0.6, "cell (i, j): longest_common_subsequence of the "
          "first i candidate words\nand the first j reference words; framed: a matched pair, one more than\nthe "
          "cell up and to the left; the last cell is the LCS length", ha="left", va="top", size=8.5,
          color=COLORS["muted"])
    # the two word sequences, matched words joined
    wx, step = 15.2, 2.1
    label(ax, wx - 0.3, 9.2, "candidate", ha="right", size=9)
    label(ax, wx - 0.3, 6.4, "reference", ha="right", size=9)
    matched_candidate = {i for i, _ in matches}
    matched_reference = {j for _, j in matches}
    for words, y, matched in ((candidate_words, 8.8, matched_candidate), (reference_words, 6.0, matched_reference)):
        for k, word in enumerate(words):
            box(ax, wx + k * step, y, step - 0.2, 0.8, word, color=COLORS["token"] if k in matched else "white",
                size=8.5, rounded=False)
    for i, j in matches:
        ax.plot([wx + i * step + (step - 0.2) / 2, wx + j * step + (step - 0.2) / 2], [8.8, 6.8],
                color=COLORS["edge"], lw=1.2)
    precision, recall = lcs / len(candidate_words), lcs / len(reference_words)
    f1 = rouge_l_f1(candidate, reference)
    assert math.isclose(f1, 2 * precision * recall / (precision + recall))
    lines = [f"LCS: {' '.join(candidate_words[i] for i, _ in matches)!r}, l = {lcs} words",
             f"precision = l / c = {lcs} / {len(candidate_words)} = {precision:.3f}   (c: candidate words)",
             f"recall = l / r = {lcs} / {len(reference_words)} = {recall:.3f}   (r: reference words)",
             f"F1 = 2 · precision · recall / (precision + recall) = {f1:.3f}   (rouge_l_f1)"]
    for k, line in enumerate(lines):
        label(ax, wx - 2.2, 4.4 - k * 0.8, line, ha="left", size=9.5 if k else 10)
    save(fig, path)
