"""Tests of ftbook.baselines on the real bundled data (tiny profile): TF-IDF + logistic regression
and naive Bayes reach their accuracies, tuning never sees the test split, the report reads it once
and is cached, label budgets are stratified and seeded, bad inputs raise."""

from collections import Counter

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from ftbook import baselines
from ftbook.resources import chinese_reviews, english_news


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A private, empty FTBOOK_CACHE for the whole module; the shipped prebuilt reports are ignored so
    that the spies watch a real build."""
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("cache")
        mp.setenv("FTBOOK_CACHE", str(path))
        mp.setenv("FTBOOK_NO_PREBUILT", "1")
        yield path


@pytest.fixture(scope="module")
def english():
    return english_news("tiny")


@pytest.fixture(scope="module")
def english_small(english):
    """A stratified 400-article slice of the English train split, and the validation split."""
    train = english["train"]
    idx = baselines.label_budget_indices(train["label"], 400, seed=0)
    texts, labels = list(train["text"]), list(train["label"])
    return ([texts[i] for i in idx], [labels[i] for i in idx]), \
        (list(english["validation"]["text"]), list(english["validation"]["label"]))


class _CountingSplits(dict):
    """A DatasetDict stand-in that logs every split it hands out."""

    def __init__(self, ds, events):
        super().__init__(ds)
        self.events = events

    def __getitem__(self, key):
        self.events.append(("read", key))
        return super().__getitem__(key)


def _spy_vectorizer(mp, events):
    """Log (method, first text, number of texts) for every TF-IDF fit and transform."""
    fit_transform, transform = TfidfVectorizer.fit_transform, TfidfVectorizer.transform

    def spy_fit_transform(self, raw, y=None):
        raw = list(raw)
        events.append(("fit", raw[0], len(raw)))
        return fit_transform(self, raw, y)

    def spy_transform(self, raw):
        raw = list(raw)
        events.append(("transform", raw[0], len(raw)))
        return transform(self, raw)

    mp.setattr(TfidfVectorizer, "fit_transform", spy_fit_transform)
    mp.setattr(TfidfVectorizer, "transform", spy_transform)


@pytest.fixture(scope="module")
def chinese_run(cache):
    """Build the Chinese report once (the book's tiny grid) with spies on data reads and tuning."""
    ds = chinese_reviews("tiny")
    events = []
    tune = baselines.tune_on_validation

    def spy_tune(*args, **kwargs):
        events.append(("tune-start",))
        out = tune(*args, **kwargs)
        events.append(("tune-end",))
        return out

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(baselines, "_load_splits", lambda track, prof: _CountingSplits(ds, events))
        mp.setattr(baselines, "tune_on_validation", spy_tune)
        _spy_vectorizer(mp, events)
        report = baselines.baseline_report("chinese", "tiny", log=lambda s: None)
    return report, events, ds


# --------------------------------------------------------------------------- accuracy


def test_chinese_char_tfidf_logreg_beats_majority(chinese_run):
    report, _, ds = chinese_run
    lr, nb, majority = report["tfidf_lr"], report["naive_bayes"], report["majority"]
    counts = Counter(ds["train"]["label"])
    top = max(counts, key=counts.get)
    assert majority["validation"] == pytest.approx(np.mean(np.array(ds["validation"]["label"]) == top))
    assert lr["val_accuracy"] >= 0.83
    assert lr["val_accuracy"] - majority["validation"] >= 0.3
    assert lr["test_accuracy"] - majority["test"] >= 0.25
    assert nb["val_accuracy"] > majority["validation"] + 0.2
    assert nb["test_accuracy"] > majority["test"] + 0.2
    assert report["analyzer"] == "char"
    assert report["sizes"] == {"train": len(ds["train"]), "train_available": len(ds["train"]),
                               "validation": len(ds["validation"]), "test": len(ds["test"])}


def test_report_choice_is_the_best_validation_row(chinese_run):
    report, _, _ = chinese_run
    for name, key in (("tfidf_lr", "C"), ("naive_bayes", "alpha")):
        table = report[name]["grid"]
        best = max(r["val_accuracy"] for r in table)
        chosen = [r for r in table if r["chosen"]]
        assert len(chosen) == 1 and chosen[0]["val_accuracy"] == best
        assert chosen[0] is next(r for r in table if r["val_accuracy"] == best)  # ties: the first
        assert report[name]["params"] == {"ngram_range": chosen[0]["ngram_range"], key: chosen[0][key]}
        assert {tuple(r["ngram_range"]) for r in table} == {(1, 2), (1, 3)}
        assert report[name]["fit_seconds"] > 0


def test_english_word_tfidf_logreg_and_naive_bayes(english):
    train, val = english["train"], english["validation"]
    _, lr_table = baselines.tune_on_validation(
        lambda **kw: baselines.tfidf_logreg(analyzer=baselines.default_analyzer("english"), **kw),
        {"ngram_range": [(1, 1)], "C": [4.0]}, train, val)
    nb, nb_table = baselines.tune_on_validation(
        lambda **kw: baselines.tfidf_naive_bayes(analyzer="word", **kw), {"alpha": [0.3]}, train, val)
    counts = Counter(train["label"])
    majority = np.mean(np.array(val["label"]) == max(counts, key=counts.get))
    assert lr_table[0]["val_accuracy"] >= 0.95
    assert nb_table[0]["val_accuracy"] > majority + 0.5
    probs = baselines.predict_proba(nb, val["text"][:7])
    assert probs.shape == (7, 5)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert list(probs.argmax(axis=1)) == list(nb.predict(val["text"][:7]))


# --------------------------------------------------------------------------- test split discipline


def test_report_reads_test_once_and_only_after_tuning(chinese_run):
    _, events, ds = chinese_run
    reads = [e[1] for e in events if e[0] == "read"]
    assert reads.count("test") == 1 and "test" not in reads[:-1]
    last_tune = max(i for i, e in enumerate(events) if e[0] == "tune-end")
    test_read = events.index(("read", "test"))
    assert test_read > last_tune
    assert sum(e[0] == "tune-start" for e in events) == 2
    test_texts = set(ds["test"]["text"])
    train_texts = set(ds["train"]["text"])
    for i, e in enumerate(events):
        if e[0] == "fit":
            assert e[1] in train_texts and e[2] == len(ds["train"])
        if e[0] in ("fit", "transform") and e[1] in test_texts:
            assert i > test_read and e[0] == "transform"
    assert sum(e[0] == "transform" and e[1] in test_texts for e in events) == 2  # one per baseline


def test_tune_on_validation_sees_only_train_and_validation(english_small, monkeypatch):
    (texts, labels), (vtexts, vlabels) = english_small
    events = []
    _spy_vectorizer(monkeypatch, events)
    grid = {"ngram_range": [(1, 1)], "alpha": [1.0, 0.1]}
    best, table = baselines.tune_on_validation(
        lambda **kw: baselines.tfidf_naive_bayes(analyzer="word", **kw), grid, (texts, labels), (vtexts, vlabels))
    assert events, "the spy saw no TF-IDF call"
    assert {(e[0], e[1], e[2]) for e in events} <= {("fit", texts[0], len(texts)),
                                                   ("transform", vtexts[0], len(vtexts))}
    assert [(r["ngram_range"], r["alpha"]) for r in table] == [((1, 1), 1.0), ((1, 1), 0.1)]
    assert best.score(vtexts, vlabels) == max(r["val_accuracy"] for r in table)


def test_shared_features_give_the_same_scores_as_fresh_fits(english_small):
    (texts, labels), (vtexts, vlabels) = english_small
    grid = [{"ngram_range": (1, 2), "C": 1.0}, {"ngram_range": (1, 2), "C": 16.0}]
    _, table = baselines.tune_on_validation(baselines.tfidf_logreg, [dict(analyzer="word", **p) for p in grid],
                                            (texts, labels), (vtexts, vlabels))
    for row, point in zip(table, grid):
        fresh = baselines.tfidf_logreg(analyzer="word", **point).fit(texts, labels)
        assert row["val_accuracy"] == pytest.approx(fresh.score(vtexts, vlabels))


def test_ties_go_to_the_first_grid_point(english_small):
    train, val = english_small
    best, table = baselines.tune_on_validation(
        lambda **kw: baselines.tfidf_naive_bayes(analyzer="word", **kw),
        [{"alpha": 0.5}, {"alpha": 0.5}], train, val)
    assert table[0]["val_accuracy"] == table[1]["val_accuracy"]
    assert [r["chosen"] for r in table] == [True, False]


# --------------------------------------------------------------------------- cache and budgets


def test_report_is_cached(chinese_run, monkeypatch):
    report, _, _ = chinese_run

    def fail(*args, **kwargs):
        raise AssertionError("the cached report was rebuilt")

    monkeypatch.setattr(baselines, "_build_report", fail)
    monkeypatch.setattr(baselines, "tune_on_validation", fail)
    assert baselines.baseline_report("chinese", "tiny", log=lambda s: None) == report


def test_budget_report_matches_a_refit_with_the_same_examples(cache, english):
    report = baselines.baseline_report("english", "tiny", train_limit=120, seed=3, log=lambda s: None)
    train = english["train"]
    idx = baselines.label_budget_indices(train["label"], 120, seed=3)
    texts = [train["text"][i] for i in idx]
    labels = [train["label"][i] for i in idx]
    assert report["sizes"]["train"] == 120 and report["sizes"]["train_available"] == len(train)
    params = report["tfidf_lr"]["params"]
    pipe = baselines.tfidf_logreg(analyzer="word", ngram_range=tuple(params["ngram_range"]), C=params["C"])
    pipe.fit(texts, labels)
    assert pipe.score(english["validation"]["text"], english["validation"]["label"]) == \
        pytest.approx(report["tfidf_lr"]["val_accuracy"])
    assert pipe.score(english["test"]["text"], english["test"]["label"]) == \
        pytest.approx(report["tfidf_lr"]["test_accuracy"])
    other = baselines.baseline_report("english", "tiny", train_limit=120, seed=4, log=lambda s: None)
    assert other["seed"] == 4 and other["sizes"]["train"] == 120


@pytest.mark.parametrize("load", [chinese_reviews, english_news])
def test_label_budget_indices_are_stratified_and_seeded(load):
    labels = list(load("tiny")["train"]["label"])
    share = Counter(labels)
    for n in (100, 300, 1000):
        idx = baselines.label_budget_indices(labels, n, seed=0)
        assert len(idx) == n == len(set(idx))
        got = Counter(labels[i] for i in idx)
        for c, count in share.items():
            assert abs(got[c] - n * count / len(labels)) < 1
        assert idx == baselines.label_budget_indices(labels, n, seed=0)
        assert idx != baselines.label_budget_indices(labels, n, seed=1)
    everything = baselines.label_budget_indices(labels, None, seed=0)
    assert sorted(everything) == list(range(len(labels)))
    with pytest.raises(ValueError, match="more than"):
        baselines.label_budget_indices(labels, len(labels) + 1, seed=0)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("call, error, match", [
    (lambda: baselines.default_analyzer("french"), ValueError, "unknown track"),
    (lambda: baselines.baseline_report("french"), ValueError, "unknown track"),
    (lambda: baselines.baseline_report("english", train_limit=0), ValueError, "train_limit"),
    (lambda: baselines.tfidf_logreg(analyzer="bpe"), ValueError, "analyzer"),
    (lambda: baselines.tfidf_logreg(ngram_range=(3, 1)), ValueError, "ngram_range"),
    (lambda: baselines.tfidf_logreg(C=0), ValueError, "C must be"),
    (lambda: baselines.tfidf_naive_bayes(alpha=-1), ValueError, "alpha"),
    (lambda: baselines.label_budget_indices([], 1), ValueError, "empty"),
    (lambda: baselines.label_budget_indices([0, 1, 1], 0), ValueError, "positive"),
    (lambda: baselines.label_budget_indices([0, 1, 1], True), ValueError, "positive"),
    (lambda: baselines.predict_proba(baselines.tfidf_logreg(), []), ValueError, "empty"),
])
def test_bad_arguments_raise(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize("train, val, grid, match", [
    (([], []), (["a b"], [0]), {"C": [1.0]}, "train texts is empty"),
    ((["a b", "c d"], [0]), (["a b"], [0]), {"C": [1.0]}, "2 texts but 1 labels"),
    ((["a b", "c d"], [0, 1]), ([], []), {"C": [1.0]}, "validation texts is empty"),
    ((["a b", "c d"], [0, 0]), (["a b"], [0]), {"C": [1.0]}, "one class"),
    ((["a b", "c d"], [0, 1]), (["a b"], [0]), {}, "grid is empty"),
    ((["a b", "c d"], [0, 1]), (["a b"], [0]), [], "grid is empty"),
    ((["a b", "c d"], [0, 1]), (["a b"], [0]), {"C": []}, "grid is empty"),
])
def test_tune_rejects_bad_input(train, val, grid, match):
    with pytest.raises(ValueError, match=match):
        baselines.tune_on_validation(lambda **kw: baselines.tfidf_logreg(analyzer="word", min_df=1, **kw),
                                     grid, train, val)


def test_predict_proba_needs_a_fitted_pipeline():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError, match="not fitted"):
        baselines.predict_proba(baselines.tfidf_naive_bayes(), ["好评"])


def test_report_test_predictions_give_its_test_accuracy(tmp_path, monkeypatch):
    monkeypatch.setenv("FTBOOK_CACHE", str(tmp_path))
    from ftbook import resources

    report = baselines.baseline_report("english", "tiny", train_limit=120, log=lambda m: None)
    truth = resources.english_news("tiny")["test"]["label"]
    for name in ("tfidf_lr", "naive_bayes"):
        preds = report[name]["test_predictions"]
        assert len(preds) == len(truth)
        assert sum(p == t for p, t in zip(preds, truth)) / len(truth) == pytest.approx(report[name]["test_accuracy"])
