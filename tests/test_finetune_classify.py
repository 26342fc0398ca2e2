"""04's spam-classifier pieces, on the notebook's own definitions."""

import warnings
from collections import Counter

import pytest
import torch

from gpt2_from_scratch.architecture import GPTConfig, GPTModel  # 01's model, which 04 builds on


@pytest.fixture(scope="module")
def messages(nb04, repo_root):
    return nb04.load_sms_spam(repo_root / "data" / "sms_spam_collection" / "SMSSpamCollection")


@pytest.fixture(scope="module")
def tokenizer(nb01):
    return nb01.load_gpt2_tokenizer()


def tiny_classifier(nb04, context_length=32, seed=0):
    torch.manual_seed(seed)
    config = GPTConfig(vocab_size=50257, context_length=context_length, emb_dim=16, n_heads=2, n_layers=2,
                       drop_rate=0.0)
    return nb04.make_classifier(GPTModel(config)).eval()


def test_the_data_set_has_its_documented_counts(messages):
    assert Counter(label for label, _ in messages) == {"ham": 4827, "spam": 747}


def test_balancing_keeps_every_spam_and_as_many_ham_reproducibly(nb04, messages):
    balanced = nb04.balance_classes(messages, seed=123)
    assert Counter(label for label, _ in balanced) == {"ham": 747, "spam": 747}
    spam = [row for row in messages if row[0] == "spam"]
    assert [row for row in balanced if row[0] == "spam"] == spam  # all spam, in order
    assert set(balanced) <= set(messages)
    assert nb04.balance_classes(messages, seed=123) == balanced
    assert nb04.balance_classes(messages, seed=124) != balanced


def test_split_sizes_are_exact_disjoint_and_seeded(nb04, messages):
    balanced = nb04.balance_classes(messages)
    train, val, test = nb04.split_rows(balanced, seed=123)
    assert (len(train), len(val), len(test)) == (1045, 149, 300)
    assert sorted(train + val + test) == sorted(balanced)
    assert nb04.split_rows(balanced, seed=123) == (train, val, test)
    assert nb04.split_rows(balanced, seed=7)[0] != train


def test_split_csv_round_trips_text_with_commas_and_quotes(nb04, tmp_path):
    import csv

    rows = [("ham", 'He said "hi", then left'), ("spam", "WIN £100, now!\tReally")]
    path = nb04.write_rows_csv(rows, tmp_path / "split.csv")
    with open(path, encoding="utf-8", newline="") as file:
        assert [tuple(row) for row in csv.reader(file)] == [("label", "text"), *rows]
    assert not list(tmp_path.glob("*.partial"))


def test_padding_truncation_and_lengths(nb04, tokenizer):
    rows = [("ham", "Hello there"), ("spam", "Win a prize now, call 555 today!"), ("ham", "ok")]
    dataset = nb04.SpamDataset(rows, tokenizer)
    encoded = [tokenizer.encode(text) for _, text in rows]
    longest = max(len(ids) for ids in encoded)
    assert dataset.max_length == longest
    for index, ids in enumerate(encoded):
        input_ids, label, length = dataset[index]
        assert input_ids.tolist() == ids + [50256] * (longest - len(ids))
        assert length.item() == len(ids)
        assert label.item() == nb04.LABELS.index(rows[index][0])

    short = nb04.SpamDataset(rows, tokenizer, max_length=3)
    assert short.input_ids.tolist()[1] == encoded[1][:3]
    assert short.lengths.tolist() == [min(3, len(ids)) for ids in encoded]


def test_last_token_logits_pick_each_rows_last_real_token(nb04):
    model = tiny_classifier(nb04)
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(0, 50257, (3, 10), generator=generator)
    lengths = torch.tensor([10, 4, 1])
    with torch.no_grad():
        all_positions = model(input_ids)
        picked = nb04.last_token_logits(model, input_ids, lengths)
        for row, length in enumerate(lengths.tolist()):
            assert torch.equal(picked[row], all_positions[row, length - 1])
            # and equal to classifying the message alone, unpadded (the causal mask hides the padding)
            alone = model(input_ids[row : row + 1, :length])[0, -1]
            assert torch.allclose(picked[row], alone, atol=1e-5)


def test_classification_metrics_on_a_hand_counted_case(nb04):
    labels = torch.tensor([1, 1, 1, 0, 0, 0, 0])
    predictions = torch.tensor([1, 1, 0, 1, 0, 0, 0])
    metrics = nb04.classification_metrics(predictions, labels)
    assert metrics["confusion"].tolist() == [[3, 1], [1, 2]]
    assert metrics["precision"] == pytest.approx(2 / 3)
    assert metrics["recall"] == pytest.approx(2 / 3)
    assert metrics["f1"] == pytest.approx(2 / 3)
    assert metrics["accuracy"] == pytest.approx(5 / 7)
    nothing_flagged = nb04.classification_metrics(torch.zeros(4, dtype=torch.long), torch.tensor([0, 1, 0, 1]))
    assert nothing_flagged["precision"] == 0.0 and nothing_flagged["f1"] == 0.0


@pytest.mark.parametrize("text", ["", "   ", "\n\t "])
def test_classify_text_refuses_empty_text(nb04, tokenizer, text):
    with pytest.raises(ValueError, match="empty"):
        nb04.classify_text(text, tiny_classifier(nb04), tokenizer)


def test_classify_text_truncates_long_text_with_a_warning(nb04, tokenizer):
    model = tiny_classifier(nb04, context_length=16)
    long_text = "free prize " * 40
    with pytest.warns(UserWarning, match="only the first 16"):
        label, probability = nb04.classify_text(long_text, model, tokenizer)
    first_16 = torch.tensor([tokenizer.encode(long_text)[:16]])
    with torch.no_grad():
        expected = torch.softmax(model(first_16)[0, -1], dim=-1)
    assert label == nb04.LABELS[expected.argmax().item()]
    assert probability == pytest.approx(expected.max().item())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a short text gives no warning
        nb04.classify_text("see you soon", model, tokenizer)


def test_make_classifier_trains_only_the_last_block_final_norm_and_head(nb04):
    model = tiny_classifier(nb04)
    assert model.out_head.out_features == 2
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    expected = {name for name, _ in model.named_parameters()
                if name.startswith(("blocks.1.", "final_norm.", "out_head."))}
    assert trainable == expected
    assert model.out_head.weight is not model.tok_emb.weight


def test_lora_layer_equals_the_frozen_layer_at_init(nb04):
    torch.manual_seed(0)
    linear = torch.nn.Linear(12, 20)
    wrapped = nb04.LinearWithLoRA(linear, rank=4, alpha=8)
    x = torch.randn(3, 5, 12)
    assert torch.equal(wrapped(x), linear(x))  # B = 0: the update is exactly zero
    assert not any(p.requires_grad for p in wrapped.linear.parameters())
    assert sum(p.numel() for p in wrapped.parameters() if p.requires_grad) == 4 * (12 + 20)
    with torch.no_grad():
        wrapped.lora.B.normal_()
    expected = linear(x) + (8 / 4) * (x @ wrapped.lora.A @ wrapped.lora.B)
    assert torch.allclose(wrapped(x), expected, atol=1e-6)  # output scaled by alpha / rank


def test_add_lora_counts_rank_times_in_plus_out_per_wrapped_layer(nb04):
    model = tiny_classifier(nb04)
    with torch.no_grad():
        before = model(torch.tensor([[1, 2, 3, 4]]))
    rank, d = 4, 16
    nb04.add_lora(model, rank=rank, alpha=4)
    wrapped = [m for m in model.modules() if isinstance(m, nb04.LinearWithLoRA)]
    assert len(wrapped) == 4 * model.cfg.n_layers  # qkv, out_proj, expand, project in every block
    per_block = rank * ((d + 3 * d) + (d + d) + (d + 4 * d) + (4 * d + d))
    head = d * 2 + 2
    assert nb04.count_trainable(model) == model.cfg.n_layers * per_block + head
    with torch.no_grad():
        assert torch.equal(model(torch.tensor([[1, 2, 3, 4]])), before)


def test_add_lora_can_leave_a_pretrained_head_frozen(nb04):
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=100, context_length=8, emb_dim=16, n_heads=2, n_layers=1, drop_rate=0.0)
    model = nb04.add_lora(GPTModel(config), rank=2, alpha=2, train_head=False)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora." in name for name in trainable)
    assert nb04.count_trainable(model) == 2 * ((16 + 48) + (16 + 16) + (16 + 64) + (64 + 16))


def test_end_of_text_inside_a_message_is_ordinary_text(nb04, tokenizer):
    rows = [("spam", "WIN <|endoftext|> now"), ("ham", "ok")]
    dataset = nb04.SpamDataset(rows, tokenizer)
    assert tokenizer.eot_token not in dataset.input_ids[0, : dataset.lengths[0]].tolist()
    label, probability = nb04.classify_text("see <|endoftext|> you", tiny_classifier(nb04), tokenizer)
    assert label in nb04.LABELS and 0.5 <= probability <= 1.0


def test_make_classifier_draws_its_head_from_its_own_seed_and_leaves_the_global_random_state(nb04):
    from gpt2_from_scratch.architecture import GPTConfig, GPTModel
    config = GPTConfig(vocab_size=50, context_length=8, emb_dim=16, n_heads=2, n_layers=1)
    torch.manual_seed(0)
    state = torch.random.get_rng_state()
    first = nb04.make_classifier(GPTModel(config)).out_head.weight.detach().clone()
    torch.random.set_rng_state(state)
    GPTModel(config)  # the same draws as above but the head's
    expected_next = torch.rand(3)
    torch.random.set_rng_state(state)
    again = nb04.make_classifier(GPTModel(config)).out_head.weight
    assert torch.equal(torch.rand(3), expected_next)  # the head's draws came from elsewhere
    assert torch.equal(first, again) and not torch.equal(first, nb04.make_classifier(GPTModel(config), seed=1).out_head.weight)


# ---- 04, section 3: zero-shot answers ------------------------------------------------------------------------

def test_answer_log_probabilities_sum_the_answer_tokens_read_one_answer_at_a_time(nb01, nb04):
    torch.manual_seed(0)
    model = nb01.GPTModel(nb01.GPTConfig(vocab_size=50257, context_length=64, emb_dim=32, n_heads=2, n_layers=2,
                                         drop_rate=0.0)).eval()
    tokenizer = nb01.load_gpt2_tokenizer()
    prompt, answers = 'Text message: "free prize, call now"\nIs it spam? Answer:', (" not spam", " spam", " maybe so")
    scores = nb04.answer_log_probabilities(model, tokenizer, prompt, answers, "cpu")
    prompt_ids = tokenizer.encode(prompt)
    with torch.inference_mode():
        for answer, score in zip(answers, scores):  # each answer alone, unpadded, token by token
            ids = prompt_ids + tokenizer.encode(answer)
            log_probs = torch.log_softmax(model(torch.tensor([ids]))[0], dim=-1)
            expected = sum(log_probs[position - 1, ids[position]].item() for position in range(len(prompt_ids), len(ids)))
            assert score == pytest.approx(expected, abs=1e-4)
    # Answers of one token each, so that a random model's choice varies from text to text
    texts = ["free prize, call now", "see you at six", "WIN cash", "ok lar", "Call 0800 now", "love you"]
    template, one_token_answers = 'Text message: "{text}"\nIs it spam? Answer:', (" no", " yes", " maybe")
    expected = []
    for text in texts:
        text_scores = nb04.answer_log_probabilities(model, tokenizer, template.format(text=text), one_token_answers, "cpu")
        expected.append(max(range(3), key=text_scores.__getitem__))
    assert len(set(expected)) > 1  # (else a mix-up of the texts' order could go unnoticed)
    predictions = nb04.zero_shot_predict(model, tokenizer, texts, "cpu", prompt=template, answers=one_token_answers)
    assert predictions.tolist() == expected
    assert nb04.ZERO_SHOT_ANSWERS == (" not spam", " spam")  # in the order of LABELS: class 0 ham, class 1 spam
