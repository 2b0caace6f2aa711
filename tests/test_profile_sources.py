"""Tests of ftbook.profile_sources: every ``full`` learning rate, step count, epoch count and
warm-up of every registered section has a source, and the preface shows the rendered table."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

import pytest

from ftbook import profile_sources as ps
from ftbook.config import _SECTIONS

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def registered():
    ps.import_all()


def test_every_schedule_key_of_every_section_has_a_source():
    assert ps.problems() == []
    keys = ps.schedule_keys()
    sections = {s for s, _ in keys}
    assert {"finetune", "pretrain", "instruct", "causal_lm", "tagging", "tricks"} <= sections
    assert ("finetune", "english_lr") in keys and ("pretrain", "warmup_steps") in keys
    assert len(keys) == sum(len(v) for v in ps.SOURCES.values())


@pytest.mark.parametrize("key, expected", [("lr", True), ("english_lr", True), ("search_lrs", True),
                                           ("max_steps", True), ("shift_epochs", True), ("warmup", True),
                                           ("warmup_ratio", True), ("search_warmups", True),
                                           ("max_length", False), ("batch_size", False), ("slrs", False)])
def test_is_schedule_key(key, expected):
    assert ps.is_schedule_key(key) is expected


def test_keys_that_only_look_like_schedules_are_excluded_with_a_reason():
    for (section, key), reason in ps.NOT_SCHEDULE.items():
        assert ps.is_schedule_key(key) and reason.strip()
        assert key in _SECTIONS[section]["full"]
        assert (section, key) not in ps.schedule_keys()


def with_full(monkeypatch, section, **values):
    sizes = _SECTIONS[section]
    monkeypatch.setitem(_SECTIONS, section, {"tiny": sizes["tiny"],
                                             "full": MappingProxyType({**sizes["full"], **values})})


def test_a_missing_or_stale_entry_is_reported(monkeypatch):
    entries = dict(ps.SOURCES["finetune"])
    del entries["english_lr"]
    entries["gone_lr"] = ps.BERT_LR
    monkeypatch.setitem(ps.SOURCES, "finetune", entries)
    monkeypatch.setitem(ps.SOURCES, "nosuch", {"lr": ps.BERT_LR})
    found = ps.problems()
    assert "finetune.english_lr: no source (add it to ftbook/profile_sources.py SOURCES)" in found
    assert "finetune.gone_lr: SOURCES names a key that is not registered" in found
    assert "nosuch.lr: SOURCES names a key that is not registered" in found
    with pytest.raises(ValueError, match="profile sources are incomplete"):
        ps.render_table()


def test_sections_registered_outside_ftbook_are_ignored(monkeypatch):
    monkeypatch.setitem(_SECTIONS, "unit-test", {"tiny": MappingProxyType({"steps": 3}),
                                                 "full": MappingProxyType({"steps": 300})})
    assert "unit-test" not in ps.book_sections() and ps.problems() == []
    assert "finetune" in ps.book_sections() and "pipeline" in ps.book_sections()  # config.py registers it


def test_a_new_schedule_key_without_a_source_is_reported(monkeypatch):
    with_full(monkeypatch, "optim", new_lr=1e-3)
    monkeypatch.setitem(_SECTIONS["optim"], "tiny", MappingProxyType({**_SECTIONS["optim"]["tiny"], "new_lr": 1e-3}))
    assert ps.problems() == ["optim.new_lr: no source (add it to ftbook/profile_sources.py SOURCES)"]


def test_a_value_outside_the_cited_range_is_reported(monkeypatch):
    with_full(monkeypatch, "finetune", english_lr=1e-3)
    assert ps.problems() == ["finetune.english_lr: value 0.001 is outside the cited range 2e-05–5e-05"]
    with_full(monkeypatch, "finetune", english_lr=3e-5, epochs=10)
    assert ps.problems() == ["finetune.epochs: value 10 is outside the cited range 2–4"]


def test_no_cap_is_for_none_only(monkeypatch):
    with_full(monkeypatch, "finetune", english_max_steps=500)
    assert ps.problems() == ["finetune.english_max_steps: value 500: 不设上限 is for None exactly"]
    monkeypatch.setitem(ps.SOURCES, "finetune", {**ps.SOURCES["finetune"],
                                                 "english_lr": ps.Source(ps.PAPER, "某篇论文说的")})
    with_full(monkeypatch, "finetune", english_max_steps=None)
    assert ps.problems() == ["finetune.english_lr: a citation names its year"]


def test_entries_use_known_kinds_and_guesses_give_a_reason():
    for section, entries in ps.SOURCES.items():
        for key, src in entries.items():
            assert src.kind in ps.KINDS, (section, key)
            assert len(src.text) >= 8, (section, key)
    kinds = {src.kind for entries in ps.SOURCES.values() for src in entries.values()}
    assert ps.GUESS in kinds and ps.PAPER in kinds


@pytest.mark.parametrize("value, text", [(3e-5, "3e-5"), (6e-4, "6e-4"), (2.5e-5, "2.5e-5"), (0.1, "0.1"),
                                         (0.0, "0"), (20000, "20000"), (None, "None"),
                                         ((1e-5, 3e-5, 1e-4), "1e-5, 3e-5, 1e-4"), ([200, 2000], "200, 2000")])
def test_format_value(value, text):
    assert ps.format_value(value) == text


def test_the_table_shows_each_full_value():
    table = ps.render_table().splitlines()
    assert table[0].startswith("| 模块（section） | 设置 | full 取值 |")
    assert len(table) == 2 + len(ps.schedule_keys())
    value = ps.format_value(_SECTIONS["finetune"]["full"]["english_lr"])
    assert f"| `finetune` | `english_lr` | {value} | 论文 | BERT 论文（Devlin et al. 2019）" in "\n".join(table)


def test_the_preface_shows_the_rendered_table():
    text = (ROOT / ps.PAGE).read_text(encoding="utf-8")
    assert ps.page_table(text) == ps.render_table(), "run: python -m ftbook.profile_sources render"
    section = text[text.index("## 三种用法"):]
    assert section.index(ps.BEGIN) < section.index("\n## ", 1), "the table belongs in 三种用法"


def test_render_page_writes_only_between_the_markers(tmp_path):
    page = tmp_path / ps.PAGE
    page.parent.mkdir()
    page.write_text(f"before\n{ps.BEGIN}\nold table\n{ps.END}\nafter\n", encoding="utf-8")
    assert ps.render_page(tmp_path)
    text = page.read_text(encoding="utf-8")
    assert text.startswith(f"before\n{ps.BEGIN}\n") and text.endswith(f"\n{ps.END}\nafter\n")
    assert ps.page_table(text) == ps.render_table()
    assert not ps.render_page(tmp_path)
    page.write_text("no markers\n", encoding="utf-8")
    with pytest.raises(ValueError, match="must hold one"):
        ps.render_page(tmp_path)


def test_main_checks_and_renders(tmp_path, monkeypatch, capsys):
    assert ps.main(["bogus"]) == 2
    assert ps.main(["check"]) == 0
    monkeypatch.setitem(ps.SOURCES, "finetune", {k: v for k, v in ps.SOURCES["finetune"].items() if k != "epochs"})
    assert ps.main(["check"]) == 1
    assert "finetune.epochs: no source" in capsys.readouterr().out
