"""The quickstart notebook runs top to bottom on CPU."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "quickstart.ipynb"


# The notebook's code as committed, with a smaller budget: what runs is tested here, what it learns (with the full
# budget) by the stored outputs below.
SMALLER = {"n_train=128": "n_train=64", "trials=10": "trials=4", " epochs=10": " epochs=3", "final_epochs=10": "final_epochs=3",
           "final_seeds=[0, 1]": "final_seeds=[0]"}


def test_quickstart_notebook_executes(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    first = next(cell for cell in nb.cells if cell.cell_type == "code" and "search(" in cell.source)
    for full, small in SMALLER.items():
        assert first.source.count(full) == 1, full
        first.source = first.source.replace(full, small)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the Pareto plot and the boxes, inline
    assert (tmp_path / "runs" / "notebook" / "quickstart" / "found_n.pt").is_file()


def test_the_committed_notebook_shows_its_outputs():
    """Read on GitHub without running it: every code cell has its stored outputs, a search that learned (a found
    model with mAP above 0), the verdict and the plots; and it stays small."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and all(cell.get("outputs") for cell in code)
    outputs = [o for cell in code for o in cell["outputs"]]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs)
    found = re.search(r"found_n: (\d\.\d+) ±", text)
    assert found and float(found.group(1)) > 0 and "95 % CI" in text and "no accuracy signal" not in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 3  # Pareto, comparison, detections
    assert NOTEBOOK.stat().st_size < 600_000
