# Generated from 01_architecture.ipynb; edit the notebook, then regenerate: python tools/export_package.py
"""The definitions of 01_architecture.ipynb, for later notebooks, the tests and the benchmarks.

Each part below is one exported cell of the notebook, headed by the cell's number (counted from 0,
markdown cells included) and its section.
"""


__all__ = [
    "GPT2_TOKENIZER_FILES", "load_gpt2_tokenizer", "bytes_to_unicode", "GPT2_SPLIT_PATTERN", "merge_pair",
    "BytePairTokenizer", "learn_bpe_merges", "SlidingWindowDataset", "create_dataloader", "SelfAttention",
    "CausalAttention", "MultiHeadAttention", "CausalSelfAttention", "load_mha_into_fused",
    "milliseconds_per_call", "LayerNorm", "GELU", "FeedForward", "DeepStack", "weight_gradients", "GPT2_PRESETS",
    "GPTConfig", "TransformerBlock", "GPTModel", "count_parameters", "parameter_count", "flops_per_token",
    "kv_cache_bytes_per_token", "TINY_CONFIG", "generate_greedy", "attention_weights", "plot_attention_heads",
]


# 01_architecture.ipynb, cell 5 (section "Setup")
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import regex
import tiktoken
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset


# 01_architecture.ipynb, cell 8 (section "1. Tokens")
from gpt2_support.catalogue import TOKENIZER_SHA256  # the two files' SHA-256, kept with the downloader's hashes
from gpt2_support.files import atomic_write_path  # write beside the file, then rename


# tiktoken's download URL and expected SHA-256 for each of GPT-2's two tokenizer files.
GPT2_TOKENIZER_FILES = {
    name: (f"https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/{name}", sha256)
    for name, sha256 in TOKENIZER_SHA256.items()
}


def load_gpt2_tokenizer(tokenizer_dir="data/gpt2-tokenizer", cache_dir=".cache/tiktoken"):
    """Return tiktoken's "gpt2" encoding, built from local files, with no network access.

    Copies encoder.json and vocab.bpe from `tokenizer_dir` into tiktoken's cache, TIKTOKEN_CACHE_DIR
    (set to `cache_dir` unless you have set it yourself). After this call, plain
    tiktoken.get_encoding("gpt2") works offline too.
    """
    if os.environ.get("TIKTOKEN_CACHE_DIR") == "":
        raise ValueError("TIKTOKEN_CACHE_DIR is set to '', which turns tiktoken's cache off; unset it.")
    cache = Path(os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(Path(cache_dir).resolve())))
    cache.mkdir(parents=True, exist_ok=True)
    for file_name, (url, expected_sha256) in GPT2_TOKENIZER_FILES.items():
        source = Path(tokenizer_dir) / file_name
        if not source.is_file():
            raise FileNotFoundError(f"{source} is missing: run from the repository's top folder, "
                                    "or pass tokenizer_dir=<folder with encoder.json and vocab.bpe>.")
        contents = source.read_bytes()
        if hashlib.sha256(contents).hexdigest() != expected_sha256:
            raise ValueError(f"{source} is not OpenAI's file (SHA-256 mismatch); restore it with "
                             f"`git checkout -- {tokenizer_dir}`.")
        cached = cache / hashlib.sha1(url.encode()).hexdigest()
        if not cached.is_file() or hashlib.sha256(cached.read_bytes()).hexdigest() != expected_sha256:
            with atomic_write_path(cached) as partial:
                partial.write_bytes(contents)
    return tiktoken.get_encoding("gpt2")


# 01_architecture.ipynb, cell 19 (section "GPT-2's tokenizer, written out")
def bytes_to_unicode():
    """GPT-2's table from each byte value (0-255) to the printable character that stands for it."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, shifted = {}, 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:  # not printable: the next unused character from U+0100 on
            table[byte] = chr(256 + shifted)
            shifted += 1
    return table


# GPT-2's pre-tokenisation (OpenAI's encoder.py): contraction endings; letters, digits or other symbols,
# each run with at most one space before it; whitespace, where "\s+(?!\S)" stops before the last
# whitespace character of a run that a word follows, so a final space joins that word.
GPT2_SPLIT_PATTERN = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


# 01_architecture.ipynb, cell 22 (section "GPT-2's tokenizer, written out")
def merge_pair(symbols, pair):
    """The symbols with each occurrence of the adjacent pair joined into one, scanning left to right:
    in ("a", "a", "a") the pair ("a", "a") is joined once, giving ("aa", "a")."""
    merged, index = [], 0
    while index < len(symbols):
        if tuple(symbols[index:index + 2]) == pair:
            merged.append(pair[0] + pair[1])
            index += 2
        else:
            merged.append(symbols[index])
            index += 1
    return tuple(merged)


class BytePairTokenizer:
    """GPT-2's byte-level BPE, from encoder.json (token -> id) and vocab.bpe (the merges, in rank order)."""

    def __init__(self, encoder, merges):
        self.encoder = encoder
        self.decoder = {token_id: token for token, token_id in encoder.items()}
        self.merge_rank = {pair: rank for rank, pair in enumerate(merges)}
        self.byte_to_char = bytes_to_unicode()
        self.char_to_byte = {char: byte for byte, char in self.byte_to_char.items()}
        self.cache = {}

    @classmethod
    def from_files(cls, tokenizer_dir="data/gpt2-tokenizer"):
        folder = Path(tokenizer_dir)
        encoder = json.loads((folder / "encoder.json").read_text(encoding="utf-8"))
        lines = (folder / "vocab.bpe").read_text(encoding="utf-8").split("\n")
        merges = [tuple(line.split(" ")) for line in lines[1:] if line]  # line 0 is a version comment
        return cls(encoder, merges)

    def merge_piece(self, piece):
        """The tokens of one pre-tokenised piece (a string of byte characters)."""
        if piece not in self.cache:
            symbols = tuple(piece)
            while len(symbols) > 1:
                pairs = set(zip(symbols, symbols[1:]))
                best = min(pairs, key=lambda pair: self.merge_rank.get(pair, math.inf))
                if best not in self.merge_rank:
                    break  # no adjacent pair is a listed merge
                symbols = merge_pair(symbols, best)
            self.cache[piece] = symbols  # a tuple: callers cannot change the cached result
        return self.cache[piece]

    def encode(self, text):
        ids = []
        for piece in GPT2_SPLIT_PATTERN.findall(text):
            chars = "".join(self.byte_to_char[byte] for byte in piece.encode("utf-8"))
            ids.extend(self.encoder[token] for token in self.merge_piece(chars))
        return ids

    def decode(self, ids):
        chars = "".join(self.decoder[token_id] for token_id in ids)
        return bytes(self.char_to_byte[char] for char in chars).decode("utf-8", errors="replace")


# 01_architecture.ipynb, cell 26 (section "Learning the merges")
def learn_bpe_merges(text, num_merges):
    """Learn byte-level BPE merges from text: (merges in order, token count of the text after each merge)."""
    byte_to_char = bytes_to_unicode()
    piece_counts = {}
    for piece in GPT2_SPLIT_PATTERN.findall(text):
        symbols = tuple(byte_to_char[byte] for byte in piece.encode("utf-8"))
        piece_counts[symbols] = piece_counts.get(symbols, 0) + 1
    merges, token_counts = [], [sum(len(symbols) * count for symbols, count in piece_counts.items())]
    for _ in range(num_merges):
        pair_counts = {}
        for symbols, count in piece_counts.items():
            for pair in zip(symbols, symbols[1:]):
                pair_counts[pair] = pair_counts.get(pair, 0) + count
        if not pair_counts:
            break  # every piece is a single symbol
        # The most frequent pair; among equals, the first in code-point order. (Overlapping occurrences,
        # as of ("a", "a") in "aaa", all count here, though merge_pair can join only one of them.)
        best = min(pair_counts, key=lambda pair: (-pair_counts[pair], pair))
        merges.append(best)
        merged_counts = {}
        for symbols, count in piece_counts.items():
            merged = merge_pair(symbols, best)
            merged_counts[merged] = merged_counts.get(merged, 0) + count
        piece_counts = merged_counts
        token_counts.append(sum(len(symbols) * count for symbols, count in piece_counts.items()))
    return merges, token_counts


# 01_architecture.ipynb, cell 33 (section "Next-token prediction: inputs and targets")
class SlidingWindowDataset(Dataset):
    """Next-token prediction examples cut from one token sequence.

    Example i is the window of `max_length` tokens starting at i * stride, and its target: the same
    window moved one token to the right, so targets[t] is the token that follows inputs[t].
    """

    def __init__(self, token_ids, max_length, stride):
        if max_length < 1 or stride < 1:
            raise ValueError(f"max_length and stride must be at least 1, got {max_length} and {stride}")
        token_ids = torch.as_tensor(token_ids, dtype=torch.long)
        if len(token_ids) < max_length + 1:
            raise ValueError(f"{len(token_ids)} tokens are too few for one window of max_length={max_length} "
                             "(it needs max_length + 1); use more text or a smaller max_length")
        self.inputs = token_ids[:-1].unfold(0, max_length, stride)
        self.targets = token_ids[1:].unfold(0, max_length, stride)

    def __len__(self):
        return len(self.inputs)

    def __getitem__(self, index):
        return self.inputs[index], self.targets[index]


def create_dataloader(text, tokenizer, batch_size=4, max_length=256, stride=128,
                      shuffle=True, drop_last=True, num_workers=0):
    """Tokenize `text` and serve SlidingWindowDataset windows in batches of (inputs, targets)."""
    dataset = SlidingWindowDataset(tokenizer.encode(text), max_length, stride)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle,
                      drop_last=drop_last, num_workers=num_workers)


# 01_architecture.ipynb, cell 51 (section "3.2 Trainable queries, keys and values")
class SelfAttention(nn.Module):
    """Self-attention over all tokens (no mask yet): softmax(Q Kᵀ / √d_k) V."""

    def __init__(self, d_in, d_out, qkv_bias=False):
        super().__init__()
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)

    def forward(self, x):
        queries, keys, values = self.W_query(x), self.W_key(x), self.W_value(x)
        scores = queries @ keys.transpose(-2, -1)
        weights = torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1)
        return weights @ values


# 01_architecture.ipynb, cell 61 (section "3.5 A causal attention module")
class CausalAttention(nn.Module):
    """Single-head causal self-attention with dropout on the attention weights."""

    def __init__(self, d_in, d_out, context_length, drop_rate, qkv_bias=False):
        super().__init__()
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.dropout = nn.Dropout(drop_rate)
        causal_mask = torch.triu(torch.ones(context_length, context_length, dtype=torch.bool), diagonal=1)
        self.register_buffer("causal_mask", causal_mask, persistent=False)

    def forward(self, x):
        batch, n_tokens, d_in = x.shape
        queries, keys, values = self.W_query(x), self.W_key(x), self.W_value(x)
        scores = queries @ keys.transpose(1, 2)  # (batch, n_tokens, n_tokens)
        scores = scores.masked_fill(self.causal_mask[:n_tokens, :n_tokens], float("-inf"))
        weights = self.dropout(torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1))
        return weights @ values


# 01_architecture.ipynb, cell 64 (section "3.6 Multi-head attention")
class MultiHeadAttention(nn.Module):
    """Multi-head causal self-attention, written out step by step."""

    def __init__(self, d_in, d_out, context_length, drop_rate, n_heads, qkv_bias=False):
        super().__init__()
        if d_out % n_heads != 0:
            raise ValueError(f"d_out ({d_out}) must be divisible by n_heads ({n_heads})")
        self.n_heads, self.head_dim = n_heads, d_out // n_heads
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.out_proj = nn.Linear(d_out, d_out)
        self.dropout = nn.Dropout(drop_rate)
        causal_mask = torch.triu(torch.ones(context_length, context_length, dtype=torch.bool), diagonal=1)
        self.register_buffer("causal_mask", causal_mask, persistent=False)

    def forward(self, x):
        batch, n_tokens, d_in = x.shape
        # (batch, n_tokens, d_out) -> (batch, n_tokens, n_heads, head_dim) -> (batch, n_heads, n_tokens, head_dim)
        queries = self.W_query(x).view(batch, n_tokens, self.n_heads, self.head_dim).transpose(1, 2)
        keys = self.W_key(x).view(batch, n_tokens, self.n_heads, self.head_dim).transpose(1, 2)
        values = self.W_value(x).view(batch, n_tokens, self.n_heads, self.head_dim).transpose(1, 2)

        scores = queries @ keys.transpose(2, 3)  # (batch, n_heads, n_tokens, n_tokens): every head at once
        scores = scores.masked_fill(self.causal_mask[:n_tokens, :n_tokens], float("-inf"))
        weights = self.dropout(torch.softmax(scores / self.head_dim ** 0.5, dim=-1))

        context = weights @ values  # (batch, n_heads, n_tokens, head_dim)
        # Put the heads side by side again: (batch, n_tokens, n_heads * head_dim)
        context = context.transpose(1, 2).contiguous().view(batch, n_tokens, -1)
        return self.out_proj(context)


# 01_architecture.ipynb, cell 68 (section "3.7 The efficient form used from here on")
class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention as GPTModel uses it: a fused QKV projection and PyTorch's
    scaled_dot_product_attention. Same result as MultiHeadAttention on the same weights."""

    def __init__(self, emb_dim, n_heads, drop_rate=0.0, qkv_bias=False):
        super().__init__()
        if emb_dim % n_heads != 0:
            raise ValueError(f"emb_dim ({emb_dim}) must be divisible by n_heads ({n_heads})")
        self.n_heads, self.head_dim, self.drop_rate = n_heads, emb_dim // n_heads, drop_rate
        self.qkv = nn.Linear(emb_dim, 3 * emb_dim, bias=qkv_bias)  # OpenAI's checkpoint: attn/c_attn
        self.out_proj = nn.Linear(emb_dim, emb_dim)                 # OpenAI's checkpoint: attn/c_proj

    def split_heads(self, x):
        """(batch, n_tokens, emb_dim) -> (batch, n_heads, n_tokens, head_dim)"""
        batch, n_tokens, _ = x.shape
        return x.view(batch, n_tokens, self.n_heads, self.head_dim).transpose(1, 2)

    def forward(self, x):
        batch, n_tokens, emb_dim = x.shape
        # The last axis of the fused output is [queries | keys | values], emb_dim each.
        queries, keys, values = map(self.split_heads, self.qkv(x).split(emb_dim, dim=-1))
        context = F.scaled_dot_product_attention(  # (batch, n_heads, n_tokens, head_dim)
            queries, keys, values, dropout_p=self.drop_rate if self.training else 0.0, is_causal=True
        )
        # Put the heads side by side again, then mix them: (batch, n_tokens, emb_dim)
        return self.out_proj(context.transpose(1, 2).reshape(batch, n_tokens, emb_dim))


# 01_architecture.ipynb, cell 70 (section "3.7 The efficient form used from here on")
@torch.no_grad()
def load_mha_into_fused(mha, fused):
    """Copy a MultiHeadAttention's weights into a CausalSelfAttention of the same size."""
    projections = [mha.W_query, mha.W_key, mha.W_value]
    fused.qkv.weight.copy_(torch.cat([p.weight for p in projections], dim=0))
    if fused.qkv.bias is not None:
        fused.qkv.bias.copy_(torch.cat([p.bias for p in projections], dim=0))
    fused.out_proj.load_state_dict(mha.out_proj.state_dict())
    return fused


# 01_architecture.ipynb, cell 73 (section "3.7 The efficient form used from here on")
def milliseconds_per_call(module, inputs, repeats=5):
    """Mean wall-clock milliseconds of module(inputs) without gradients, after one warm-up call."""
    with torch.inference_mode():
        module(inputs)  # warm-up
        start = time.perf_counter()
        for _ in range(repeats):
            module(inputs)
    return (time.perf_counter() - start) / repeats * 1000


# 01_architecture.ipynb, cell 76 (section "4.1 Layer normalisation")
class LayerNorm(nn.Module):
    """Layer normalisation over the last dimension, as in GPT-2 (biased variance, eps 1e-5)."""

    def __init__(self, emb_dim, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(emb_dim))  # OpenAI's checkpoint: ln_*/g
        self.bias = nn.Parameter(torch.zeros(emb_dim))   # OpenAI's checkpoint: ln_*/b

    def forward(self, x):
        mean = x.mean(dim=-1, keepdim=True)
        variance = x.var(dim=-1, keepdim=True, unbiased=False)
        return self.weight * (x - mean) / torch.sqrt(variance + self.eps) + self.bias


# 01_architecture.ipynb, cell 79 (section "4.2 GELU")
class GELU(nn.Module):
    """GELU activation, tanh approximation (as in GPT-2)."""

    def forward(self, x):
        return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


# 01_architecture.ipynb, cell 82 (section "4.3 The feed-forward network")
class FeedForward(nn.Module):
    """Position-wise feed-forward network: expand 4x, GELU, project back."""

    def __init__(self, emb_dim):
        super().__init__()
        self.expand = nn.Linear(emb_dim, 4 * emb_dim)   # OpenAI's checkpoint: mlp/c_fc
        self.gelu = nn.GELU(approximate="tanh")
        self.project = nn.Linear(4 * emb_dim, emb_dim)  # OpenAI's checkpoint: mlp/c_proj

    def forward(self, x):
        return self.project(self.gelu(self.expand(x)))


# 01_architecture.ipynb, cell 85 (section "4.4 Shortcut connections")
class DeepStack(nn.Module):
    """A stack of Linear + GELU layers, with or without shortcut connections (a demonstration only)."""

    def __init__(self, width, depth, use_shortcut):
        super().__init__()
        self.use_shortcut = use_shortcut
        self.layers = nn.ModuleList(nn.Sequential(nn.Linear(width, width), GELU()) for _ in range(depth))

    def forward(self, x):
        for layer in self.layers:
            x = x + layer(x) if self.use_shortcut else layer(x)
        return x


def weight_gradients(model, x):
    """Mean absolute gradient of each layer's weight for the loss mean((model(x) - 0)²)."""
    model.zero_grad()
    F.mse_loss(model(x), torch.zeros_like(x)).backward()
    return [layer[0].weight.grad.abs().mean().item() for layer in model.layers]


# 01_architecture.ipynb, cell 89 (section "4.5 The model's configuration")
from gpt2_support.catalogue import KNOWN_HPARAMS  # hparams.json of each size, as OpenAI published it

# Named as OpenAI names the sizes (and the folders of their checkpoints): GPT-2 small, medium, large, XL.
GPT2_PRESETS = {size: dict(emb_dim=hparams["n_embd"], n_layers=hparams["n_layer"], n_heads=hparams["n_head"])
                for size, hparams in KNOWN_HPARAMS.items()}


@dataclass
class GPTConfig:
    vocab_size: int = 50257      # GPT-2's BPE vocabulary
    context_length: int = 1024   # longest input: the number of position embeddings
    emb_dim: int = 768           # width of every token vector
    n_heads: int = 12            # attention heads per block
    n_layers: int = 12           # transformer blocks
    drop_rate: float = 0.1       # dropout on embeddings, attention weights and residual branches (GPT's 0.1)
    qkv_bias: bool = True        # biases on the query/key/value projections, as in OpenAI's checkpoints
    tie_weights: bool = True     # output head shares the token-embedding matrix, as in GPT-2

    def __post_init__(self):
        for name in ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.emb_dim % self.n_heads != 0:
            raise ValueError(f"emb_dim ({self.emb_dim}) must be divisible by n_heads ({self.n_heads})")
        if not 0.0 <= self.drop_rate < 1.0:
            raise ValueError(f"drop_rate must be in [0, 1), got {self.drop_rate}")

    @classmethod
    def from_preset(cls, name, **overrides):
        """The configuration of one of OpenAI's GPT-2 sizes, with any field overridden."""
        if name not in GPT2_PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(GPT2_PRESETS)}")
        return cls(**{**GPT2_PRESETS[name], **overrides})


# 01_architecture.ipynb, cell 91 (section "4.6 The transformer block")
class TransformerBlock(nn.Module):
    """Pre-LN GPT-2 block: x + attention(norm(x)), then x + feed_forward(norm(x))."""

    def __init__(self, cfg):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.emb_dim, eps=1e-5)  # OpenAI's checkpoint: ln_1
        self.attn = CausalSelfAttention(cfg.emb_dim, cfg.n_heads, cfg.drop_rate, cfg.qkv_bias)
        self.norm2 = nn.LayerNorm(cfg.emb_dim, eps=1e-5)  # OpenAI's checkpoint: ln_2
        self.ff = FeedForward(cfg.emb_dim)
        self.drop_resid = nn.Dropout(cfg.drop_rate)

    def forward(self, x):
        x = x + self.drop_resid(self.attn(self.norm1(x)))
        x = x + self.drop_resid(self.ff(self.norm2(x)))
        return x


# 01_architecture.ipynb, cell 94 (section "5. The GPT model")
class GPTModel(nn.Module):
    """GPT-2: embeddings, n_layers pre-LN transformer blocks, final layer norm, output head."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.emb_dim)        # OpenAI's checkpoint: wte
        self.pos_emb = nn.Embedding(cfg.context_length, cfg.emb_dim)    # OpenAI's checkpoint: wpe
        self.drop_emb = nn.Dropout(cfg.drop_rate)
        self.blocks = nn.ModuleList(TransformerBlock(cfg) for _ in range(cfg.n_layers))  # h0, h1, ...
        self.final_norm = nn.LayerNorm(cfg.emb_dim, eps=1e-5)           # OpenAI's checkpoint: ln_f
        self.out_head = nn.Linear(cfg.emb_dim, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            self.out_head.weight = self.tok_emb.weight  # one shared matrix
        self.apply(self._init_weights)
        for name, param in self.named_parameters():
            if name.endswith(("attn.out_proj.weight", "ff.project.weight")):
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layers))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, token_ids):
        batch, n_tokens = token_ids.shape
        if n_tokens > self.cfg.context_length:
            raise ValueError(f"{n_tokens} tokens exceed the context length ({self.cfg.context_length}); "
                             f"keep only the last {self.cfg.context_length} tokens")
        positions = torch.arange(n_tokens, device=token_ids.device)
        x = self.drop_emb(self.tok_emb(token_ids) + self.pos_emb(positions))
        for block in self.blocks:
            x = block(x)
        return self.out_head(self.final_norm(x))  # logits: (batch, n_tokens, vocab_size)


# 01_architecture.ipynb, cell 96 (section "5.1 How many parameters?")
def count_parameters(model):
    return sum(param.numel() for param in model.parameters())


def parameter_count(cfg):
    """Parameters of GPTModel(cfg), counted on the meta device (no memory allocated)."""
    with torch.device("meta"):
        return count_parameters(GPTModel(cfg))


# 01_architecture.ipynb, cell 100 (section "What a token costs: computation and cache memory")
def flops_per_token(cfg, n_tokens, training=False):
    """Model FLOPs per token of GPTModel(cfg) when each token attends to n_tokens positions: 2 per weight of
    every linear layer (the output head included) and 4 x n_layers x n_tokens x emb_dim for attention's two
    products; a training step (forward and backward) costs 3 times a forward pass."""
    with torch.device("meta"):
        model = GPTModel(cfg)
    linear_weights = sum(module.weight.numel() for module in model.modules() if isinstance(module, nn.Linear))
    forward = 2 * linear_weights + 4 * cfg.n_layers * n_tokens * cfg.emb_dim
    return 3 * forward if training else forward


def kv_cache_bytes_per_token(cfg, bytes_per_value=4):
    """The memory a key/value cache holds per token: a key and a value of emb_dim numbers in every layer."""
    return 2 * cfg.n_layers * cfg.emb_dim * bytes_per_value


# 01_architecture.ipynb, cell 107 (section "5.2 A forward pass")
TINY_CONFIG = GPTConfig(context_length=64, emb_dim=64, n_heads=4, n_layers=2)  # the smoke profile's model


# 01_architecture.ipynb, cell 115 (section "5.3 Generating text")
@torch.inference_mode()
def generate_greedy(model, token_ids, max_new_tokens, context_length=None):
    """Append `max_new_tokens` tokens to `token_ids` (batch, n_tokens), each the most likely next token."""
    if token_ids.shape[-1] == 0:
        raise ValueError("the prompt is empty: give at least one token")
    context_length = context_length or model.cfg.context_length
    for _ in range(max_new_tokens):
        logits = model(token_ids[:, -context_length:])  # crop to the most recent tokens
        next_token = logits[:, -1].argmax(dim=-1, keepdim=True)
        token_ids = torch.cat([token_ids, next_token], dim=1)
    return token_ids


# 01_architecture.ipynb, cell 120 (section "6. A look inside: attention heatmaps")
@torch.no_grad()
def attention_weights(attn, x):
    """Attention weights (batch, n_heads, n_tokens, n_tokens) of a CausalSelfAttention on input x."""
    n_tokens, emb_dim = x.shape[-2:]
    queries, keys, _ = map(attn.split_heads, attn.qkv(x).split(emb_dim, dim=-1))
    scores = queries @ keys.transpose(-2, -1) / math.sqrt(attn.head_dim)
    causal_mask = torch.triu(torch.ones(n_tokens, n_tokens, dtype=torch.bool, device=x.device), diagonal=1)
    return torch.softmax(scores.masked_fill(causal_mask, float("-inf")), dim=-1)


def plot_attention_heads(weights, tokens, title, columns=4):
    """One heatmap per head: row = the token attending, column = the token attended to. The entries the
    causal mask hides (above the diagonal) are drawn hatched grey, apart from the weights' colour scale, so
    that they do not look like weights near 0."""
    n_heads, n_tokens = weights.shape[0], weights.shape[-1]
    rows = math.ceil(n_heads / columns)
    future = torch.ones(n_tokens, n_tokens, dtype=torch.bool).triu(1)
    # A NaN entry takes the colour map's "bad" colour, transparent here: the axes' hatched grey shows through.
    colormap = plt.get_cmap("viridis").with_extremes(bad=(0, 0, 0, 0))
    figure, axes = plt.subplots(rows, columns, figsize=(3 * columns + 1, 3 * rows), squeeze=False,
                                layout="constrained")
    for axis in axes.flat[n_heads:]:
        axis.axis("off")
    for head, axis in zip(range(n_heads), axes.flat):
        shown = weights[head].float().cpu().masked_fill(future, math.nan)
        image = axis.imshow(shown, cmap=colormap, vmin=0, vmax=1)
        axis.set_facecolor("lightgrey")
        axis.patch.set_hatch("///")
        axis.patch.set_edgecolor("grey")  # the hatch's colour
        axis.set_title(f"head {head}", fontsize=9)
        # Token labels and axis names on the left column (queries) and under the lowest plot of each
        # column (keys).
        first_column, lowest_row = head % columns == 0, head + columns >= n_heads
        axis.set_yticks(range(len(tokens)), tokens if first_column else [], fontsize=7)
        axis.set_xticks(range(len(tokens)), tokens if lowest_row else [], fontsize=7, rotation=90)
        if first_column:
            axis.set_ylabel("query (attending)")
        if lowest_row:
            axis.set_xlabel("key (attended to)")
    figure.colorbar(image, ax=axes, shrink=0.6, label="attention weight")
    masked = plt.Rectangle((0, 0), 1, 1, facecolor="lightgrey", edgecolor="grey", hatch="///")
    figure.legend([masked], ["masked: the future, which the causal mask hides (weight 0)"],
                  loc="outside lower right")
    figure.suptitle(title)
    plt.show()
