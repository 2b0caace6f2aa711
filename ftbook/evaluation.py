"""Evaluating a classifier and tuning it: metrics, confusion matrix, calibration, errors, search.

Taught in chapter 11 (``chapters/11_evaluation.ipynb``, "模型评估与调参").

* :func:`classification_report` — accuracy, precision / recall / F1 (macro and per class), computed
  with scikit-learn after strict input checks (:func:`check_labels`): different lengths, unknown
  labels and empty sets raise errors instead of yielding a silent number.
* :func:`confusion` / :func:`plot_confusion_matrix` — which class is taken for which.
* :func:`calibration_bins`, :func:`expected_calibration_error`, :func:`plot_reliability` — does a
  confidence of 0.9 mean right 90 % of the time?
* :func:`most_confident_mistakes` — the error-analysis table on real examples.
* :func:`lr_warmup_search` / :func:`plot_search` — a small, cached grid search over learning
  rate x warm-up with :func:`ftbook.training.train`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

from .config import Profile, get_profile
from .data import Encoded

# --------------------------------------------------------------------------- input checks


def _as_int_list(values, what: str) -> list[int]:
    try:
        import numpy as np

        if isinstance(values, np.ndarray) or hasattr(values, "tolist"):
            values = values.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{what} must be a sequence of integer class ids, got {type(values).__name__}")
    out = []
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, int):
            if isinstance(v, float) and v.is_integer():
                v = int(v)
            else:
                raise TypeError(f"{what}[{i}] is {v!r} ({type(v).__name__}); expected an integer class id")
        out.append(v)
    return out


def check_labels(y_true, y_pred, num_labels: int) -> tuple[list[int], list[int]]:
    """Validate two label sequences: same length, not empty, every id in ``[0, num_labels)``."""
    if not isinstance(num_labels, int) or isinstance(num_labels, bool) or num_labels < 2:
        raise ValueError(f"num_labels must be an int >= 2, got {num_labels!r}")
    t, p = _as_int_list(y_true, "y_true"), _as_int_list(y_pred, "y_pred")
    if len(t) != len(p):
        raise ValueError(f"y_true has {len(t)} labels but y_pred has {len(p)}; they must pair up one to one")
    if not t:
        raise ValueError("y_true and y_pred are empty: nothing to evaluate")
    for name, seq in (("y_true", t), ("y_pred", p)):
        unknown = sorted({v for v in seq if not 0 <= v < num_labels})
        if unknown:
            raise ValueError(f"{name} holds unknown label ids {unknown[:10]}; expected ids in [0, {num_labels})")
    return t, p


def _names(label_names: Sequence[str] | None, num_labels: int | None) -> list[str]:
    if label_names is None:
        if num_labels is None:
            raise ValueError("give label_names or num_labels")
        return [str(i) for i in range(num_labels)]
    names = [str(n) for n in label_names]
    if len(set(names)) != len(names):
        raise ValueError(f"label_names has duplicates: {names}")
    if num_labels is not None and len(names) != num_labels:
        raise ValueError(f"{len(names)} label_names for {num_labels} labels")
    return names


# --------------------------------------------------------------------------- metrics


def classification_report(y_true, y_pred, label_names: Sequence[str]) -> dict:
    """Accuracy, macro / weighted precision-recall-F1 and a per-class table (scikit-learn)."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    names = _names(label_names, None)
    t, p = check_labels(y_true, y_pred, len(names))
    labels = list(range(len(names)))
    prec, rec, f1, support = precision_recall_fscore_support(t, p, labels=labels, zero_division=0)
    macro = precision_recall_fscore_support(t, p, labels=labels, average="macro", zero_division=0)
    weighted = precision_recall_fscore_support(t, p, labels=labels, average="weighted", zero_division=0)
    return {
        "accuracy": float(accuracy_score(t, p)),
        "macro_precision": float(macro[0]), "macro_recall": float(macro[1]), "macro_f1": float(macro[2]),
        "weighted_f1": float(weighted[2]), "n": len(t),
        "per_class": [
            {"label": n, "precision": float(a), "recall": float(b), "f1": float(c), "support": int(d)}
            for n, a, b, c, d in zip(names, prec, rec, f1, support)
        ],
    }


def format_report(report: dict) -> str:
    """The per-class table and the summary lines, as fixed-width text (rounded to 4 digits)."""
    width = max(8, *(len(r["label"]) for r in report["per_class"]))
    lines = [f"{'label':<{width}}  precision  recall      f1  support"]
    for r in report["per_class"]:
        lines.append(f"{r['label']:<{width}}  {r['precision']:9.4f}  {r['recall']:6.4f}  {r['f1']:6.4f}  {r['support']:7d}")
    lines.append(f"{'macro':<{width}}  {report['macro_precision']:9.4f}  {report['macro_recall']:6.4f}  "
                 f"{report['macro_f1']:6.4f}  {report['n']:7d}")
    lines.append(f"accuracy {report['accuracy']:.4f}")
    return "\n".join(lines)


def confusion(y_true, y_pred, num_labels: int):
    """Confusion matrix ``(num_labels, num_labels)``: row = true class, column = predicted class."""
    import numpy as np
    from sklearn.metrics import confusion_matrix

    t, p = check_labels(y_true, y_pred, num_labels)
    return np.asarray(confusion_matrix(t, p, labels=list(range(num_labels))))


def plot_confusion_matrix(cm, label_names: Sequence[str], ax=None, normalize: bool = True,
                          title: str = "混淆矩阵"):
    """Draw a confusion matrix (rows normalised to recall when ``normalize``) with counts in cells."""
    import matplotlib.pyplot as plt
    import numpy as np

    cm = np.asarray(cm)
    names = _names(label_names, None)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] != len(names):
        raise ValueError(f"cm must be square ({len(names)}, {len(names)}) for {len(names)} labels, got {cm.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(1.1 * len(names) + 2.4, 1.0 * len(names) + 1.6))
    rows = cm.sum(axis=1, keepdims=True)
    shown = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=float), where=rows > 0) if normalize else cm
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("预测类别")
    ax.set_ylabel("真实类别")
    ax.set_title(title)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, str(int(cm[i, j])), ha="center", va="center",
                    color="white" if shown[i, j] > (0.5 if normalize else shown.max() / 2) else "black")
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return ax


# --------------------------------------------------------------------------- probabilities, calibration


def softmax(logits):
    """Row-wise softmax of a ``(n, k)`` array / tensor as a float64 NumPy array (stable)."""
    import numpy as np

    x = np.asarray(logits.detach().cpu() if hasattr(logits, "detach") else logits, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] < 2:
        raise ValueError(f"logits must have shape (n, num_labels) with n >= 1, num_labels >= 2; got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("logits contain NaN or infinity")
    x = x - x.max(axis=1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=1, keepdims=True)


def _check_probs(probs, y_true):
    import numpy as np

    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise ValueError(f"probs must have shape (n, num_labels), got {probs.shape}")
    if probs.shape[0] == 0:
        raise ValueError("probs is empty: nothing to evaluate")
    if (probs < 0).any() or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError("each row of probs must be a probability distribution (>= 0, sums to 1); "
                         "pass softmax(logits), not raw logits")
    t = _as_int_list(y_true, "y_true")
    if len(t) != probs.shape[0]:
        raise ValueError(f"y_true has {len(t)} labels but probs has {probs.shape[0]} rows")
    t, _ = check_labels(t, t, probs.shape[1])
    return probs, np.asarray(t)


def calibration_bins(probs, y_true, n_bins: int = 10) -> list[dict]:
    """Group predictions by confidence (max probability) into ``n_bins`` equal-width bins.

    Each bin: ``lower``, ``upper``, ``count``, ``confidence`` (mean max-probability), ``accuracy``.
    Empty bins are kept with ``count`` 0 (and NaN means) so every call returns ``n_bins`` rows.
    """
    import numpy as np

    if not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive int, got {n_bins!r}")
    probs, t = _check_probs(probs, y_true)
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == t
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        m = which == b
        rows.append({"lower": float(edges[b]), "upper": float(edges[b + 1]), "count": int(m.sum()),
                     "confidence": float(conf[m].mean()) if m.any() else math.nan,
                     "accuracy": float(correct[m].mean()) if m.any() else math.nan})
    return rows


def expected_calibration_error(probs, y_true, n_bins: int = 10) -> float:
    """ECE = sum over bins of (bin share) x |accuracy - confidence|."""
    rows = calibration_bins(probs, y_true, n_bins)
    n = sum(r["count"] for r in rows)
    return float(sum(r["count"] / n * abs(r["accuracy"] - r["confidence"]) for r in rows if r["count"]))


def plot_reliability(bins: Sequence[dict], ax=None, title: str = "可靠性图（校准）"):
    """Reliability diagram: accuracy per confidence bin vs the diagonal of perfect calibration."""
    import matplotlib.pyplot as plt

    if not bins:
        raise ValueError("no bins to plot; pass calibration_bins(...)")
    if ax is None:
        _, ax = plt.subplots(figsize=(4.6, 4.0))
    width = bins[0]["upper"] - bins[0]["lower"]
    full = [b for b in bins if b["count"]]
    ax.bar([b["lower"] for b in full], [b["accuracy"] for b in full], width=width, align="edge",
           edgecolor="black", alpha=0.7, label="各区间的准确率")
    ax.plot([0, 1], [0, 1], "--", color="gray", label="完美校准")
    for b in full:
        ax.text(b["lower"] + width / 2, min(b["accuracy"], 0.93) + 0.02, str(b["count"]), ha="center", fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("置信度（最大预测概率）")
    ax.set_ylabel("实际准确率")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    return ax


# --------------------------------------------------------------------------- error analysis


def most_confident_mistakes(texts: Sequence[str], y_true, probs, label_names: Sequence[str], k: int = 5,
                            max_chars: int = 80) -> list[dict]:
    """The ``k`` wrong predictions the model was most sure of: text (shortened), truth, guess, p."""
    import numpy as np

    probs, t = _check_probs(probs, y_true)
    names = _names(label_names, probs.shape[1])
    if len(texts) != len(t):
        raise ValueError(f"{len(texts)} texts for {len(t)} labels; they must pair up one to one")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(pred != t)
    wrong = wrong[np.argsort(-probs[wrong, pred[wrong]], kind="stable")][:k]
    rows = []
    for i in wrong:
        text = " ".join(str(texts[i]).split())
        rows.append({"index": int(i), "text": text if len(text) <= max_chars else text[: max_chars - 1] + "…",
                     "true": names[t[i]], "predicted": names[pred[i]],
                     "p_predicted": float(probs[i, pred[i]]), "p_true": float(probs[i, t[i]])})
    return rows


# --------------------------------------------------------------------------- predictions of a checkpoint


def checkpoint_predictions(checkpoint: str | Path, track: str = "english", split: str = "test",
                           profile: str | Profile | None = None, max_length: int | None = None) -> dict:
    """Logits, labels and texts of a fine-tuned checkpoint on one split of the track's data."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from . import finetune, resources, training  # noqa: F401 (finetune registers its sizes)

    prof = get_profile(profile)
    ds = resources.english_news(prof) if track == "english" else resources.chinese_reviews(prof)
    if split not in ds:
        raise ValueError(f"split must be one of {list(ds)}, got {split!r}")
    tok = resources.from_pretrained(AutoTokenizer, str(checkpoint))
    model = resources.quiet_load(lambda: resources.from_pretrained(AutoModelForSequenceClassification,
                                                                    str(checkpoint)))
    data = Encoded.from_dataset(ds[split], tok, max_length or prof.sizes("finetune").max_length)
    with torch.no_grad():
        logits = training.predict_logits(model, data, prof.sizes("finetune").eval_batch_size)
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    return {"logits": logits.numpy(), "labels": list(data.labels), "texts": list(ds[split]["text"]),
            "label_names": names}


# --------------------------------------------------------------------------- hyper-parameter search


def _search_run(prof: Profile, config, max_length: int, eval_samples: int, eval_batch_size: int,
                seed: int) -> dict:
    """One grid point: fine-tune from the pretrained weights with ``config``, score on validation."""
    from . import finetune, training
    from .environment import set_seed

    set_seed(seed)
    model, tok, ds = finetune.load_track("english", prof)
    train = Encoded.from_dataset(ds["train"], tok, max_length)
    val = Encoded.from_dataset(ds["validation"], tok, max_length, limit=eval_samples)
    res = training.train(model, train, None, config)
    metrics = training.evaluate(model, val, eval_batch_size)
    return {"lr": config.lr, "warmup_ratio": config.warmup_ratio, "val_accuracy": metrics["accuracy"],
            "val_loss": metrics["loss"], "seconds": round(res.seconds, 2)}


def _search_build(prof: Profile, folder: Path, workers: int | None = None) -> None:
    import itertools

    from . import finetune
    from .workers import run_all

    s = prof.sizes("finetune")
    tasks, names = [], []
    for lr, warmup in itertools.product(s.search_lrs, s.search_warmups):
        cfg = finetune.track_config("english", prof, lr=lr, warmup_ratio=warmup, max_steps=s.search_steps,
                                    eval_every=None, patience=None, progress=False)
        tasks.append(((prof, cfg, s.search_max_length, s.search_eval_samples, s.eval_batch_size, s.seed), {}))
        names.append(f"search lr={lr:g} warmup={warmup:g}")
    rows = run_all(_search_run, tasks, workers, names=names)  # one thread per run, in parallel
    (folder / "search.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")


def lr_warmup_search(profile: str | Profile | None = None, workers: int | None = None) -> list[dict]:
    """Grid search learning rate x warm-up ratio on the English track (short runs), cached.

    Every run starts from the same pretrained weights and seed, trains ``search_steps`` steps on
    texts truncated to ``search_max_length`` tokens, and is scored on the validation split. The
    runs are independent: :func:`ftbook.workers.run_all` trains them side by side, one thread each
    (``workers=None``: up to 2 processes; the numbers do not depend on ``workers``).
    """
    import sys

    from . import data, finetune, optim, training  # finetune registers the "finetune" sizes
    from .checkpoints import cached, fingerprint
    from .models import source_fingerprint

    prof = get_profile(profile)
    s = prof.sizes("finetune")
    fp = fingerprint(sys.modules[__name__], finetune, training, optim, data, profile=prof.name,
                     lrs=list(s.search_lrs), warmups=list(s.search_warmups), steps=s.search_steps,
                     max_length=s.search_max_length, eval=s.search_eval_samples, batch=s.batch_size,
                     seed=s.seed, base=source_fingerprint(finetune.base_model_path("english", prof)), threads=1)
    folder = cached(f"finetune-search-{prof.name}", lambda tmp: _search_build(prof, tmp, workers), fp)
    return json.loads((folder / "search.json").read_text(encoding="utf-8"))


def best_setting(rows: Sequence[dict], metric: str = "val_accuracy") -> dict:
    """The row with the highest ``metric`` (ties: the smaller learning rate, then less warm-up)."""
    if not rows:
        raise ValueError("no search results")
    if any(metric not in r for r in rows):
        raise KeyError(f"every row needs {metric!r}; got keys {sorted(rows[0])}")
    return max(rows, key=lambda r: (r[metric], -r.get("lr", 0), -r.get("warmup_ratio", 0)))


def plot_search(rows: Sequence[dict], ax=None, title: str = "学习率 × 预热比例：验证集准确率"):
    """Validation accuracy against learning rate (log axis), one line per warm-up ratio."""
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("no search results to plot")
    if ax is None:
        _, ax = plt.subplots()
    for w in sorted({r["warmup_ratio"] for r in rows}):
        pts = sorted((r["lr"], r["val_accuracy"]) for r in rows if r["warmup_ratio"] == w)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=f"预热比例 {w:g}")
    ax.set_xscale("log")
    ax.set_xlabel("学习率（对数坐标）")
    ax.set_ylabel("验证集准确率")
    ax.set_title(title)
    ax.legend()
    return ax


def search_table(rows: Sequence[dict]) -> str:
    """The search results as fixed-width text, best first."""
    if not rows:
        raise ValueError("no search results")
    ordered = sorted(rows, key=lambda r: (-r["val_accuracy"], r["lr"], r["warmup_ratio"]))
    lines = ["      lr  warmup  val_acc  val_loss"]
    lines += [f"{r['lr']:8.0e}  {r['warmup_ratio']:6.2f}  {r['val_accuracy']:7.4f}  {r['val_loss']:8.4f}"
              for r in ordered]
    return "\n".join(lines)


__all__: list[Any] = [
    "check_labels", "classification_report", "format_report", "confusion", "plot_confusion_matrix",
    "softmax", "calibration_bins", "expected_calibration_error", "plot_reliability",
    "most_confident_mistakes", "checkpoint_predictions", "lr_warmup_search", "best_setting",
    "plot_search", "search_table",
]
