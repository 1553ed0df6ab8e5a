"""Offline preview of the docs site, for machines without Quarto: what the site will show, rendered to HTML.

    python tools/preview_docs.py --out _preview            # make docs (without Quarto)
    python tools/preview_docs.py --only 00 index           # a few pages
    python tools/preview_docs.py --mathjax DIR             # MathJax from DIR (MathJax.js of v2, or es5/ of v3)
    python tools/preview_docs.py --no-triton               # as the site's build does (CPU wheels: no Triton)

1. nbdev's own processing, the step `nbdev_docs` runs before Quarto: every notebook goes through
   `nbdev.serve_drv.main` with `nbdev.processors.FilterDefaults` (the processors settings.ini selects). So a
   `#| export` cell loses its source (only its `show_doc` signature stays), a `#| exports` cell keeps it, folded
   under "Exported source", `#| hide` cells and `## ... -` headings disappear, the title cell becomes the page's
   title. The processed notebooks are kept in <out>/_proc/.
2. nbconvert renders them, honouring the Quarto cell options nbdev leaves (`echo`, `output`, `include`,
   `code-fold`, `code-summary`) as Quarto does. Links to lessons point to the site's page names (`00_core.ipynb`
   and nbdev's doc links -> `core.html`); wide tables and long code lines scroll.
3. Nothing comes from a CDN: no require.js, widgets or mermaid scripts; math is typeset by a local MathJax
   copied into <out>/_static/mathjax/, found in: --mathjax, $RRG_MATHJAX, the `jupyter-server-mathjax` Python
   package (its files are read, it is never imported), `node_modules/mathjax` (npm install mathjax@3), or
   Debian's libjs-mathjax. Without one, equations show as TeX source and the tool says what to install.
"""
from __future__ import annotations
import argparse, html, importlib.util, os, re, shutil, subprocess, sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NO_MATHJAX_HINT = ("no local MathJax found, so equations show as TeX source. Install one of: "
                   "`pip install jupyter-server-mathjax` (MathJax 2.7; its files are used, it is never imported), "
                   "`npm install mathjax@3` in the repository, or Debian's `libjs-mathjax`; or pass --mathjax DIR")
_QUARTO_OPT = re.compile(r"^#\|\s*([\w-]+)\s*:\s*(.*?)\s*$")


# ---------------------------------------------------------------- 1. nbdev's processing
def site_page(nb: str | Path) -> str:
    "The site's page name of notebook `nb`, as nbdev names it (00_core.ipynb -> core.html)."
    from nbdev.doclinks import _nbpath2html
    return _nbpath2html(Path(nb)).name


_PROCESS = ("import sys; from pathlib import Path; from nbdev.serve_drv import main; "
            "from nbdev.processors import FilterDefaults; "
            "main((Path(sys.argv[1]), Path(sys.argv[2]), FilterDefaults))")


def process_notebooks(nbs: list[Path], proc_dir: Path, workers: int = 2,
                      no_triton: bool = False) -> tuple[list[Path], dict[str, str]]:
    "Run nbdev's docs processors on `nbs` (a fresh Python each, as nbdev does) into `proc_dir`: (done, {failed: why})."
    proc_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if no_triton:   # tools/notriton/sitecustomize.py makes `import triton` fail, as with PyTorch's CPU wheels
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "tools" / "notriton"), env.get("PYTHONPATH")]))
    def one(nb: Path) -> tuple[Path, str]:
        dst = proc_dir / nb.name
        dst.unlink(missing_ok=True)
        r = subprocess.run([sys.executable, "-c", _PROCESS, str(nb), str(dst)], cwd=ROOT,  # settings.ini from cwd
                           capture_output=True, text=True, env=env)
        return dst, (r.stderr[-3000:] if r.returncode or not dst.exists() else "")
    with ThreadPoolExecutor(max_workers=max(1, workers)) as ex:
        results = list(ex.map(one, nbs))
    return [d for d, err in results if not err], {d.name: err for d, err in results if err}


# ---------------------------------------------------------------- 2. Quarto's cell options, for nbconvert
def quarto_options(source: str) -> tuple[dict, str]:
    "Split the leading `#| key: value` Quarto options off a code cell's source: (options, remaining source)."
    lines, opts = source.splitlines(), {}
    while lines and (m := _QUARTO_OPT.match(lines[0])):
        opts[m.group(1)] = m.group(2).strip("'\"")
        lines.pop(0)
    return opts, "\n".join(lines)


def _frontmatter(text: str) -> dict:
    import yaml
    body = text.strip()
    if not body.startswith("---"): return {}
    return yaml.safe_load(body.strip("-\n")) or {}


def as_rendered(nb: dict) -> dict:
    "Apply what Quarto does with the options nbdev leaves in a processed notebook (in place; returns `nb`)."
    from nbformat.v4 import new_markdown_cell
    cells = []
    for c in nb["cells"]:
        src = "".join(c.get("source", ""))
        if c["cell_type"] == "raw" and (fm := _frontmatter(src)):       # the title block
            title = html.escape(str(fm.get("title", "")))
            desc = html.escape(str(fm.get("description", "")))
            c = new_markdown_cell(f"# {title}\n\n<p class='description'>{desc}</p>")
        elif c["cell_type"] == "code":
            opts, c["source"] = quarto_options(src)
            if opts.get("include") == "false": continue
            tags = set(c.setdefault("metadata", {}).get("tags", []))
            if opts.get("echo") == "false": tags.add("remove_input")
            if opts.get("output") == "false": tags.add("remove_output")
            c["metadata"]["tags"] = sorted(tags)
            if opts.get("code-fold") in ("show", "true"):
                c["metadata"]["code_fold"] = opts["code-fold"]
                c["metadata"]["code_summary"] = opts.get("code-summary", "Code")
            for o in c.get("outputs", []):                               # show_doc's Pandoc link attributes
                md = o.get("data", {}).get("text/markdown")
                if md is not None:
                    md = "".join(md)
                    o["data"]["text/markdown"] = re.sub(r"(\]\([^)\s]+\))\{[^}\n]*\}", r"\1", md)
        cells.append(c)
    nb["cells"] = cells
    nb["metadata"].pop("widgets", None)   # nbdev adds widget state; nothing on these pages needs it
    return nb


# ---------------------------------------------------------------- 3. local MathJax, links, page chrome
def find_mathjax(explicit: str | None = None) -> tuple[Path, int] | None:
    "A local MathJax (its folder, major version 2 or 3), or None. See the module's docstring for where it looks."
    cands = [explicit, os.environ.get("RRG_MATHJAX")]
    spec = importlib.util.find_spec("jupyter_server_mathjax")     # its files only: never imported
    if spec is not None and spec.submodule_search_locations:
        cands += [Path(d) / "static" for d in spec.submodule_search_locations]
    cands += [ROOT / "node_modules" / "mathjax", "/usr/share/javascript/mathjax", "/usr/share/nodejs/mathjax"]
    for c in filter(None, cands):
        d = Path(c).expanduser()
        if (d / "MathJax.js").is_file(): return d, 2
        if (d / "es5" / "tex-chtml.js").is_file(): return d / "es5", 3
        if explicit and d == Path(explicit).expanduser():
            raise SystemExit(f"--mathjax {explicit}: expected MathJax.js (v2) or es5/tex-chtml.js (v3) in it")
    return None


def install_mathjax(found: tuple[Path, int] | None, out: Path) -> str:
    "Copy the MathJax found into out/_static/mathjax (once per source) and return the <script> tags loading it."
    if found is None: return ""
    src, version = found
    dst, stamp = out / "_static" / "mathjax", f"{src.resolve()} {src.stat().st_mtime}"
    if not (dst / ".source").exists() or (dst / ".source").read_text() != stamp:
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(src, dst)
        (dst / ".source").write_text(stamp)
    delims = ("inlineMath: [['$','$'], ['\\\\(','\\\\)']], displayMath: [['$$','$$'], ['\\\\[','\\\\]']], "
              "processEscapes: true")
    if version == 2:
        return ("<script type='text/x-mathjax-config'>MathJax.Hub.Config({tex2jax: {" + delims + ", "
                "processEnvironments: true}, TeX: {equationNumbers: {autoNumber: 'AMS'}}, messageStyle: 'none'});"
                "</script>\n<script src='_static/mathjax/MathJax.js"
                "?config=TeX-AMS-MML_HTMLorMML-full,Safe'></script>")
    return ("<script>window.MathJax = {tex: {" + delims + ", tags: 'ams'}};</script>\n"
            "<script src='_static/mathjax/tex-chtml.js'></script>")


def site_links(page_html: str, pages: dict[str, str], site_url: str) -> str:
    "Point links to notebooks (`01_ssm.ipynb#x`) and nbdev's absolute doc links at the preview's pages."
    def local(m):
        target, frag = m.group(2), m.group(3) or ""
        return f'{m.group(1)}"{pages.get(target, target)}{frag}"'
    page_html = re.sub(r'(href=)"(?!https?:|#)([^"#]+\.ipynb)(#[^"]*)?"', local, page_html)
    if site_url: page_html = page_html.replace(f'href="{site_url.rstrip("/")}/', 'href="')
    return page_html


EXTRA_CSS = """
<style>
  body { max-width: 1100px; margin: 0 auto; }
  nav.rrg { display: flex; gap: 1.5em; padding: .6em 1em; border-bottom: 1px solid #ddd; font-family: sans-serif; }
  /* long code lines and wide outputs scroll sideways: never wrapped, never cut off */
  .jp-InputArea-editor pre, .jp-OutputArea-output pre, .jp-RenderedMarkdown pre {
    white-space: pre !important; overflow-x: auto !important; }
  .jp-RenderedHTMLCommon table { display: block !important; overflow-x: auto !important; max-width: 100%; }
  .jp-OutputArea-output, .jp-RenderedHTMLCommon { overflow-x: auto; }
  details.code-fold > summary { cursor: pointer; color: #555; font-size: 90%; margin: .3em 0 .3em 1em; }
  p.description { font-size: 130%; font-style: italic; opacity: .7; }
</style>
"""

TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{%- block html_head_js_mathjax -%}{{ resources.local_mathjax }}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{% block extra_css %}{{ resources.extra_css }}{% endblock extra_css %}
{%- block body_header -%}{{ super() }}{{ resources.nav }}{%- endblock body_header -%}
{% block body_footer %}{{ resources.nav }}{{ super() }}{% endblock body_footer %}
{% block input_group -%}
{%- if cell.metadata.get('code_fold') -%}
<details class="code-fold"{{ ' open' if cell.metadata.code_fold == 'show' else '' }}>
<summary>{{ cell.metadata.code_summary | e }}</summary>{{ super() }}</details>
{%- else -%}{{ super() }}{%- endif -%}
{%- endblock input_group %}
"""


def _nav(i: int, titles: list[tuple[str, str]]) -> str:
    prev = f"<a href='{titles[i-1][0]}'>&larr; {html.escape(titles[i-1][1])}</a>" if i > 0 else "<span></span>"
    nxt = f"<a href='{titles[i+1][0]}'>{html.escape(titles[i+1][1])} &rarr;</a>" if i + 1 < len(titles) else ""
    return f"<nav class='rrg'><a href='contents.html'>contents</a>{prev}{nxt}</nav>"


def render(proc_nbs: list[Path], out: Path, mathjax_html: str, site_url: str,
           pages: dict[str, str]) -> list[tuple[str, str]]:
    "Render processed notebooks to out/<site page> (`pages`: notebook name -> page); returns [(page, title)]."
    import nbformat
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import TagRemovePreprocessor
    nbs = [as_rendered(nbformat.read(p, as_version=4)) for p in proc_nbs]
    titles = [(pages[p.name], _title(nb, p.stem)) for p, nb in zip(proc_nbs, nbs)]
    ex = HTMLExporter(template_name="lab", extra_loaders=[DictLoader({"rrg_preview.html.j2": TEMPLATE})],
                      template_file="rrg_preview.html.j2", exclude_input_prompt=True, exclude_output_prompt=True)
    ex.register_preprocessor(TagRemovePreprocessor(remove_input_tags={"remove_input"},
                                                   remove_all_outputs_tags={"remove_output"}), enabled=True)
    for i, (p, nb) in enumerate(zip(proc_nbs, nbs)):
        res = {"local_mathjax": mathjax_html, "extra_css": EXTRA_CSS, "nav": _nav(i, titles),
               "metadata": {"name": titles[i][1]}}
        body, _ = ex.from_notebook_node(nb, resources=res)
        (out / pages[p.name]).write_text(site_links(body, pages, site_url), encoding="utf-8")
    return titles


def _title(nb: dict, default: str) -> str:
    for c in nb["cells"]:
        if c["cell_type"] == "markdown":
            m = re.match(r"#\s+(.+)", "".join(c["source"]).strip())
            if m: return m.group(1).strip()
    return default


def _site_url() -> str:
    from nbdev.config import get_config
    cfg = get_config(path=ROOT)
    return f"{cfg.get('doc_host', '')}{cfg.get('doc_baseurl', '')}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="_preview", help="output folder (relative to the repository)")
    ap.add_argument("--only", nargs="*", help="only notebooks whose name starts with one of these")
    ap.add_argument("--mathjax", help="a local MathJax folder (MathJax.js of v2, or v3's package with es5/)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-triton", action="store_true",
                    help="process as the site's build does with PyTorch's CPU wheels: `import triton` fails")
    a = ap.parse_args(argv)
    out = ROOT / a.out
    out.mkdir(parents=True, exist_ok=True)
    every = [p for p in sorted((ROOT / "nbs").glob("*.ipynb"), key=lambda p: (p.stem != "index", p.stem))
             if not p.name.startswith("_")]
    nbs = [p for p in every if not a.only or any(p.name.startswith(o) for o in a.only)]
    if not nbs: raise SystemExit(f"--only {a.only}: no notebook in nbs/ starts with that")
    print(f"nbdev's docs processors on {len(nbs)} notebook(s) ...", flush=True)
    proc, failed = process_notebooks(nbs, out / "_proc", a.workers, a.no_triton)
    for name, err in failed.items():   # nbdev_docs would stop here: it runs the same processors
        print(f"FAILED {name}: nbdev's docs processors raised (so would nbdev_docs):\n{err}\n", file=sys.stderr)
    nbs = [p for p in nbs if p.name not in failed]
    found = find_mathjax(a.mathjax)
    print(f"math: MathJax {found[1]} from {found[0]}" if found else f"math: {NO_MATHJAX_HINT}")
    titles = render(proc, out, install_mathjax(found, out), _site_url(), {p.name: site_page(p) for p in every})
    items = "\n".join(f"<li><a href='{pg}'>{html.escape(t)}</a> <small>({p.name})</small></li>"
                      for (pg, t), p in zip(titles, nbs))
    note = "" if found else f"<p><b>Note:</b> {html.escape(NO_MATHJAX_HINT)}.</p>"
    (out / "contents.html").write_text("<!doctype html><meta charset=utf-8><title>rrg-tutorial</title>"
                                       "<h1>rrg-tutorial: offline preview of the docs site</h1>"
                                       f"{note}<ol>{items}</ol>", encoding="utf-8")
    print(f"preview written: {out / 'contents.html'} ({len(nbs)} pages)"
          + (f"; FAILED, no page: {', '.join(sorted(failed))}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
