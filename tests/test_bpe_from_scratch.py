"""01's byte-level BPE written out (BytePairTokenizer, learn_bpe_merges) against tiktoken's GPT-2 encoding.

The notebook itself asserts equality on the corpora; these tests add thousands of random Unicode strings
(seeded), the round trip, and what learning merges must do on a text small enough to check by hand.
"""

import json
import random

import pytest

from conftest import REPO_ROOT
from gpt2_from_scratch.architecture import (GPT2_SPLIT_PATTERN, BytePairTokenizer, bytes_to_unicode,
                                            learn_bpe_merges, load_gpt2_tokenizer, merge_pair)


@pytest.fixture(scope="module")
def tokenizers():
    return (BytePairTokenizer.from_files(REPO_ROOT / "data" / "gpt2-tokenizer"),
            load_gpt2_tokenizer(REPO_ROOT / "data" / "gpt2-tokenizer", REPO_ROOT / ".cache" / "tiktoken"))


def random_text(rng):
    """A string mixing ASCII, Latin, whitespace, CJK, emoji, joiners and contractions."""
    alphabets = [lambda: chr(rng.randint(32, 126)), lambda: chr(rng.randint(0xA0, 0x2FF)),
                 lambda: rng.choice(" \t\n\r\u00a0\u2009"), lambda: chr(rng.randint(0x4E00, 0x4FFF)),
                 lambda: chr(rng.randint(0x1F300, 0x1FAFF)), lambda: rng.choice(["\u200d", "\ufe0f", "\u0301"]),
                 lambda: rng.choice(["'s", "'T", "'ll", "'re", "n't", "<|endoftext|>"]),
                 lambda: chr(rng.randint(0, 31))]
    return "".join(rng.choice(alphabets)() for _ in range(rng.randint(0, 30)))


def test_same_ids_as_tiktoken_on_random_unicode(tokenizers):
    ours, theirs = tokenizers
    rng = random.Random(2026)
    for _ in range(3000):
        text = random_text(rng)
        assert ours.encode(text) == theirs.encode(text, disallowed_special=()), repr(text)
        assert ours.decode(ours.encode(text)) == text, repr(text)


def test_same_ids_on_the_corpora(tokenizers):
    ours, theirs = tokenizers
    texts = [(REPO_ROOT / "data" / "the-verdict.txt").read_text(encoding="utf-8")]
    texts += [line.split("\t", 1)[1] for line in (REPO_ROOT / "data" / "sms_spam_collection" / "SMSSpamCollection")
              .read_text(encoding="utf-8").splitlines()]
    entries = json.loads((REPO_ROOT / "data" / "instruction-data.json").read_text(encoding="utf-8"))
    texts += [entry[field] for entry in entries for field in ("instruction", "input", "output")]
    for text in texts:
        assert ours.encode(text) == theirs.encode(text, disallowed_special=()), text[:80]


def test_the_byte_table_is_a_bijection_onto_printable_characters():
    table = bytes_to_unicode()
    assert sorted(table) == list(range(256)) and len(set(table.values())) == 256
    assert all(char.isprintable() and not char.isspace() for char in table.values())
    assert table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ" and table[ord("a")] == "a"
    assert sum(table[byte] == chr(byte) for byte in range(256)) == 188  # the visible Latin-1 bytes
    assert table[0] == "Ā" and table[173] == "Ń"  # the 68 others, in order, from U+0100


def test_pre_tokenisation_keeps_the_last_space_for_the_next_word():
    assert GPT2_SPLIT_PATTERN.findall("a  b") == ["a", " ", " b"]
    assert GPT2_SPLIT_PATTERN.findall("I'm DON'T") == ["I", "'m", " DON", "'", "T"]
    assert GPT2_SPLIT_PATTERN.findall("a \tb") == ["a", " ", "\t", "b"]  # only a space joins the word
    assert GPT2_SPLIT_PATTERN.findall("x  ") == ["x", "  "]  # no word follows: the run stays whole


def test_merge_pair_joins_left_to_right_without_overlap():
    assert merge_pair(("a", "a", "a"), ("a", "a")) == ("aa", "a")
    assert merge_pair(("a", "b", "a", "b"), ("a", "b")) == ("ab", "ab")
    assert merge_pair(("a", "b"), ("b", "a")) == ("a", "b")


def test_merges_are_applied_by_rank_not_by_position():
    # With the merges ("b","c") before ("a","b"), "abc" must become a + bc, though a+b comes first in the text.
    encoder = {"a": 0, "b": 1, "c": 2, "bc": 3, "ab": 4}
    tokenizer = BytePairTokenizer(encoder, [("b", "c"), ("a", "b")])
    assert tokenizer.encode("abc") == [0, 3]
    reversed_ranks = BytePairTokenizer(encoder, [("a", "b"), ("b", "c")])
    assert reversed_ranks.encode("abc") == [4, 2]


def test_learning_merges_on_a_text_checked_by_hand():
    # One piece "aaabdaaabac": aa counted 4 times (overlapping, in "aaa"), ab twice; merging aa joins 2.
    merges, counts = learn_bpe_merges("aaabdaaabac", num_merges=3)
    assert merges[0] == ("a", "a")
    assert merges[1] == ("a", "b")  # ("a","b") and ("aa","a") both occur twice; "a" sorts before "aa"
    assert counts[0] == 11 and counts[1] == 9 and counts[2] == 7
    assert all(later <= earlier for earlier, later in zip(counts, counts[1:]))


def test_learning_stops_when_nothing_is_left_to_merge():
    merges, counts = learn_bpe_merges("ab ab", num_merges=10)
    # pieces "ab" and " ab": a+b (twice), then the space and "ab"; then every piece is one symbol
    assert merges == [("a", "b"), ("Ġ", "ab")] and counts == [5, 3, 2]
