"""The built book makes no request to another host, and renders math, diagrams and widgets locally.

Builds the book from the notebooks' stored outputs (execution off: the notebooks themselves are
executed by nbval in the same test run) into a temporary folder, then inspects every page.
"""

import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
EXTERNAL = re.compile(r"^(https?:)?//", re.I)


class Refs(HTMLParser):
    """Collect what a page loads: scripts, styles, fonts, preloads, frames."""

    def __init__(self):
        super().__init__()
        self.loads: list[str] = []
        self.inline_scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script":
            self._in_script = "src" not in a
            if a.get("src"):
                self.loads.append(a["src"])
        elif tag == "link" and (a.get("rel") or "") in ("stylesheet", "preload", "modulepreload", "icon", "prefetch"):
            self.loads.append(a.get("href") or "")
        elif tag in ("iframe", "embed") and a.get("src"):
            self.loads.append(a["src"])

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.inline_scripts.append(data)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    cfg["execute"]["execute_notebooks"] = "off"
    # paths in the config are relative to its folder: point local extensions at the book's
    cfg["sphinx"]["local_extensions"] = {k: str(ROOT / v) for k, v in cfg["sphinx"]["local_extensions"].items()}
    cfg_path = out / "_config.yml"
    cfg_path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
    jb = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or "jupyter-book"
    proc = subprocess.run(
        [jb, "build", str(ROOT), "--path-output", str(out), "--config", str(cfg_path), "-W", "-n", "--keep-going"],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    html = out / "_build" / "html"
    assert (html / "index.html").is_file()
    return html


def pages(site):
    return sorted(p for p in site.rglob("*.html") if "_static" not in p.parts)


def test_every_toc_chapter_is_built(site):
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    files = [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]
    assert len([f for f in files if Path(f).name[:2].isdigit()]) == len(list((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb")))
    for f in files:
        assert (site / f"{f}.html").is_file(), f


def test_no_page_loads_anything_from_another_host(site):
    offenders = []
    for page in pages(site):
        refs = Refs()
        refs.feed(page.read_text(encoding="utf-8"))
        offenders += [(page.name, u) for u in refs.loads if EXTERNAL.match(u)]
        for script in refs.inline_scripts:
            offenders += [(page.name, m) for m in re.findall(r"(?:import|from)\s*\(?\s*['\"]((?:https?:)?//[^'\"]+)", script)]
    assert not offenders, offenders[:20]


def test_no_stylesheet_pulls_fonts_or_styles_from_another_host(site):
    offenders = []
    for css in (site / "_static").rglob("*.css"):
        text = css.read_text(encoding="utf-8", errors="replace")
        for url in re.findall(r"url\(\s*['\"]?([^'\")]+)", text) + re.findall(r"@import\s+['\"]([^'\"]+)", text):
            if EXTERNAL.match(url) and "w3.org" not in url:
                offenders.append((css.name, url))
    assert not offenders, offenders[:20]


def test_math_uses_local_mathjax(site):
    math_pages = [p for p in pages(site) if 'class="math' in p.read_text(encoding="utf-8")]
    assert math_pages, "no page with math was built"
    for page in math_pages:
        text = page.read_text(encoding="utf-8")
        assert re.search(r'src="[^"]*_static/mathjax/tex-chtml\.js', text), page.name
    assert (site / "_static" / "mathjax" / "tex-chtml.js").is_file()
    assert any((site / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").iterdir())


def test_mermaid_diagram_rendered_by_local_script(site):
    page = (site / "chapters" / "02_pipeline.html").read_text(encoding="utf-8")
    assert "highlight-mermaid" in page and "graph LR" in page
    assert re.search(r'src="[^"]*_static/mermaid/mermaid\.min\.js', page)
    assert re.search(r'src="[^"]*_static/mermaid/init\.js', page)


def test_widgets_use_local_manager(site):
    widget_pages = [p for p in pages(site) if "application/vnd.jupyter.widget-view+json" in p.read_text(encoding="utf-8")]
    for page in widget_pages:
        text = page.read_text(encoding="utf-8")
        assert re.search(r'src="[^"]*_static/widgets/embed-amd\.js', text), page.name
        assert 'data-jupyter-widgets-cdn=""' in text, page.name
        # require.js must come first (embed-amd.js is an AMD module), and no crossorigin attribute:
        # a CORS request fails when the book is opened from file://
        assert text.index("widgets/require.js") < text.index("widgets/embed-amd.js"), page.name
        assert not re.search(r'<script[^>]*crossorigin[^>]*widgets/', text), page.name
    assert (site / "_static" / "widgets" / "embed-amd.js").is_file()


def test_chinese_search_index(site):
    # searchindex.js is "Search.setIndex({...})" with JSON that escapes non-ASCII characters
    import json

    text = (site / "searchindex.js").read_text(encoding="utf-8")
    index = json.loads(text[text.index("(") + 1 : text.rindex(")")])
    for term in ("训练", "微调", "归一化"):  # jieba splits 预训练 into 预 / 训练
        assert term in index["terms"], term
