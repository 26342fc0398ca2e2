# Generated from 04_finetune_classify.ipynb; edit the notebook, then regenerate: python tools/export_package.py
"""The definitions of 04_finetune_classify.ipynb, for later notebooks, the tests and the benchmarks.

Each part below is one exported cell of the notebook, headed by the cell's number (counted from 0,
markdown cells included) and its section.
"""


__all__ = [
    "load_sms_spam", "LABELS", "balance_classes", "split_rows", "write_rows_csv", "data_fraction", "first_part",
    "SpamDataset", "ZERO_SHOT_PROMPT", "ZERO_SHOT_ANSWERS", "answer_log_probabilities", "zero_shot_predict",
    "NUM_CLASSES", "make_classifier", "count_trainable", "last_token_logits", "calc_loss_batch_cls",
    "calc_loss_loader_cls", "predict_loader", "calc_accuracy_loader", "train_classifier",
    "plot_classifier_history", "classification_metrics", "plot_confusion", "classify_text", "LoRALayer",
    "LinearWithLoRA", "add_lora",
]


# 04_finetune_classify.ipynb, cell 5 (section "Setup")
import csv
import math
import os
import sys
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset
from tqdm import tqdm

from gpt2_support.files import atomic_write_path  # write beside the file, then rename (see 01, section 1)


# 04_finetune_classify.ipynb, cell 11 (section "1. The data")
def load_sms_spam(path="data/sms_spam_collection/SMSSpamCollection"):
    """[(label, text), ...] from the tab-separated SMS Spam Collection."""
    rows = []
    for line_number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        label, separator, text = line.partition("\t")
        if not separator or label not in ("ham", "spam"):
            raise ValueError(f"{path}, line {line_number}: expected 'ham' or 'spam', a tab, then the text")
        rows.append((label, text))
    return rows


# 04_finetune_classify.ipynb, cell 14 (section "1. The data")
LABELS = ("ham", "spam")  # class index 0 and 1


def balance_classes(rows, seed=123):
    """Undersample the larger class at random to the size of the smaller one."""
    by_label = {label: [row for row in rows if row[0] == label] for label in LABELS}
    smallest = min(len(group) for group in by_label.values())
    rng = np.random.default_rng(seed)
    balanced = []
    for label in LABELS:
        group = by_label[label]
        keep = sorted(rng.choice(len(group), size=smallest, replace=False))
        balanced += [group[index] for index in keep]
    return balanced


def split_rows(rows, train_fraction=0.7, val_fraction=0.1, seed=123):
    """Shuffle with a seed and split into (train, validation, test); the test set takes the rest."""
    order = np.random.default_rng(seed).permutation(len(rows))
    shuffled = [rows[index] for index in order]
    train_end = int(train_fraction * len(rows))
    val_end = train_end + int(val_fraction * len(rows))
    return shuffled[:train_end], shuffled[train_end:val_end], shuffled[val_end:]


# 04_finetune_classify.ipynb, cell 17 (section "1. The data")
def write_rows_csv(rows, path):
    """Write (label, text) rows as a CSV with a header, atomically (atomic_write_path, from gpt2_support.files)."""
    with atomic_write_path(path) as partial:
        with open(partial, "w", encoding="utf-8", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["label", "text"])
            writer.writerows(rows)
    return Path(path)


# 04_finetune_classify.ipynb, cell 20 (section "1. The data")
def data_fraction():
    """GPT2_DATA_FRACTION: the share of each split to keep; 1, all of it, unless set to time a run."""
    fraction = float(os.environ.get("GPT2_DATA_FRACTION", "1"))
    if not 0 < fraction <= 1:
        raise ValueError(f"GPT2_DATA_FRACTION must be in (0, 1], not {fraction}")
    return fraction


def first_part(rows, fraction):
    """The first ceil(fraction * len(rows)) rows."""
    return rows[:math.ceil(fraction * len(rows))]


# 04_finetune_classify.ipynb, cell 23 (section "2. Batches of messages")
class SpamDataset(Dataset):
    """Token ids of each message, padded (or truncated) to one length, with its label and real length."""

    def __init__(self, rows, tokenizer, max_length=None, pad_token_id=50256):
        # disallowed_special=(): "<|endoftext|>" inside a message is text, not GPT-2's end token.
        encoded = [tokenizer.encode(text, disallowed_special=()) for _, text in rows]
        if any(len(ids) == 0 for ids in encoded):
            raise ValueError("a message encodes to no tokens: remove empty messages first")
        self.max_length = max(len(ids) for ids in encoded) if max_length is None else max_length
        truncated = [ids[: self.max_length] for ids in encoded]
        self.lengths = torch.tensor([len(ids) for ids in truncated])
        self.input_ids = torch.tensor([ids + [pad_token_id] * (self.max_length - len(ids)) for ids in truncated])
        self.labels = torch.tensor([LABELS.index(label) for label, _ in rows])

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return self.input_ids[index], self.labels[index], self.lengths[index]


# 04_finetune_classify.ipynb, cell 31 (section "Before fine-tuning: asking the language model")
ZERO_SHOT_PROMPT = 'Text message: "{text}"\nIs this text message spam or not spam? Answer:'
ZERO_SHOT_ANSWERS = (" not spam", " spam")  # in the order of LABELS: class 0 (ham), class 1 (spam)


@torch.inference_mode()
def answer_log_probabilities(model, tokenizer, prompt, answers, device):
    """log P(answer | prompt) for each answer: the sum of the log-probabilities of the answer's tokens."""
    prompt_ids = tokenizer.encode(prompt)
    answers_ids = [tokenizer.encode(answer) for answer in answers]
    longest = max(len(ids) for ids in answers_ids)
    rows = [prompt_ids + ids + [tokenizer.eot_token] * (longest - len(ids)) for ids in answers_ids]
    log_probs = torch.log_softmax(model(torch.tensor(rows, device=device)).float(), dim=-1)
    totals = []
    for row, ids in enumerate(answers_ids):
        # The logits at position p predict the token at p + 1: the answer's tokens, from len(prompt_ids) on,
        # are predicted from the positions just before them.
        predicting = torch.arange(len(prompt_ids) - 1, len(prompt_ids) - 1 + len(ids), device=device)
        totals.append(log_probs[row, predicting, torch.tensor(ids, device=device)].sum().item())
    return totals


def zero_shot_predict(model, tokenizer, texts, device, prompt=ZERO_SHOT_PROMPT, answers=ZERO_SHOT_ANSWERS):
    """For each text, the index of the answer the language model finds most likely after the prompt."""
    model.eval()
    predictions = []
    for text in tqdm(texts, desc="zero-shot", file=sys.stdout):
        scores = answer_log_probabilities(model, tokenizer, prompt.format(text=text), answers, device)
        predictions.append(max(range(len(answers)), key=scores.__getitem__))
    return torch.tensor(predictions)


# 04_finetune_classify.ipynb, cell 36 (section "A two-class head")
NUM_CLASSES = len(LABELS)


def make_classifier(model, num_classes=NUM_CLASSES, seed=123):
    """Replace GPT-2's output head with a num_classes head; train only the last block, final norm and head.
    The head's initial weights come from `seed`; the global random state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model.out_head = nn.Linear(model.cfg.emb_dim, num_classes)
    for parameter in model.parameters():
        parameter.requires_grad = False
    for module in (model.blocks[-1], model.final_norm, model.out_head):
        for parameter in module.parameters():
            parameter.requires_grad = True
    return model


def count_trainable(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# 04_finetune_classify.ipynb, cell 41 (section "4. Which position to classify from")
def last_token_logits(model, input_ids, lengths):
    """The class scores at each row's last real token: (batch, num_classes)."""
    logits = model(input_ids)  # (batch, n_tokens, num_classes)
    return logits[torch.arange(input_ids.shape[0], device=input_ids.device), lengths - 1]


# 04_finetune_classify.ipynb, cell 45 (section "5. Loss and accuracy")
def calc_loss_batch_cls(input_batch, label_batch, length_batch, model, device):
    logits = last_token_logits(model, input_batch.to(device), length_batch.to(device))
    return F.cross_entropy(logits, label_batch.to(device))


@torch.inference_mode()
def calc_loss_loader_cls(data_loader, model, device, num_batches=None):
    num_batches = len(data_loader) if num_batches is None else min(num_batches, len(data_loader))
    total = 0.0
    for index, (input_batch, label_batch, length_batch) in enumerate(data_loader):
        if index >= num_batches:
            break
        total += calc_loss_batch_cls(input_batch, label_batch, length_batch, model, device).item()
    return total / num_batches


@torch.inference_mode()
def predict_loader(data_loader, model, device, num_batches=None):
    """(predicted labels, true labels) for the first num_batches batches (all by default)."""
    predictions, labels = [], []
    for index, (input_batch, label_batch, length_batch) in enumerate(data_loader):
        if num_batches is not None and index >= num_batches:
            break
        logits = last_token_logits(model, input_batch.to(device), length_batch.to(device))
        predictions.append(logits.argmax(dim=-1).cpu())
        labels.append(label_batch)
    return torch.cat(predictions), torch.cat(labels)


def calc_accuracy_loader(data_loader, model, device, num_batches=None):
    predictions, labels = predict_loader(data_loader, model, device, num_batches)
    return (predictions == labels).float().mean().item()


# 04_finetune_classify.ipynb, cell 50 (section "6. Fine-tuning")
def train_classifier(model, train_loader, val_loader, optimizer, device, num_epochs, eval_freq, eval_iter):
    """Fine-tune; return the history of losses (every eval_freq steps) and accuracies (every epoch)."""
    history = {"examples_seen": [], "train_loss": [], "val_loss": [], "train_accuracy": [], "val_accuracy": []}
    examples_seen, step, epoch_summaries = 0, 0, []
    # One bar for the whole run, on stdout, with the epochs' summaries printed after it (as in 02's loops).
    progress = tqdm(total=num_epochs * len(train_loader), desc="fine-tuning", file=sys.stdout)
    for epoch in range(num_epochs):
        model.train()
        for input_batch, label_batch, length_batch in train_loader:
            optimizer.zero_grad()
            loss = calc_loss_batch_cls(input_batch, label_batch, length_batch, model, device)
            loss.backward()
            optimizer.step()
            examples_seen += input_batch.shape[0]
            step += 1
            progress.update()
            if step % eval_freq == 0:
                model.eval()
                history["examples_seen"].append(examples_seen)
                history["train_loss"].append(calc_loss_loader_cls(train_loader, model, device, eval_iter))
                history["val_loss"].append(calc_loss_loader_cls(val_loader, model, device, eval_iter))
                model.train()
        model.eval()
        history["train_accuracy"].append(calc_accuracy_loader(train_loader, model, device, eval_iter))
        history["val_accuracy"].append(calc_accuracy_loader(val_loader, model, device, eval_iter))
        progress.set_postfix(val_accuracy=f"{history['val_accuracy'][-1]:.1%}")
        losses = (f"train loss {history['train_loss'][-1]:.3f}, val loss {history['val_loss'][-1]:.3f}"
                  if history["train_loss"] else f"no loss evaluated yet (every {eval_freq} steps)")
        epoch_summaries.append(f"epoch {epoch + 1}: {losses}, train accuracy {history['train_accuracy'][-1]:.1%}, "
                               f"val accuracy {history['val_accuracy'][-1]:.1%}")
    progress.close()
    print("\n".join(epoch_summaries))
    return history


# 04_finetune_classify.ipynb, cell 57 (section "6. Fine-tuning")
def plot_classifier_history(history, path=None):
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 3.5))
    # Training dashed, validation solid, as in every loss plot of the series (02's plot_losses).
    loss_axis.plot(history["examples_seen"], history["train_loss"], linestyle="--", label="training")
    loss_axis.plot(history["examples_seen"], history["val_loss"], linestyle="-", label="validation")
    loss_axis.set(xlabel="examples seen", ylabel="loss", title="Loss")
    epochs = range(1, len(history["train_accuracy"]) + 1)
    accuracy_axis.plot(epochs, history["train_accuracy"], marker="o", linestyle="--", label="training")
    accuracy_axis.plot(epochs, history["val_accuracy"], marker="o", linestyle="-", label="validation")
    accuracy_axis.set(xlabel="epoch", ylabel="accuracy", title="Accuracy", ylim=(0, 1.02))
    for axis in (loss_axis, accuracy_axis):
        axis.legend()
    figure.tight_layout()
    if path is not None:
        figure.savefig(path, dpi=120)
    plt.show()


# 04_finetune_classify.ipynb, cell 67 (section "7. How good is it?")
def classification_metrics(predictions, labels, positive=1):
    """Confusion matrix (rows: true class, columns: predicted) and precision, recall, F1 for `positive`."""
    confusion = torch.zeros(NUM_CLASSES, NUM_CLASSES, dtype=torch.long)
    for true, predicted in zip(labels.tolist(), predictions.tolist()):
        confusion[true, predicted] += 1
    true_positive = confusion[positive, positive].item()
    flagged, actual = confusion[:, positive].sum().item(), confusion[positive, :].sum().item()
    precision = true_positive / flagged if flagged else 0.0
    recall = true_positive / actual if actual else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"confusion": confusion, "precision": precision, "recall": recall, "f1": f1,
            "accuracy": confusion.diagonal().sum().item() / confusion.sum().item()}


def plot_confusion(confusion, path=None):
    figure, axis = plt.subplots(figsize=(3.8, 3.4))
    axis.imshow(confusion, cmap="Blues")
    for (row, column), count in np.ndenumerate(confusion.numpy()):
        axis.text(column, row, str(count), ha="center", va="center",
                  color="white" if count > confusion.max().item() / 2 else "black")
    axis.set(xticks=range(NUM_CLASSES), yticks=range(NUM_CLASSES), xticklabels=LABELS, yticklabels=LABELS,
             xlabel="predicted", ylabel="true", title="Test set")
    figure.tight_layout()
    if path is not None:
        figure.savefig(path, dpi=120)
    plt.show()


# 04_finetune_classify.ipynb, cell 74 (section "8. Classifying new text")
@torch.inference_mode()
def classify_text(text, model, tokenizer, device="cpu", max_length=None, labels=LABELS):
    """(label, probability of that label) for one text."""
    if not text.strip():
        raise ValueError("text is empty or whitespace only: there is nothing to classify")
    token_ids = tokenizer.encode(text, disallowed_special=())  # a typed "<|endoftext|>" is just text
    limit = model.cfg.context_length if max_length is None else min(max_length, model.cfg.context_length)
    if len(token_ids) > limit:
        warnings.warn(f"the text has {len(token_ids)} tokens; only the first {limit} are classified")
        token_ids = token_ids[:limit]
    model.eval()
    logits = model(torch.tensor([token_ids], device=device))[0, -1]
    probabilities = torch.softmax(logits, dim=-1)
    best = probabilities.argmax().item()
    return labels[best], probabilities[best].item()


# 04_finetune_classify.ipynb, cell 83 (section "10. Optional: LoRA")
class LoRALayer(nn.Module):
    """The low-rank update x -> (alpha / rank) * x A B."""

    def __init__(self, in_features, out_features, rank, alpha):
        super().__init__()
        self.A = nn.Parameter(torch.empty(in_features, rank))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))  # as nn.Linear initialises its weight
        self.B = nn.Parameter(torch.zeros(rank, out_features))  # zero: no change at the start
        self.scaling = alpha / rank

    def forward(self, x):
        return self.scaling * (x @ self.A @ self.B)


class LinearWithLoRA(nn.Module):
    """A frozen nn.Linear plus a trainable LoRA update."""

    def __init__(self, linear, rank, alpha):
        super().__init__()
        self.linear = linear
        self.lora = LoRALayer(linear.in_features, linear.out_features, rank, alpha)
        for parameter in self.linear.parameters():
            parameter.requires_grad = False

    def forward(self, x):
        return self.linear(x) + self.lora(x)


def add_lora(model, rank, alpha, train_head=True):
    """Freeze the model and wrap every nn.Linear inside its transformer blocks with LoRA.

    train_head: keep the output head trainable (a new classification head has no pretrained weights to keep).
    """
    for parameter in model.parameters():
        parameter.requires_grad = False
    for block in model.blocks:
        for parent in list(block.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.Linear):
                    setattr(parent, name, LinearWithLoRA(child, rank, alpha))
    for parameter in model.out_head.parameters():
        parameter.requires_grad = train_head
    return model
