"""Checkpoints of the midterm project (``chapters/projects/midterm.ipynb``): Reuters R8 topics,
fine-tuned MiniLM against TF-IDF + logistic regression. Data: :mod:`ftbook.projects`."""

from __future__ import annotations

from collections import Counter

from . import exercise

NAME = "midterm"


def _data():
    from .. import projects

    return projects.project_data(NAME), projects.label_names(NAME)


def _macro_f1(y_true, y_pred, n: int) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y_true, y_pred, labels=list(range(n)), average="macro", zero_division=0))


def _predictions(answer, split: str, what: str) -> list[int]:
    """``answer`` as a list of label ids, one per document of ``split``."""
    d, names = _data()
    if answer is None:
        raise AssertionError(f"还没有作答：请给出{what}（{split} 集每篇文档一个标签编号）。")
    try:
        preds = [int(p) for p in answer]
    except (TypeError, ValueError):
        raise TypeError(f"{what}应是整数标签编号的列表，而不是 {type(answer).__name__}") from None
    if len(preds) != d[split].num_rows:
        raise AssertionError(f"{what}有 {len(preds)} 个，{split} 集有 {d[split].num_rows} 篇文档：是否用错了数据划分？")
    if min(preds) < 0 or max(preds) >= len(names):
        raise AssertionError(f"标签编号应在 0..{len(names) - 1} 之间（{names}），请用 argmax 后的编号。")
    return preds


@exercise("midterm.t1", "数据卡：训练集中每个主题的文档数（dict：主题名 → 篇数）。", level="easy")
def t1(answer) -> None:
    d, names = _data()
    if answer is None:
        raise AssertionError("还没有作答：请给出 {主题名: 篇数} 的字典。")
    if not isinstance(answer, dict):
        raise TypeError(f"请给出字典（主题名 → 篇数），而不是 {type(answer).__name__}")
    truth = {names[i]: c for i, c in Counter(d["train"]["label"]).items()}
    if set(answer) != set(names):
        raise AssertionError(f"键应是 8 个主题名 {names}，你给了 {sorted(map(str, answer))}：用 features['label'].names 转换编号。")
    wrong = {k: (answer[k], truth[k]) for k in names if answer[k] != truth[k]}
    if wrong:
        if sum(answer.values()) != d["train"].num_rows:
            raise AssertionError(f"总数 {sum(answer.values())} ≠ 训练集的 {d['train'].num_rows} 篇：是否数了别的划分？")
        raise AssertionError(f"这些主题的篇数不对（你的, 正确的）：{wrong}")


@exercise("midterm.t2", "多数类基线：总预测训练集最常见主题时，验证集上的 accuracy 与 macro-F1。", level="easy")
def t2(answer) -> None:
    d, names = _data()
    if answer is None:
        raise AssertionError('还没有作答：请给出 {"accuracy": ..., "macro_f1": ...}。')
    if not isinstance(answer, dict) or not {"accuracy", "macro_f1"} <= set(answer):
        raise TypeError('请给出含 "accuracy" 与 "macro_f1" 两个键的字典。')
    if answer["accuracy"] is None or answer["macro_f1"] is None:
        raise AssertionError("还没有作答：accuracy 与 macro_f1 还是 None。")
    majority = Counter(d["train"]["label"]).most_common(1)[0][0]
    y = d["validation"]["label"]
    acc = sum(t == majority for t in y) / len(y)
    f1 = _macro_f1(y, [majority] * len(y), len(names))
    if abs(float(answer["accuracy"]) - acc) > 1e-3:
        raise AssertionError(f"accuracy 不对：多数类是训练集中的 {names[majority]!r}，在验证集上数一数它占多少。")
    if abs(float(answer["macro_f1"]) - acc) < 1e-3 and abs(acc - f1) > 1e-3:
        raise AssertionError("macro-F1 不等于 accuracy：对 8 个类各算 F1（没被预测的类 F1 为 0），再取平均。")
    if abs(float(answer["macro_f1"]) - f1) > 1e-3:
        raise AssertionError("macro-F1 不对：用 sklearn.metrics.f1_score(..., average='macro', labels=range(8), zero_division=0)。")


@exercise("midterm.t3", "TF-IDF + 逻辑回归：在验证集上选好 C，交出拟合好的 Pipeline。", level="medium")
def t3(answer) -> None:
    from ..baselines import tfidf_logreg

    d, names = _data()
    if answer is None:
        raise AssertionError("还没有作答：请交出拟合好的 sklearn Pipeline（有 .predict）。")
    if not hasattr(answer, "predict"):
        raise TypeError(f"请交出有 .predict(texts) 的模型，而不是 {type(answer).__name__}")
    val = d["validation"]
    try:
        mine = _macro_f1(val["label"], [int(p) for p in answer.predict(val["text"])], len(names))
    except Exception as exc:
        raise AssertionError(f"模型无法对验证集文本做预测（是否已 fit？）：{type(exc).__name__}: {exc}") from None
    ref_model = tfidf_logreg(analyzer="word", ngram_range=(1, 1), C=1.0).fit(d["train"]["text"], d["train"]["label"])
    ref = _macro_f1(val["label"], ref_model.predict(val["text"]), len(names))
    if mine < ref - 0.02:
        raise AssertionError(f"验证集 macro-F1 只有 {mine:.3f}，默认设置（词 unigram，C=1）就有 {ref:.3f}："
                             "试试更大的 C、加 bigram，或 class_weight='balanced'。")


@exercise("midterm.t4", "微调 MiniLM：交出验证集上的预测（macro-F1 与 accuracy 都比多数类基线高 0.15 以上）。", level="medium")
def t4(answer) -> None:
    d, names = _data()
    preds = _predictions(answer, "validation", "验证集预测")
    y = d["validation"]["label"]
    f1 = _macro_f1(y, preds, len(names))
    majority = Counter(d["train"]["label"]).most_common(1)[0][0]
    base = _macro_f1(y, [majority] * len(y), len(names))
    if len(set(preds)) == 1:
        raise AssertionError("所有文档都预测成同一个主题：模型没学到东西（学习率太小或太大？训练轮数？）。")
    acc, base_acc = sum(int(a == b) for a, b in zip(y, preds)) / len(y), sum(int(t == majority) for t in y) / len(y)
    if f1 < base + 0.15 or acc < base_acc + 0.15:  # well clear of a majority guess; the small topics may still lag
        raise AssertionError(f"验证集 macro-F1 {f1:.3f}、accuracy {acc:.3f}，多数类基线 {base:.3f} / {base_acc:.3f}："
                             "各要高出 0.15 以上。检查学习率（1e-4 左右）和轮数。")


@exercise("midterm.t5", "测试集只读一次：两个模型在测试集上的预测（dict：\"tfidf\" / \"bert\" → 预测列表）。", level="medium")
def t5(answer) -> None:
    if answer is None:
        raise AssertionError('还没有作答：请给出 {"tfidf": [...], "bert": [...]}。')
    if not isinstance(answer, dict) or set(answer) != {"tfidf", "bert"}:
        raise TypeError('请给出恰好含 "tfidf" 与 "bert" 两个键的字典。')
    d, names = _data()
    for key in ("tfidf", "bert"):
        preds = _predictions(answer[key], "test", f"{key} 的测试集预测")
        if len(set(preds)) == 1:
            raise AssertionError(f"{key} 把所有测试文档都预测成同一类。")
    if answer["tfidf"] == answer["bert"]:
        raise AssertionError("两份预测完全相同：是不是把同一个模型的预测交了两次？")


@exercise("midterm.t6", "误差分析：两个模型的逐类 F1，以及 BERT 落后 TF-IDF 最多的主题。", level="hard")
def t6(answer) -> None:
    """``answer = {"tfidf": preds, "bert": preds, "per_class_f1": {"tfidf": {...}, "bert": {...}},
    "largest_gap": topic}`` on the test split."""
    from sklearn.metrics import f1_score

    if answer is None:
        raise AssertionError("还没有作答：请给出包含 tfidf / bert / per_class_f1 / largest_gap 的字典。")
    if not isinstance(answer, dict) or not {"tfidf", "bert", "per_class_f1", "largest_gap"} <= set(answer):
        raise TypeError("字典要有 tfidf、bert（测试集预测）、per_class_f1、largest_gap 四个键。")
    d, names = _data()
    if not isinstance(answer["per_class_f1"], dict) or any(
            not isinstance(answer["per_class_f1"].get(k), dict) for k in ("tfidf", "bert")):
        raise AssertionError('per_class_f1 还没填：应是 {"tfidf": {主题名: F1}, "bert": {主题名: F1}}。')
    y = d["test"]["label"]
    truth = {}
    for key in ("tfidf", "bert"):
        preds = _predictions(answer[key], "test", f"{key} 的测试集预测")
        scores = f1_score(y, preds, labels=list(range(len(names))), average=None, zero_division=0)
        truth[key] = dict(zip(names, map(float, scores)))
        given = answer["per_class_f1"].get(key, {})
        bad = [n for n in names if abs(float(given.get(n, -1)) - truth[key][n]) > 1e-3]
        if bad:
            raise AssertionError(f"{key} 的逐类 F1 在 {bad} 上不对：按主题名给出 f1_score(average=None) 的结果。")
    gap = max(names, key=lambda n: truth["tfidf"][n] - truth["bert"][n])
    if answer["largest_gap"] != gap:
        raise AssertionError(f"差距（TF-IDF − BERT）最大的主题不是 {answer['largest_gap']!r}：逐类相减再取最大。")
