"""Conventions every lesson notebook follows (see README and STYLE): checked statically, fast."""
import json, re
from pathlib import Path
import pytest

NBS = Path(__file__).resolve().parents[1] / "nbs"
NOTEBOOKS = sorted(p for p in NBS.glob("*.ipynb") if not p.name.startswith("_"))
NUMBERED = [p for p in NOTEBOOKS if re.match(r"\d\d", p.name)]


def load(p): return json.loads(p.read_text(encoding="utf-8"))


def src(c): return "".join(c["source"])


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_one_parameters_cell_with_profiles(nb):
    cells = [c for c in load(nb)["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"{nb.name}: expected exactly one cell tagged 'parameters', found {len(cells)}"
    s = src(cells[0])
    assert re.search(r'^profile\s*=\s*"cpu"', s, re.M), f"{nb.name}: the parameters cell must default to profile = \"cpu\""
    if nb in NUMBERED and nb.name != "index.ipynb":
        for prof in ("ci", "cpu", "gpu"):
            assert re.search(rf"^{prof}\s*=\s*\{{", s, re.M), f"{nb.name}: the parameters cell must define the {prof!r} profile as a dict literal"


@pytest.mark.parametrize("nb", NUMBERED, ids=lambda p: p.name)
def test_header_and_export_conventions(nb):
    cells = load(nb)["cells"]
    assert cells[0]["cell_type"] == "markdown" and src(cells[0]).startswith("# "), f"{nb.name}: starts with a '# Title' markdown cell"
    assert "\n> " in src(cells[0]), f"{nb.name}: the title cell has a '> one-line summary'"
    if any(src(c).startswith("#| export") for c in cells):
        assert any(re.match(r"#\|\s*default_exp\s+\w+", src(c)) for c in cells), f"{nb.name}: exports without default_exp"
        assert "nbdev_export()" in src(cells[-1]), f"{nb.name}: ends with nbdev_export()"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_outputs_are_clean_and_small(nb):
    size = nb.stat().st_size
    assert size < 3_000_000, f"{nb.name} is {size/1e6:.1f} MB: keep committed outputs small"
    for c in load(nb)["cells"]:
        for o in c.get("outputs", []):
            assert o["output_type"] != "error", f"{nb.name}: committed with an error output in cell:\n{src(c)[:200]}"


@pytest.mark.parametrize("nb", NUMBERED, ids=lambda p: p.name)
def test_no_hard_coded_cuda(nb):
    for c in load(nb)["cells"]:
        if c["cell_type"] == "code":
            assert ".cuda()" not in src(c) and "CUDA_VISIBLE_DEVICES" not in src(c), f"{nb.name}: use rrg_tutorial.core.get_device"
