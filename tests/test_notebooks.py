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
    doc = load(nb)
    assert "widgets" not in doc["metadata"], f"{nb.name}: committed with saved widget state in its metadata"
    for c in doc["cells"]:
        for o in c.get("outputs", []):
            assert o["output_type"] != "error", f"{nb.name}: committed with an error output in cell:\n{src(c)[:200]}"
            # a widget (an ipywidgets explorer, a tqdm.auto bar) is dead text on the site, and under papermill its
            # messages can leave the kernel and the runner each waiting for the other
            assert "application/vnd.jupyter.widget-view+json" not in o.get("data", {}), (
                f"{nb.name}: committed with a widget output (live widgets only with interactive = True) in cell:\n"
                f"{src(c)[:200]}")


@pytest.mark.parametrize("nb", NUMBERED, ids=lambda p: p.name)
def test_no_hard_coded_cuda(nb):
    for c in load(nb)["cells"]:
        if c["cell_type"] == "code":
            assert ".cuda()" not in src(c) and "CUDA_VISIBLE_DEVICES" not in src(c), f"{nb.name}: use rrg_tutorial.core.get_device"


# ---- issue 17: the docs site shows the code each lesson teaches, in cells sized for reading ----------------------
# nbdev's `rm_export` removes the source of `#| export`/`#| exporti` cells from the site (only a signature stays);
# `#| exports` cells keep it. So a lesson that exports code must mark what it teaches `#| exports`.
# Lessons whose exported code is all plumbing (imports, wiring), where `#| export` alone is right: name -> reason.
EXPORT_ONLY_LESSONS: dict[str, str] = {}
# Exported cells allowed over MAX_EXPORT_LINES: (notebook, first code line) -> reason.
# (lesson, a name defined in the cell) -> why that exported cell may exceed MAX_EXPORT_LINES
LONG_EXPORT_CELLS: dict[tuple[str, str], str] = {
    ("04_scan_triton.ipynb", "def _s6_bwd_kernel("): "one fused Triton kernel: splitting it would hand about 20 on-chip "
                                                      "tiles through helper calls; its loading code is already shared",
}
MAX_EXPORT_LINES = 80


def exported_cells(nb_path):
    "(directives, code lines) of each exported code cell, parsed by nbdev's own directive parser."
    from nbdev.process import extract_directives
    from execnb.nbio import read_nb
    out = []
    for c in read_nb(nb_path).cells:
        if c.cell_type != "code": continue
        d = extract_directives(c, remove=True)
        if d.keys() & {"export", "exports", "exporti"}:
            out.append((d, [l for l in c.source.splitlines() if l.strip()]))
    return out


@pytest.mark.parametrize("nb", NUMBERED, ids=lambda p: p.name)
def test_site_shows_exported_code_of_every_lesson(nb):
    from nbdev.processors import _hide_dirs      # what rm_export hides: export, exporti, hide, default_exp
    cells = exported_cells(nb)
    if not cells or nb.name in EXPORT_ONLY_LESSONS: return
    shown = [d for d, _ in cells if "exports" in d and not (d.keys() & _hide_dirs)]
    assert shown, (f"{nb.name}: {len(cells)} exported cell(s), none marked `#| exports`, so the docs site shows "
                   "none of the code this lesson teaches (mark the taught code `#| exports`; keep `#| export` "
                   "for imports and plumbing, or list the lesson in EXPORT_ONLY_LESSONS with the reason)")


@pytest.mark.parametrize("nb", NUMBERED, ids=lambda p: p.name)
def test_exported_cells_are_sized_for_reading(nb):
    long = [(len(lines), lines[0]) for _, lines in exported_cells(nb)
            if len(lines) > MAX_EXPORT_LINES
            and not any(n == nb.name and any(m in l for l in lines) for n, m in LONG_EXPORT_CELLS)]
    assert not long, (f"{nb.name}: exported cell(s) over {MAX_EXPORT_LINES} non-blank lines (one idea per cell, "
                      f"about 40 lines): " + "; ".join(f"{n} lines from {first[:60]!r}" for n, first in long))


def test_site_rule_catches_hidden_code(tmp_path):
    "The two checks above fail on a lesson that hides everything and on an 81-line exported cell."
    def write(cells):
        p = tmp_path / "98_x.ipynb"
        p.write_text(json.dumps({"cells": [{"cell_type": "code", "metadata": {}, "source": s, "outputs": [],
                                             "execution_count": None} for s in cells],
                                 "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
        return p
    with pytest.raises(AssertionError, match="none marked"):
        test_site_shows_exported_code_of_every_lesson(write(["#| export\ndef f(): pass", "#| exports\n#| hide\nx=1"]))
    test_site_shows_exported_code_of_every_lesson(write(["#| export\nimport os", "#|exports\ndef f(): pass"]))
    with pytest.raises(AssertionError, match="81 lines"):
        test_exported_cells_are_sized_for_reading(write(["#| exports\n" + "x = 1\n" * 81]))
    test_exported_cells_are_sized_for_reading(write(["#| exports\n" + "x = 1\n\n" * 80]))


@pytest.mark.parametrize("nb", NUMBERED, ids=lambda p: p.name)
def test_docs_build_runs_no_lesson_code(nb):
    """nbdev's docs build (nbdev_docs, and tools/preview_docs.py) executes every cell holding an import, hidden or
    not, to document the exports; in a cell that also does other work, that work runs without the notebook's
    state (NameError on `P`) or takes minutes. nbdev warns "Found cells containing imports and other code": here it
    fails. Keep imports in import-only cells."""
    import ast
    from nbdev.processors import _ast_contains
    from nbdev.process import extract_directives
    from execnb.nbio import read_nb
    bad = []
    for c in read_nb(nb).cells:
        if c.cell_type != "code" or "nbdev_export()" in c.source: continue
        d = extract_directives(c, remove=True)
        if d.keys() & {"export", "exports", "exporti", "exec_doc"} or d.get("eval:", [""])[0].lower() == "false":
            continue
        trees = c.parsed_()
        if trees and _ast_contains(trees, (ast.Import, ast.ImportFrom)) and _ast_contains(trees, (ast.Expr, ast.Assign)):
            bad.append(c.source.strip().splitlines()[0][:70])
    assert not bad, f"{nb.name}: cells mixing imports with other code (the docs build runs them): {bad}"


def reproduced_table(text: str, heading: str) -> list[str]:
    "The table rows of the 'What is reproduced' section of a markdown text (from `heading` to the next heading)."
    assert heading in text, f"no {heading!r} section"
    sec = re.split(r"\n#+ ", text.split(heading, 1)[1], maxsplit=1)[0]
    return [l.strip() for l in sec.splitlines() if l.startswith("|")]


def test_docs_home_shows_the_readmes_reproduction_table():
    """The docs site's home page (nbs/index.ipynb) and the README both carry 'What is reproduced'; the README's is the
    one kept up to date, so the page must show the same rows (copy them over when the README's change)."""
    readme = reproduced_table((NBS.parent / "README.md").read_text(encoding="utf-8"), "### What is reproduced")
    index = reproduced_table("\n".join(src(c) for c in load(NBS / "index.ipynb")["cells"] if c["cell_type"] == "markdown"),
                             "## What is reproduced")
    assert len(readme) > 2, "the README's table has no rows"
    stale = [r.split("|")[1:3] for r in readme if r not in index]
    assert index == readme, f"nbs/index.ipynb's 'What is reproduced' differs from the README's; rows not on the page: {stale}"
    with pytest.raises(AssertionError, match="no '## What"):
        reproduced_table("# nothing here", "## What is reproduced")
    assert reproduced_table("## What is reproduced\n\ntext\n| a | b |\n|---|---|\n\n## Next\n| c |", "## What is reproduced") \
        == ["| a | b |", "|---|---|"]
