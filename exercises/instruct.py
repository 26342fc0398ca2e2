"""The checkers of 05_finetune_instruct.ipynb's exercises (05.1, 05.2): collating and the Alpaca
prompt. exercises/checks.py says how a checker works."""



from exercises.checks import compare, exercise, messages_of, run_learner


@exercise("05.1", "collating with the prompt masked")
def check_collate_masked_prompt(collate_masked_prompt):
    from gpt2_from_scratch.instruct import custom_collate_fn  # 05, section 2
    batch = [([11, 12, 13, 14, 15, 16], 4), ([21, 22, 23], 2), ([31, 32, 33, 34], 1)]
    answer = run_learner(collate_masked_prompt, batch, returns=tuple)
    if not (isinstance(answer, tuple) and len(answer) == 2):
        return ["return a pair: (inputs, targets)"]
    inputs, targets = answer
    expected_inputs, expected_targets = custom_collate_fn(batch, mask_prompt=True)
    unmasked = custom_collate_fn(batch)[1]
    no_end = expected_targets.clone()
    for row, (ids, _) in enumerate(batch):
        no_end[row, len(ids) - 1] = -100
    shifted_mask = expected_targets.clone()
    for row, (ids, prompt_length) in enumerate(batch):
        shifted_mask[row, prompt_length - 1] = -100  # one target too many masked
    mistakes = [
        ("the prompt's targets are not masked: set targets[: prompt_length - 1] to -100", unmasked),
        ("each example's first <|endoftext|> must stay a target (the model learns to stop); only the padding "
         "after it becomes -100", no_end),
        ("one prompt target too many is masked: target i is token i + 1, so the first response token is "
         "target prompt_length - 1 and must stay", shifted_mask),
    ]
    return messages_of(compare(inputs, expected_inputs, "inputs"),
                       compare(targets, expected_targets, "targets", mistakes))


@exercise("05.2", "the Alpaca prompt")
def check_alpaca_prompt(alpaca_prompt):
    from gpt2_from_scratch.instruct import RESPONSE_MARKER, format_input  # 05, section 1
    entries = [{"instruction": "Rewrite the sentence in the passive voice.", "input": "The cat chased the dog.",
                "output": "The dog was chased by the cat."},
               {"instruction": "Name a primary colour.", "input": "", "output": "Red."}]
    messages = []
    for entry in entries:
        answer, expected = run_learner(alpaca_prompt, entry, returns=str), format_input(entry) + RESPONSE_MARKER
        if answer == expected:
            continue
        kind = "with" if entry["input"] else "without"
        if not isinstance(answer, str):
            messages.append(f"return a string, not {type(answer).__name__}")
        elif not entry["input"] and "### Input:" in answer:
            messages.append("an entry without input must have no '### Input:' section")
        elif answer == format_input(entry):
            messages.append(f"the prompt must end with the response marker {RESPONSE_MARKER!r}")
        elif entry["output"] in answer:
            messages.append("the prompt must not contain the response (the output)")
        else:
            position = next(i for i, (a, b) in enumerate(zip(answer + "\0", expected + "\0")) if a != b)
            messages.append(f"an entry {kind} input: the prompt differs from the template at character {position}: "
                            f"{answer[position:position + 20]!r} instead of {expected[position:position + 20]!r}")
    return messages
