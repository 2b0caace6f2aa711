"""Prebuilt cache entries (``ftbook/prebuilt``): filled into an empty cache only when current."""

from __future__ import annotations

import importlib
import json
from importlib.metadata import version

import pytest

from ftbook import checkpoints


@pytest.fixture
def roots(tmp_path, monkeypatch):
    """A private prebuilt root and two caches (``a`` builds, ``b`` starts empty)."""
    monkeypatch.setattr(checkpoints, "PREBUILT_ROOT", tmp_path / "prebuilt")
    monkeypatch.delenv(checkpoints.NO_PREBUILT_VAR, raising=False)
    return tmp_path / "prebuilt", tmp_path / "a", tmp_path / "b"


def _build(folder):
    (folder / "result.json").write_text('{"accuracy": 0.9}')
    (folder / "sub").mkdir()
    (folder / "sub" / "w.bin").write_bytes(b"\x00\x01")


def _ship(roots, fp):
    prebuilt, a, _ = roots
    checkpoints.cached("entry", _build, fp, root=a, log=lambda m: None)
    return checkpoints.ship_prebuilt("entry", root=a)


def _no_build(folder):
    raise AssertionError("built although a current prebuilt copy exists")


def test_an_empty_cache_is_filled_from_a_current_prebuilt_copy(roots):
    prebuilt, _, b = roots
    fp = {"seed": 0, "code": {"m": "1"}}
    shipped = _ship(roots, fp)
    assert shipped == prebuilt / "entry" and (shipped / checkpoints.MANIFEST).is_file()
    logs = []
    out = checkpoints.cached("entry", _no_build, fp, root=b, log=logs.append)
    assert out == b / "entry" and checkpoints.SOURCES["entry"] == "prebuilt"
    assert (out / "sub" / "w.bin").read_bytes() == b"\x00\x01"
    assert json.loads((out / "result.json").read_text()) == {"accuracy": 0.9}
    assert "预构建" in logs[0] and "ftbook/prebuilt/entry" in logs[0]
    checkpoints.cached("entry", _no_build, fp, root=b, log=logs.append)
    assert checkpoints.SOURCES["entry"] == "cache"


def test_a_stale_prebuilt_copy_is_reported_and_not_used(roots):
    _, _, b = roots
    _ship(roots, {"seed": 0, "code": {"m": "1"}})
    logs, built = [], []
    checkpoints.cached("entry", lambda f: built.append(f) or _build(f), {"seed": 0, "code": {"m": "2"}},
                       root=b, log=logs.append)
    assert built and checkpoints.SOURCES["entry"] == "built"
    assert "code.m" in logs[0] and "seed" not in logs[0]  # names the key that differs


def test_a_stale_prebuilt_copy_is_an_error_when_asked(roots, monkeypatch):
    _, _, b = roots
    _ship(roots, {"seed": 0})
    monkeypatch.setattr(checkpoints, "STALE_PREBUILT_IS_ERROR", True)
    with pytest.raises(checkpoints.StalePrebuiltError, match="seed"):
        checkpoints.cached("entry", _no_build, {"seed": 1}, root=b, log=lambda m: None)


def test_a_damaged_prebuilt_file_is_an_error(roots):
    _, _, b = roots
    shipped = _ship(roots, {"seed": 0})
    (shipped / "result.json").write_text('{"accuracy": 1.0}')
    with pytest.raises(checkpoints.CorruptCheckpointError, match="result.json"):
        checkpoints.cached("entry", _no_build, {"seed": 0}, root=b, log=lambda m: None)


def test_no_prebuilt_env_builds_anyway(roots, monkeypatch):
    _, _, b = roots
    _ship(roots, {"seed": 0})
    monkeypatch.setenv(checkpoints.NO_PREBUILT_VAR, "1")
    built = []
    checkpoints.cached("entry", lambda f: built.append(1) or _build(f), {"seed": 0}, root=b, log=lambda m: None)
    assert built == [1]


def test_fingerprint_diff_names_nested_keys():
    assert checkpoints.fingerprint_diff({"a": 1, "code": {"x": "1", "y": "2"}},
                                        {"a": 1, "code": {"x": "1", "y": "3"}, "b": 0}) == ["b", "code.y"]


# ------------------------------------------------------------------ the entries the package ships

SHIPPED = sorted(p.name for p in checkpoints.PREBUILT_ROOT.iterdir() if p.is_dir()) \
    if checkpoints.PREBUILT_ROOT.is_dir() else []


def test_every_shipped_entry_is_indexed_with_its_command():
    index = json.loads((checkpoints.PREBUILT_ROOT / "INDEX.json").read_text(encoding="utf-8"))
    assert sorted(index) == SHIPPED
    for name, meta in index.items():
        assert meta["command"] and meta["machine"] and meta["date"], name


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_entry_is_intact_and_made_by_the_current_code(name):
    """Every module digest in a shipped entry's fingerprint equals the committed module's, and the
    library versions the installed ones: editing a module that built it makes this fail (rebuild it
    with FTBOOK_NO_PREBUILT=1 and ship it again)."""
    manifest = checkpoints.verify(checkpoints.prebuilt_dir(name))
    fp = manifest["fingerprint"]
    stale = {mod: digest for mod, digest in fp.get("code", {}).items()
             if checkpoints.sha256_file(importlib.import_module(mod).__file__)[:16] != digest}
    assert not stale, f"{name} was built by other code of {sorted(stale)}"
    for lib, v in fp.get("versions", {}).items():
        assert v == version(lib).split("+")[0], f"{name} was built with {lib} {v}"


@pytest.mark.parametrize("name, call", [
    ("ner-report-tiny", lambda: __import__("ftbook.tagging").tagging.ner_report("tiny")),
    ("finetuned-chinese-tiny", lambda: __import__("ftbook.finetune").finetune.finetuned_checkpoint("chinese", "tiny")),
])
def test_long_runs_load_from_their_prebuilt_copy_on_an_empty_cache(name, call, tmp_path, monkeypatch):
    """The two long runs the cold book skips: current (else StalePrebuiltError names what changed)."""
    monkeypatch.setenv("FTBOOK_CACHE", str(tmp_path))
    monkeypatch.delenv(checkpoints.NO_PREBUILT_VAR, raising=False)
    monkeypatch.setattr(checkpoints, "STALE_PREBUILT_IS_ERROR", True)
    call()
    assert checkpoints.SOURCES[name] == "prebuilt"
    assert checkpoints.verify(tmp_path / name)["files"] == checkpoints.verify(checkpoints.prebuilt_dir(name))["files"]
