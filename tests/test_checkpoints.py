"""Tests of ftbook.checkpoints: atomic writes, verified reads, corrupted / partial / stale folders
detected and rebuilt (never silently loaded), one build for concurrent processes."""

import json
import multiprocessing as mp
import os
import time
from pathlib import Path

import pytest

from ftbook import checkpoints as ck

FP = {"steps": 3, "seed": 0}


def _builder(calls, content=b"weights"):
    def build(tmp: Path) -> None:
        calls.append(tmp)
        (tmp / "model.safetensors").write_bytes(content)
        (tmp / "sub").mkdir()
        (tmp / "sub" / "config.json").write_text('{"a": 1}')
    return build


def test_builds_once_then_loads(tmp_path):
    calls, logs = [], []
    a = ck.cached("m", _builder(calls), FP, root=tmp_path, log=logs.append)
    b = ck.cached("m", _builder(calls), FP, root=tmp_path, log=logs.append)
    assert a == b == tmp_path / "m"
    assert len(calls) == 1 and not logs
    manifest = json.loads((a / ck.MANIFEST).read_text())
    assert manifest["fingerprint"] == FP
    assert set(manifest["files"]) == {"model.safetensors", "sub/config.json"}
    assert manifest["files"]["model.safetensors"]["sha256"] == ck.sha256_file(a / "model.safetensors")


def test_build_ran_in_a_temporary_sibling_and_left_nothing(tmp_path):
    calls = []
    ck.cached("m", _builder(calls), FP, root=tmp_path, log=lambda m: None)
    assert calls[0] != tmp_path / "m" and calls[0].parent == tmp_path
    assert not calls[0].exists()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["m"]


def test_failed_build_leaves_no_target_and_no_temp(tmp_path):
    def build(tmp):
        (tmp / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("killed mid-training")

    with pytest.raises(RuntimeError, match="killed"):
        ck.cached("m", build, FP, root=tmp_path, log=lambda m: None)
    assert not (tmp_path / "m").exists()
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


def test_failed_rebuild_keeps_the_old_folder(tmp_path):
    ck.cached("m", _builder([]), FP, root=tmp_path, log=lambda m: None)

    def build(tmp):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        with ck.atomic_dir(tmp_path / "m", FP) as tmp:
            build(tmp)
    ck.verify(tmp_path / "m", FP)  # untouched and still valid


@pytest.mark.parametrize("damage, reason", [
    (lambda d: (d / "model.safetensors").write_bytes(b"weigh"), "SHA-256"),  # truncated
    (lambda d: (d / "model.safetensors").write_bytes(b"WEIGHTS"), "SHA-256"),  # same size, edited
    (lambda d: (d / "sub" / "config.json").unlink(), "missing"),
    (lambda d: (d / "extra.bin").write_bytes(b"x"), "not in the manifest"),
    (lambda d: (d / ck.MANIFEST).unlink(), "no MANIFEST"),  # a partial (interrupted) write
    (lambda d: (d / ck.MANIFEST).write_text("{not json"), "not a valid manifest"),
    (lambda d: (d / ck.MANIFEST).write_text("[]"), "not a valid manifest"),
    (lambda d: (d / ck.MANIFEST).write_text('{"files": {"model.safetensors": {}}}'), "not a valid manifest"),
])
def test_damaged_folder_is_detected_and_rebuilt(tmp_path, damage, reason):
    calls, logs = [], []
    path = ck.cached("m", _builder(calls), FP, root=tmp_path, log=logs.append)
    damage(path)
    with pytest.raises(ck.CorruptCheckpointError, match=reason):
        ck.verify(path, FP)
    again = ck.cached("m", _builder(calls), FP, root=tmp_path, log=logs.append)
    assert len(calls) == 2
    assert any("rebuilding" in m for m in logs)
    assert (again / "model.safetensors").read_bytes() == b"weights"
    ck.verify(again, FP)


def test_other_settings_rebuild(tmp_path):
    calls, logs = [], []
    ck.cached("m", _builder(calls), FP, root=tmp_path, log=logs.append)
    ck.cached("m", _builder(calls, b"new"), {**FP, "steps": 4}, root=tmp_path, log=logs.append)
    assert len(calls) == 2 and any("other settings" in m for m in logs)
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == b"new"


def test_fingerprint_normalised_like_json(tmp_path):
    calls = []
    ck.cached("m", _builder(calls), {"sizes": (1, 2)}, root=tmp_path, log=lambda m: None)
    ck.cached("m", _builder(calls), {"sizes": [1, 2]}, root=tmp_path, log=lambda m: None)
    assert len(calls) == 1


def test_target_that_is_a_file_is_replaced(tmp_path):
    (tmp_path / "m").write_text("not a folder")
    path = ck.cached("m", _builder([]), FP, root=tmp_path, log=lambda m: None)
    assert path.is_dir()
    ck.verify(path, FP)


@pytest.mark.parametrize("name", ["", "a/b", ".hidden", ".."])
def test_bad_names(tmp_path, name):
    with pytest.raises(ValueError, match="plain folder name"):
        ck.cached(name, _builder([]), FP, root=tmp_path)


def test_cache_dir_env(tmp_path, monkeypatch):
    monkeypatch.setenv(ck.ENV_VAR, str(tmp_path / "c"))
    assert ck.cache_dir() == tmp_path / "c" and (tmp_path / "c").is_dir()


def _concurrent_build(root: str, counter: str) -> str:
    def build(tmp):
        with open(counter, "a") as fh:
            fh.write("built\n")
        time.sleep(0.5)
        (tmp / "w.bin").write_bytes(b"w")

    return str(ck.cached("m", build, FP, root=root, log=lambda m: None))


def test_two_processes_build_once(tmp_path):
    counter = tmp_path / "count.txt"
    ctx = mp.get_context("fork") if hasattr(os, "fork") else mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        results = pool.starmap(_concurrent_build, [(str(tmp_path / "cache"), str(counter))] * 2)
    assert results[0] == results[1]
    assert counter.read_text().count("built") == 1
    ck.verify(results[0], FP)


def test_fingerprint_changes_with_the_code_and_rebuilds(tmp_path, monkeypatch):
    """Editing a module named in the fingerprint rebuilds the cached result (no stale cache)."""
    import importlib

    from ftbook.checkpoints import cached, fingerprint

    (tmp_path / "recipe_mod.py").write_text("STEPS = 3\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("recipe_mod")
    builds = []

    def build(folder):
        builds.append(1)
        (folder / "out.txt").write_text("x")

    first = fingerprint(module, sizes={"n": 1}, seed=0)
    assert first["code"]["recipe_mod"] and first["versions"]["torch"]
    cached("thing", build, first, root=tmp_path / "cache", log=lambda m: None)
    cached("thing", build, fingerprint(module, sizes={"n": 1}, seed=0), root=tmp_path / "cache", log=lambda m: None)
    assert len(builds) == 1
    (tmp_path / "recipe_mod.py").write_text("STEPS = 4  # the recipe changed\n", encoding="utf-8")
    second = fingerprint(module, sizes={"n": 1}, seed=0)
    assert second["code"] != first["code"]
    cached("thing", build, second, root=tmp_path / "cache", log=lambda m: None)
    assert len(builds) == 2
    with pytest.raises(TypeError, match="module objects"):
        fingerprint("recipe_mod")
    with pytest.raises(ValueError, match="filled in by fingerprint"):
        fingerprint(module, code=1)
