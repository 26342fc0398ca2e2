"""data/ holds byte-identical copies of the source files, and data/README.md documents each one."""

import hashlib
import json

import pytest

# The SHA-256 of each file as published with its provenance (shared/README.md); the two tokenizer
# hashes are also the ones tiktoken checks for its "gpt2" encoding.
EXPECTED_SHA256 = {
    "the-verdict.txt": "b41e41a68f0398a3154ae69e2e4c0e2694e17fe0d66730536837f1b01935b31f",
    "sms_spam_collection/SMSSpamCollection": "7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d",
    "instruction-data.json": "7e09a9af353722ca15c18bc580f093f9c39d3178335a75177319cb1e1d163944",
    "gpt2-tokenizer/encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    "gpt2-tokenizer/vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
}


@pytest.mark.parametrize("relative_path", sorted(EXPECTED_SHA256))
def test_data_file_is_byte_identical(repo_root, relative_path):
    path = repo_root / "data" / relative_path
    assert path.is_file(), f"{path} is missing"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == EXPECTED_SHA256[relative_path]


def test_data_readme_documents_every_file_and_hash(repo_root):
    readme = (repo_root / "data" / "README.md").read_text(encoding="utf-8")
    for relative_path, sha256 in EXPECTED_SHA256.items():
        assert f"`{relative_path}`" in readme, f"data/README.md does not describe {relative_path}"
        assert sha256 in readme, f"data/README.md does not give the SHA-256 of {relative_path}"
    for licence in ("public domain", "CC BY 4.0", "Apache-2.0", "modified MIT"):
        assert licence in readme


def test_data_contents_match_their_description(repo_root):
    data = repo_root / "data"
    assert len((data / "the-verdict.txt").read_text(encoding="utf-8")) == 20_479

    lines = (data / "sms_spam_collection" / "SMSSpamCollection").read_text(encoding="utf-8").splitlines()
    labels = [line.split("\t", 1)[0] for line in lines]
    assert (len(lines), labels.count("ham"), labels.count("spam")) == (5_574, 4_827, 747)

    records = json.loads((data / "instruction-data.json").read_text(encoding="utf-8"))
    assert len(records) == 1_100
    assert sum(record["input"] == "" for record in records) == 775
    assert all(set(record) == {"instruction", "input", "output"} for record in records)

    encoder = json.loads((data / "gpt2-tokenizer" / "encoder.json").read_text(encoding="utf-8"))
    assert len(encoder) == 50_257 and encoder["<|endoftext|>"] == 50_256
