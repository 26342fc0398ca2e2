"""benchmarks/bench.py runs end to end (on a tiny model) and its table says what it measured.

The figures themselves are not tested: they depend on the machine. What is tested is that every
section runs on the notebooks' code, that the generation benchmark's correctness check holds (ours with
and without cache and Hugging Face's generate give the same tokens), and that --docs replaces the block
between the bench markers in docs/speed.md and nothing else (never the README).
"""

import pytest

from conftest import REPO_ROOT, import_benchmark

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def bench():
    return import_benchmark("bench")


def test_smoke_run_measures_every_section(bench, capsys):
    rows = bench.main(["--smoke", "--sections", "training", "generation", "loading"])
    measured = {(row["section"], row["precision"], row["what"]) for row in rows}
    for what in ("ours", "Hugging Face"):
        assert ("training", "fp32", what) in measured
    for what in ("ours, no cache", "ours, KV cache", "Hugging Face generate"):
        assert ("generation", "fp32", what) in measured
    assert {row["what"] for row in rows if row["section"] == "loading"} == {"ours: read + build + copy",
                                                                           "ours: peak memory added"}
    assert all(row["value"] > 0 for row in rows)
    table = capsys.readouterr().out
    assert "x Hugging Face" in table and "x ours without cache" in table and "Measured" in table
    assert (REPO_ROOT / "outputs" / "benchmarks" / "latest-smoke.md").read_text().strip() == table.strip()


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
    rows = [
        {"section": "training", "precision": "fp32", "what": "ours", "value": 150.0},
        {"section": "training", "precision": "fp32", "what": "Hugging Face", "value": 120.0},
        {"section": "training", "precision": "bf16", "what": "ours", "value": 300.0},
        {"section": "training", "precision": "bf16", "what": "Hugging Face", "value": 200.0},
        {"section": "generation", "precision": "fp32", "what": "ours, no cache", "value": 4.0},
        {"section": "generation", "precision": "fp32", "what": "ours, KV cache", "value": 40.0},
        {"section": "generation", "precision": "fp32", "what": "Hugging Face generate", "value": 25.0},
    ]
    assert bench.ratio_text(rows, rows[0]) == "1.25x Hugging Face"
    assert bench.ratio_text(rows, rows[2]) == "1.50x Hugging Face, 2.00x our fp32"
    assert bench.ratio_text(rows, rows[5]) == "1.60x Hugging Face, 10.0x ours without cache"
    assert bench.ratio_text(rows, rows[1]) == ""


def test_machine_limits_count_the_operations_and_bytes_of_what_they_time(monkeypatch):
    """The rates' arithmetic, with every product taking exactly one second: an n x n matrix product is 2·n³
    operations, a matrix-vector product reads the matrix's bytes (4 each in fp32, 2 in bf16)."""
    limits = import_benchmark("machine_limits")
    monkeypatch.setattr(limits, "median_seconds", lambda function, repeats, device: 1.0)
    measured = limits.measure(size=10, rows=20, cols=30, repeats=1)
    assert measured["fp32"] == {"matmul GFLOP/s": 2000 / 1e9, "matvec GB/s": 20 * 30 * 4 / 1e9}
    assert measured["bf16"] == {"matmul GFLOP/s": 2000 / 1e9, "matvec GB/s": 20 * 30 * 2 / 1e9}


def test_machine_limits_run_on_small_products():
    limits = import_benchmark("machine_limits").measure(size=64, rows=256, cols=64, repeats=1)
    assert set(limits) == {"fp32", "bf16"}
    assert all(rate > 0 for rates in limits.values() for rate in rates.values())
