"""The notebooks committed with their outputs (01 and 02, executed in the full profile) keep outputs a
reader can read: a progress bar ends as one line, not as a wall of carriage-return fragments."""

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("notebook", ["01_architecture.ipynb", "02_pretraining.ipynb"])
def test_each_cell_keeps_at_most_one_progress_stream_without_carriage_returns(notebook):
    cells = json.loads((REPO / notebook).read_text(encoding="utf-8"))["cells"]
    for index, cell in enumerate(cells):
        for name in ("stdout", "stderr"):
            streams = [output for output in cell.get("outputs", []) if output["output_type"] == "stream"
                       and output["name"] == name]
            text = "".join("".join(output["text"]) for output in streams)
            assert len(streams) <= 1, f"{notebook}, cell {index}: {len(streams)} separate {name} outputs"
            assert "\r" not in text, f"{notebook}, cell {index}: progress-bar fragments in {name} ({text.count(chr(13))})"
