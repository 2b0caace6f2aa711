"""chapters/glossary.md: each Chinese term is used in the chapter the glossary says first teaches it."""

import json
import re
from pathlib import Path

CHAPTERS = Path(__file__).resolve().parents[1] / "chapters"


def _rows():
    rows = []
    for line in (CHAPTERS / "glossary.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[2].isdigit():
            rows.append(cells)
    return rows


def _text(chapter: int) -> str:
    (path,) = CHAPTERS.glob(f"{chapter:02d}_*.ipynb")
    nb = json.loads(path.read_text(encoding="utf-8"))
    return "\n".join("".join(c["source"]) for c in nb["cells"])


def test_glossary_terms_appear_in_their_chapter():
    rows = _rows()
    assert len(rows) >= 40
    english = [r[0] for r in rows]
    assert english == sorted(english, key=str.lower)  # alphabetical, as the page says
    missing = []
    for eng, zh, chapter, _ in rows:
        text = _text(int(chapter))
        names = [n.strip() for n in re.split(r"[/（）()]", zh) if n.strip()]
        if not any(n in text for n in names):
            missing.append(f"{eng} / {zh}: not in chapter {chapter}")
    assert not missing, missing


def test_glossary_is_in_the_table_of_contents():
    assert "chapters/glossary" in (CHAPTERS.parent / "_toc.yml").read_text(encoding="utf-8")
