"""Chapter 9's label-budget experiment (ftbook.label_budgets), at a size that trains in seconds."""

import json
from types import MappingProxyType

import pytest

from ftbook import config
from ftbook import label_budgets as L

SMALL = {"budgets": [16, None], "max_steps": [4, 6], "lrs": [1e-4, 1e-3], "seeds": [0, 1], "evals": 2,
         "patience": 1, "batch_size": 8, "max_length": 32, "val_max": 24, "group_by_length": True}


@pytest.fixture
def small(monkeypatch):
    section = dict(config._SECTIONS["label_budgets"])
    section["tiny"] = MappingProxyType({**config._SECTIONS["label_budgets"]["tiny"], **SMALL})
    monkeypatch.setitem(config._SECTIONS, "label_budgets", section)
    data = L.splits

    def small_data(prof, sizes):
        d = data(prof, sizes)
        return {"train": (d["train"][0][:40], d["train"][1][:40]), "validation": d["validation"],
                "test": (d["test"][0][:30], d["test"][1][:30])}

    monkeypatch.setattr(L, "splits", small_data)
    monkeypatch.setattr(L, "SHIPPED_ROOT", L.SHIPPED_ROOT.parent / "no-such-results")


def test_experiment_tunes_on_validation_and_reads_test_for_chosen_runs_only(small, tmp_path):
    res = L.run_experiment(tmp_path / "run", "tiny", workers=1, log=lambda m: None)
    assert [r["labels"] for r in res["rows"]] == [16, 40] and res["n_val"] == 24 and res["n_test"] == 30
    runs = {p.stem for p in (tmp_path / "run" / "runs").glob("*.json")}
    assert len(runs) == 2 * 2 * 2 + 2 * 2 * 1  # every rate at seed 0, then seed 1 at the chosen rate
    for r in res["rows"]:
        for arm in ("pretrained", "random"):
            tuning = {float(k): v for k, v in r["tuning"][arm].items()}
            assert r["lr"][arm] == L.choose(tuning) and max(tuning.values()) == tuning[r["lr"][arm]]
            assert len(r["runs"][arm]) == 2 and r[arm] == pytest.approx(sum(r["runs"][arm]) / 2, abs=1e-4)
            assert all(1 <= s <= 6 for s in r["best_steps"][arm])
        assert len(r["runs"]["tfidf_lr"]) == 2
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "run" / "runs").glob("*.json")}
    assert L.run_experiment(tmp_path / "run", "tiny", workers=1, log=lambda m: None)["rows"] == res["rows"]
    assert before == {p: p.stat().st_mtime_ns for p in (tmp_path / "run" / "runs").glob("*.json")}  # resumed: no rerun


def test_choose_prefers_accuracy_then_the_smaller_rate():
    assert L.choose({1e-4: 0.7, 3e-4: 0.8, 1e-3: 0.8}) == 3e-4
    with pytest.raises(ValueError, match="no tuning"):
        L.choose({})


def test_out_dir_of_other_settings_is_refused(small, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "settings.json").write_text(json.dumps({"profile": "other"}))
    with pytest.raises(ValueError, match="other settings"):
        L.run_experiment(tmp_path / "run", "tiny", workers=1, log=lambda m: None)


def test_shipped_result_is_used_only_with_matching_settings(small, tmp_path):
    L.run_experiment(tmp_path / "run", "tiny", workers=1, log=lambda m: None)
    dest = L.ship(tmp_path / "run", tmp_path / "shipped")
    res = L.label_budget_experiment("tiny", shipped=dest, root=tmp_path / "cache", log=lambda m: None)
    assert res["source"] == "shipped" and not (tmp_path / "cache").exists()
    (dest / "results.json").write_text("{}")
    with pytest.raises(Exception, match="results.json"):
        L.label_budget_experiment("tiny", shipped=dest, root=tmp_path / "cache")


def test_budget_run_bad_arguments():
    with pytest.raises(ValueError, match="differ in length"):
        L.budget_run("x", ["a"], [0, 1], ["b"], [0], pretrained=False, lr=1e-3, max_steps=2, evals=1, patience=1)
    with pytest.raises(ValueError, match="evals"):
        L.budget_run("x", ["a"], [0], ["b"], [0], pretrained=False, lr=1e-3, max_steps=2, evals=3, patience=1)


def _synthetic_reviews(n, seed):
    """Texts whose label is whether '好' or '差' is in them (among filler characters)."""
    import random

    rng = random.Random(seed)
    filler = "这家店的房间服务一般我们住了两天早餐还可以"
    texts, labels = [], []
    for _ in range(n):
        y = rng.randrange(2)
        chars = [rng.choice(filler) for _ in range(rng.randrange(6, 14))]
        chars.insert(rng.randrange(len(chars)), "好" if y else "差")
        texts.append("".join(chars))
        labels.append(y)
    return texts, labels


def test_budget_run_learns_keeps_the_best_weights_and_test_accuracy_reads_them(tmp_path):
    from transformers import BertConfig

    from ftbook import pretrain

    texts, labels = _synthetic_reviews(120, seed=0)
    val_texts, val_labels = _synthetic_reviews(100, seed=1)
    test_texts, test_labels = _synthetic_reviews(200, seed=2)
    tok = pretrain.build_tokenizer(texts, tmp_path, min_freq=1, max_length=32)
    BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
               intermediate_size=64).save_pretrained(tmp_path)
    run = L.budget_run(tmp_path, texts, labels, val_texts, val_labels, pretrained=False, lr=2e-3, max_steps=60,
                       evals=6, patience=10, batch_size=16, max_length=32, weights_out=tmp_path / "w.safetensors")
    assert [h["step"] for h in run["history"]] == [10, 20, 30, 40, 50, 60] and run["steps"] == 60
    best = max(run["history"], key=lambda h: h["val_accuracy"])
    assert run["val_accuracy"] == best["val_accuracy"] and run["best_step"] == best["step"]
    majority = max(sum(test_labels), len(test_labels) - sum(test_labels)) / len(test_labels)
    acc = L.test_accuracy(tmp_path, tmp_path / "w.safetensors", test_texts, test_labels, max_length=32)
    assert acc > majority + 0.2, (acc, majority)


def test_the_shipped_result_is_current_and_complete(tmp_path):
    """Changing the sizes, the checkpoint or the data without rerunning the experiment fails here
    (chapter 9 would otherwise spend an hour recomputing it): rerun ``python -m ftbook label-budgets``."""
    res = L.label_budget_experiment("tiny", root=tmp_path, log=lambda m: None)
    assert res["source"] == "shipped" and not list(tmp_path.iterdir())
    sizes = L.get_profile("tiny").sizes("label_budgets")
    assert [r["labels"] for r in res["rows"]] == sizes.budgets and res["seeds"] == sizes.seeds
    for r in res["rows"]:
        for arm in ("pretrained", "random", "tfidf_lr"):
            assert len(r["runs"][arm]) == len(sizes.seeds) and 0.5 < r[arm] < 1
        for arm in L.ARMS:
            assert r["lr"][arm] == L.choose({float(k): v for k, v in r["tuning"][arm].items()})
