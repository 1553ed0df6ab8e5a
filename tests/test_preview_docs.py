"""The offline docs preview shows what the site will show: nbdev's processors, local math, working links."""
import json, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import preview_docs as pd  # noqa: E402


def test_quarto_options_are_split_off():
    opts, src = pd.quarto_options('#| echo: false\n#| code-summary: "Exported source"\nx = 1\n#| not an option')
    assert opts == {"echo": "false", "code-summary": "Exported source"}
    assert src == "x = 1\n#| not an option"


def test_as_rendered_applies_quarto_options_like_quarto():
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook, new_raw_cell
    nb = new_notebook(cells=[new_raw_cell("---\ntitle: T\ndescription: D\n---\n"),
                             new_code_cell("#| echo: false\n#| output: asis\nshow_doc(f)"),
                             new_code_cell("#| include: false\ngone = 1"),
                             new_code_cell('#| code-fold: show\n#| code-summary: "Exported source"\ndef f(): pass')],
                      metadata={"widgets": {"state": {}}})
    nb.cells[1].outputs = [nbformat.v4.new_output("execute_result", data={
        "text/markdown": "[source](https://x.org/a.py#L1){target=\"_blank\" style=\"float:right\"}"})]
    out = pd.as_rendered(nb)
    assert [c.cell_type for c in out.cells] == ["markdown", "code", "code"]
    assert out.cells[0].source.startswith("# T") and "D" in out.cells[0].source
    assert "remove_input" in out.cells[1].metadata.tags and out.cells[1].source == "show_doc(f)"
    assert out.cells[1].outputs[0].data["text/markdown"] == "[source](https://x.org/a.py#L1)"
    assert out.cells[2].metadata.code_fold == "show" and out.cells[2].metadata.code_summary == "Exported source"
    assert "widgets" not in out.metadata


def test_links_point_at_the_site_pages():
    pages = {"01_ssm.ipynb": "ssm.html", "index.ipynb": "index.html"}
    page = ('<a href="01_ssm.ipynb#zoh">a</a> <a href="index.ipynb">b</a> <a href="https://x.org/01_ssm.ipynb">c</a>'
            ' <a href="https://rrg-tutorial.github.io/rrg-tutorial/core.html#use_profile">d</a>')
    got = pd.site_links(page, pages, "https://rrg-tutorial.github.io/rrg-tutorial")
    assert 'href="ssm.html#zoh"' in got and 'href="index.html"' in got
    assert 'href="https://x.org/01_ssm.ipynb"' in got                     # other sites' links are kept
    assert 'href="core.html#use_profile"' in got
    assert pd.site_page("nbs/10a_tokenizer.ipynb") == "tokenizer.html"    # nbdev's own page names


@pytest.mark.parametrize("layout,version", [("MathJax.js", 2), ("es5/tex-chtml.js", 3)])
def test_mathjax_is_served_from_a_local_copy(tmp_path, layout, version):
    mj = tmp_path / "mj"
    (mj / layout).parent.mkdir(parents=True, exist_ok=True)
    (mj / layout).write_text("// MathJax")
    found = pd.find_mathjax(str(mj))
    assert found[1] == version
    tags = pd.install_mathjax(found, tmp_path / "out")
    assert "_static/mathjax/" in tags and "http" not in tags
    assert (tmp_path / "out" / "_static" / "mathjax" / Path(layout).name).exists()
    with pytest.raises(SystemExit, match="expected MathJax.js"): pd.find_mathjax(str(tmp_path / "empty"))
    assert pd.install_mathjax(None, tmp_path / "out2") == ""               # none found: no script, no CDN


def test_preview_shows_exports_hides_export_and_loads_nothing_remote(tmp_path):
    "End to end on a tiny lesson: nbdev's processors, then the page."
    cells = [("markdown", "# Tiny\n\n> A lesson of three cells."), ("code", "#| default_exp tiny"),
             ("code", "#| export\ndef plumbing_helper():\n    return 'HIDDEN_BODY'"),
             ("code", "#| exports\ndef taught(x):\n    \"Doubles.\"\n    return 2 * x  # TAUGHT_BODY"),
             ("code", "#| hide\nassert taught(1) == 2  # HIDDEN_TEST"),
             ("markdown", "Math $x_t = \\bar A x_{t-1}$, next: [SSM](01_ssm.ipynb)."), ("markdown", "## Export -")]
    nb = {"cells": [{"cell_type": t, "metadata": {}, "source": s, **({"outputs": [], "execution_count": None}
                     if t == "code" else {})} for t, s in cells],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "python3", "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    src = tmp_path / "99_tiny.ipynb"
    src.write_text(json.dumps(nb))
    proc, failed = pd.process_notebooks([src], tmp_path / "_proc", workers=1)
    assert not failed, failed
    titles = pd.render(proc, tmp_path, "", "https://rrg-tutorial.github.io/rrg-tutorial",
                       {"99_tiny.ipynb": "tiny.html", "01_ssm.ipynb": "ssm.html"})
    assert titles == [("tiny.html", "Tiny")]
    page = (tmp_path / "tiny.html").read_text()
    assert "TAUGHT_BODY" in page and "Exported source" in page           # #| exports: source shown, folded
    assert "plumbing_helper" in page and "HIDDEN_BODY" not in page        # #| export: signature only
    assert "HIDDEN_TEST" not in page and "Export -" not in page
    assert 'href="ssm.html"' in page and "$x_t = \\bar A x_{t-1}$" in page
    assert "<script src=\"http" not in page and "require.js" not in page and "cdn" not in page.lower()


def test_a_lesson_nbdev_docs_cannot_process_is_reported(tmp_path):
    "nbdev runs cells that mix imports with code while documenting; one that fails there fails nbdev_docs too."
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                     "source": "#| export\ndef f(): pass"},
                    {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                     "source": "import os\nx = undefined_name"}],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "python3", "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    src = tmp_path / "97_bad.ipynb"
    src.write_text(json.dumps(nb))
    done, failed = pd.process_notebooks([src], tmp_path / "_proc", workers=1)
    assert done == [] and "undefined_name" in failed["97_bad.ipynb"]
