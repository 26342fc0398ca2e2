"""benchmarks/bench.py runs end to end (on a tiny model) and its table says what it measured.

The figures themselves are not tested: they depend on the machine. What is tested is that every
section runs on the notebooks' code, that the generation benchmark's correctness check holds (at batch 1
in fp32 generate, generate_batch and Hugging Face's generate give the same tokens), that the ratios and
shares of the machine's limits are computed from the right figures, and that --docs replaces the block
between the bench markers in docs/speed.md and nothing else (never the README).
"""

import pytest

from conftest import REPO_ROOT, import_benchmark

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def bench():
    return import_benchmark("bench")


def test_smoke_run_measures_every_section(bench, capsys):
    rows = bench.main(["--smoke", "--sections", "training", "generation", "evaluation", "loading"])
    measured = {(row["section"], row["precision"], row["what"]) for row in rows}
    for what in ("ours", "Hugging Face", "ours, freed memory reused", "Hugging Face, freed memory reused"):
        assert ("training", "fp32", what) in measured  # (the last two: glibc only, as the CI's Linux has)
    for what in ("before: generate, cache by concatenation", "after: generate_batch", "Hugging Face generate"):
        assert ("generation", "fp32", f"batch 1, {what}") in measured
    for what in ("after: generate_batch", "Hugging Face generate"):
        assert ("generation", "fp32", f"batch 8, {what}") in measured
    for what in ("before: generate, one prompt at a time", "after: generate_batch, 8 at a time"):
        assert ("evaluation", "fp32", f"tiny, {what}") in measured
    assert {row["what"] for row in rows if row["section"] == "loading"} == {"ours: read + build + copy",
                                                                           "ours: peak memory added"}
    assert all(row["value"] > 0 for row in rows)
    table = capsys.readouterr().out
    for text in ("x Hugging Face", "x before", "x as fast as before", "of matmul", "of matvec", "Measured",
                 "The machine's limits, measured in the same run"):
        assert text in table
    assert (REPO_ROOT / "outputs" / "benchmarks" / "latest-smoke.md").read_text().strip() == table.strip()


def test_the_evaluation_emulates_05s_test_prompts_and_response_lengths(bench):
    prompts, n_new = import_benchmark("bench_generation").evaluation_prompts(110)
    assert len(prompts) == len(n_new) == 110
    assert all(prompt.dim() == 1 and len(prompt) > 0 for prompt in prompts)
    assert all(2 <= n <= 256 for n in n_new)  # at least one token and the end token


def test_the_docs_block_is_replaced_and_nothing_else(bench, tmp_path):
    page = tmp_path / "speed.md"
    page.write_text(f"intro\n{bench.BENCH_START}\nold table\n{bench.BENCH_END}\nrest\n")
    bench.update_docs("| new | table |", page)
    assert page.read_text() == f"intro\n{bench.BENCH_START}\n| new | table |\n{bench.BENCH_END}\nrest\n"
    page.write_text("no markers\n")
    with pytest.raises(ValueError, match="bench:start"):
        bench.update_docs("| table |", page)
    assert page.read_text() == "no markers\n" and [path.name for path in tmp_path.iterdir()] == ["speed.md"]


def test_a_missing_docs_page_is_named_with_the_markers_before_anything_is_measured(bench, tmp_path, monkeypatch,
                                                                                  capsys):
    missing = tmp_path / "docs" / "speed.md"
    with pytest.raises(ValueError, match=r"speed\.md does not exist: create it \(the table goes between a line "
                                         r"<!-- bench:start --> and a line <!-- bench:end -->\)"):
        bench.update_docs("| table |", missing)
    assert not missing.exists()
    monkeypatch.setattr(bench, "SPEED_PAGE", missing)
    monkeypatch.setattr(bench, "time_training", lambda *args: pytest.fail("measured before checking the page"))
    with pytest.raises(SystemExit):
        bench.main(["--docs", "--sections", "training"])
    assert f"{missing} does not exist" in capsys.readouterr().err


def test_the_benchmark_writes_its_table_into_docs_not_the_readme(bench):
    assert bench.SPEED_PAGE == REPO_ROOT / "docs" / "speed.md"


def test_ratios_compare_like_with_like(bench):
    def row(section, precision, what, value):
        return {"section": section, "precision": precision, "what": what, "value": value}

    rows = [
        row("training", "fp32", "ours", 150.0),
        row("training", "fp32", "Hugging Face", 120.0),
        row("training", "bf16", "ours", 300.0),
        row("training", "bf16", "Hugging Face", 200.0),
        row("training", "bf16", "ours, freed memory reused", 450.0),
        row("training", "bf16", "Hugging Face, freed memory reused", 360.0),
        row("generation", "fp32", "batch 1, before: generate, cache by concatenation", 20.0),
        row("generation", "fp32", "batch 1, after: generate_batch", 40.0),
        row("generation", "fp32", "batch 1, Hugging Face generate", 25.0),
        row("generation", "fp32", "batch 8, after: generate_batch", 160.0),
        row("generation", "fp32", "batch 8, Hugging Face generate", 100.0),
        row("generation", "bf16 weights", "batch 1, after: generate_batch", 60.0),
        row("generation", "bf16 weights", "batch 1, Hugging Face generate", 30.0),
        row("generation", "bf16 weights", "batch 8, after: generate_batch", 300.0),
        row("generation", "bf16 weights", "batch 8, Hugging Face generate", 200.0),
        row("evaluation", "fp32", "124M, before: generate, one prompt at a time", 90.0),
        row("evaluation", "fp32", "124M, after: generate_batch, 8 at a time", 30.0),
        row("evaluation", "bf16 weights", "124M, after: generate_batch, 8 at a time", 20.0),
        row("evaluation", "fp32", "355M, after: generate_batch, 8 at a time", 60.0),  # its "before" not measured
    ]
    expected = {
        0: "1.25x Hugging Face",
        1: "",
        2: "1.50x Hugging Face, 2.00x our fp32",
        4: "1.25x Hugging Face (reusing too), 1.50x ours with the allocator as is",  # no fp32 row reusing
        5: "1.80x Hugging Face with the allocator as is",
        6: "",
        7: "1.60x Hugging Face, 2.00x before",
        8: "",
        9: "1.60x Hugging Face, 4.0x our fp32 at batch 1",
        11: "2.00x Hugging Face, 1.50x our fp32",
        13: "1.50x Hugging Face, 1.88x our fp32, 5.0x our bf16 weights at batch 1",
        15: "",
        16: "3.00x as fast as before",
        17: "4.50x as fast as before, 1.50x as fast as fp32",
        18: "",
    }
    for index, text in expected.items():
        assert bench.ratio_text(rows, rows[index]) == text, rows[index]["what"]


def test_shares_of_the_limit_divide_the_work_done_by_the_rate_of_the_precision(bench):
    limits = {"fp32": {"matmul GFLOP/s": 200.0, "matvec GB/s": 20.0, "matvec G weights/s": 5.0},
              "bf16": {"matmul GFLOP/s": 800.0, "matvec GB/s": 40.0, "matvec G weights/s": 20.0}}
    training = {"value": 100.0, "limit precision": "bf16", "flops per token": 2e9}  # 200 GFLOP/s of 800
    generation = {"value": 10.0, "limit precision": "fp32", "weight bytes per token": 5e8}  # 5 GB/s of 20
    assert bench.limit_share(training, limits) == "25% of matmul"
    assert bench.limit_share(generation, limits) == "25% of matvec"
    assert bench.limit_share(training | {"limit precision": "fp16"}, limits) == ""  # not measured
    assert bench.limit_share({"value": 1.0}, limits) == "" and bench.limit_share(generation, None) == ""


def test_the_operations_and_bytes_counted_are_those_of_the_linear_layers(bench):
    from gpt2_from_scratch.architecture import GPTConfig, GPTModel
    from gpt2_from_scratch.pretraining import bf16_weights

    cfg = GPTConfig(vocab_size=100, context_length=16, emb_dim=8, n_heads=2, n_layers=2, drop_rate=0.0)
    model = GPTModel(cfg)
    # per block: qkv 8 x 24, out_proj 8 x 8, feed-forward 8 x 32 and 32 x 8; the head (tied) 100 x 8, once
    count = 2 * (8 * 24 + 8 * 8 + 2 * 8 * 32) + 100 * 8
    assert bench.linear_weights(model) == (count, 4 * count)
    assert bench.linear_weights(bf16_weights(model)) == (count, 2 * count)


def test_machine_limits_count_the_operations_and_bytes_of_what_they_time(monkeypatch, nb02):
    """The rates' arithmetic, with every product taking exactly one second: an n x n matrix product is 2·n³
    operations, a matrix-vector product reads the matrix's weights, and their bytes (4 each in fp32, 2 in bf16)."""
    limits = import_benchmark("machine_limits")

    def one_second(function, device, repeats=10):
        return 1.0

    monkeypatch.setattr(limits, "fastest_seconds", one_second)
    monkeypatch.setattr(nb02, "fastest_seconds", one_second)  # the matrix product is 02's matmul_flops_per_second
    measured = limits.measure(size=10, rows=20, cols=30, repeats=1)
    assert measured["fp32"] == {"matmul GFLOP/s": 2000 / 1e9, "matvec GB/s": 20 * 30 * 4 / 1e9,
                                "matvec G weights/s": 20 * 30 / 1e9}
    assert measured["bf16"] == {"matmul GFLOP/s": 2000 / 1e9, "matvec GB/s": 20 * 30 * 2 / 1e9,
                                "matvec G weights/s": 20 * 30 / 1e9}


def test_machine_limits_run_on_small_products():
    limits = import_benchmark("machine_limits").measure(size=64, rows=256, cols=64, repeats=1)
    assert set(limits) == {"fp32", "bf16"}
    assert all(rate > 0 for rates in limits.values() for rate in rates.values())
