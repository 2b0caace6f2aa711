"""Checkpoints of the final project (``chapters/projects/final.ipynb``): who wrote the tweet,
Clinton or Trump - TF-IDF, a frozen MiniLM probe, LoRA and full fine-tuning compared.
Data: :mod:`ftbook.projects`; LoRA: :mod:`ftbook.lora` (chapter 15)."""

from __future__ import annotations

import statistics
from collections import Counter

from . import exercise

NAME = "final"
SIGNATURE = "-H"  # Clinton's own tweets are signed "-H"


def _data():
    from .. import projects

    return projects.project_data(NAME), projects.label_names(NAME)


def _accuracy(y, preds) -> float:
    return sum(int(a) == int(b) for a, b in zip(y, preds)) / len(y)


def _predictions(answer, split: str, what: str) -> list[int]:
    d, _ = _data()
    if answer is None:
        raise AssertionError(f"还没有作答：请给出{what}（{split} 集每条推文一个 0/1 标签）。")
    try:
        preds = [int(p) for p in answer]
    except (TypeError, ValueError):
        raise TypeError(f"{what}应是 0/1 整数的列表，而不是 {type(answer).__name__}") from None
    if len(preds) != d[split].num_rows:
        raise AssertionError(f"{what}有 {len(preds)} 个，{split} 集有 {d[split].num_rows} 条：是否用错了数据划分？")
    if set(preds) - {0, 1}:
        raise AssertionError("标签只能是 0（HillaryClinton）或 1（realDonaldTrump）。")
    return preds


@exercise("final.t1", "捷径特征：训练集中每位作者的推文里，以签名 \"-H\" 结尾的比例（dict：作者 → 比例）。", level="easy")
def t1(answer) -> None:
    d, names = _data()
    if answer is None:
        raise AssertionError("还没有作答：请给出 {作者: 比例} 的字典。")
    if not isinstance(answer, dict) or set(answer) != set(names):
        raise TypeError(f"请给出以 {names} 为键的字典。")
    for i, author in enumerate(names):
        texts = [t for t, y in zip(d["train"]["text"], d["train"]["label"]) if y == i]
        truth = sum(t.rstrip().endswith(SIGNATURE) for t in texts) / len(texts)
        anywhere = sum(SIGNATURE in t for t in texts) / len(texts)
        got = float(answer[author])
        if abs(got - truth) > 1e-3:
            hint = "你数的是“含有” -H，题目问的是“以 -H 结尾”（先 rstrip）。" if abs(got - anywhere) < 1e-3 else \
                "用该作者的推文条数作分母。"
            raise AssertionError(f"{author} 的比例不对。{hint}")


@exercise("final.t2", "TF-IDF + 逻辑回归基线：交出在验证集上选定的、拟合好的 Pipeline。", level="easy")
def t2(answer) -> None:
    from ..baselines import tfidf_logreg

    d, _ = _data()
    if answer is None or not hasattr(answer, "predict"):
        raise AssertionError("还没有作答：请交出拟合好的 sklearn Pipeline（有 .predict）。")
    val = d["validation"]
    try:
        mine = _accuracy(val["label"], answer.predict(val["text"]))
    except Exception as exc:
        raise AssertionError(f"模型无法对验证集做预测（是否已 fit？）：{type(exc).__name__}: {exc}") from None
    ref = tfidf_logreg(analyzer="word", ngram_range=(1, 1), C=1.0).fit(d["train"]["text"], d["train"]["label"])
    base = _accuracy(val["label"], ref.predict(val["text"]))
    if mine < base - 0.02:
        raise AssertionError(f"验证集准确率 {mine:.3f}，默认设置（词 unigram，C=1）就有 {base:.3f}：在验证集上调一调 C 与 n-gram。")


@exercise("final.t3", "冻结的 MiniLM + 逻辑回归（探针）：交出验证集预测。", level="medium")
def t3(answer) -> None:
    d, _ = _data()
    preds = _predictions(answer, "validation", "探针的验证集预测")
    y = d["validation"]["label"]
    majority = Counter(d["train"]["label"]).most_common(1)[0][0]
    base = _accuracy(y, [majority] * len(y))
    acc = _accuracy(y, preds)
    if acc < base + 0.1:
        raise AssertionError(f"验证集准确率 {acc:.3f}，多数类就有 {base:.3f}：句向量取了 [CLS] 还是平均池化？别忘了用 attention_mask 排除填充。")


@exercise("final.t4", "用 ftbook.lora.apply_lora 给 MiniLM 的 query/value 加 LoRA，只训练 LoRA 与分类头。", level="medium")
def t4(answer) -> None:
    import torch.nn as nn

    from ..lora import LoRALinear, count_parameters

    if answer is None:
        raise AssertionError("还没有作答：请交出加好 LoRA 的模型（nn.Module）。")
    if not isinstance(answer, nn.Module):
        raise TypeError(f"请交出模型（nn.Module），而不是 {type(answer).__name__}")
    wrapped = [n for n, m in answer.named_modules() if isinstance(m, LoRALinear)]
    layers = [n for n, m in answer.named_modules() if n.endswith("attention.self")]
    for part in ("query", "value"):
        hit = [n for n in wrapped if n.endswith("." + part)]
        if len(hit) != len(layers):
            raise AssertionError(f"{len(layers)} 层注意力中只有 {len(hit)} 个 {part} 被 LoRA 包住：target_modules 要含 {part!r}。")
    if any(n.endswith((".key", ".dense")) for n in wrapped):
        raise AssertionError("题目只要求 query 与 value：key 或 dense 也被包住了。")
    trainable, total = count_parameters(answer)
    head = [p for n, p in answer.named_parameters() if n.startswith("classifier")]
    if not head or not all(p.requires_grad for p in head):
        raise AssertionError("分类头没有训练：新初始化的 classifier 必须可训练（modules_to_save=['classifier']）。")
    if trainable / total > 0.05:
        raise AssertionError(f"可训练参数占 {trainable / total:.1%}：底座没有冻结。")


def _check_runs(runs) -> dict[str, dict[float, dict[int, float]]]:
    if not isinstance(runs, list) or not runs:
        raise TypeError('runs 应是列表，每项 {"method", "lr", "seed", "val_accuracy"}。')
    table: dict[str, dict[float, dict[int, float]]] = {}
    for r in runs:
        if not isinstance(r, dict) or not {"method", "lr", "seed", "val_accuracy"} <= set(r):
            raise TypeError(f'每项要有 method、lr、seed、val_accuracy 四个键：{r!r}')
        if not 0 <= float(r["val_accuracy"]) <= 1:
            raise AssertionError(f"val_accuracy 应在 [0, 1]：{r!r}")
        table.setdefault(r["method"], {}).setdefault(float(r["lr"]), {})[int(r["seed"])] = float(r["val_accuracy"])
    if set(table) != {"lora", "full"}:
        raise AssertionError(f'method 应恰好是 "lora" 与 "full"，你有 {sorted(table)}。')
    return table


@exercise("final.t5", "LoRA 对比全量微调：每种做法在验证集上各自选学习率（种子 0），再用 3 个种子报告均值 ± 标准差。", level="hard")
def t5(answer) -> None:
    """``answer = {"runs": [{"method", "lr", "seed", "val_accuracy"}, ...], "chosen": {method: lr},
    "summary": {method: (mean, std)}}``; std is the sample standard deviation over the seeds."""
    if answer is None:
        raise AssertionError('还没有作答：请给出 {"runs": [...], "chosen": {...}, "summary": {...}}。')
    if not isinstance(answer, dict) or not {"runs", "chosen", "summary"} <= set(answer):
        raise TypeError("字典要有 runs、chosen、summary 三个键。")
    table = _check_runs(answer["runs"])
    for method, by_lr in table.items():
        if len(by_lr) < 2:
            raise AssertionError(f"{method} 只试了 1 个学习率：每种做法至少比较 2 个（LoRA 通常需要更大的学习率）。")
        if any(0 not in seeds for seeds in by_lr.values()):
            raise AssertionError(f"{method}：每个学习率都要有种子 0 的结果，选择只看种子 0。")
        best = max(by_lr, key=lambda lr: by_lr[lr][0])
        if float(answer["chosen"].get(method, -1)) != best:
            raise AssertionError(f"{method} 的选择不对：种子 0 验证准确率最高的学习率是 {best:g}。")
        accs = list(by_lr[best].values())
        if len(accs) < 3:
            raise AssertionError(f"{method} 在选定学习率上只有 {len(accs)} 个种子，至少要 3 个。")
        mean, std = (float(v) for v in answer["summary"].get(method, (-1, -1)))
        if abs(mean - statistics.mean(accs)) > 1e-4 or abs(std - statistics.stdev(accs)) > 1e-4:
            hint = "（你用的是总体标准差，应除以 n−1）" if abs(std - statistics.pstdev(accs)) < 1e-4 else ""
            raise AssertionError(f"{method} 的均值/标准差与 runs 不符{hint}。")


@exercise("final.t6", "测试集只读一次：四种做法（tfidf、probe、lora、full）的测试集预测。", level="medium")
def t6(answer) -> None:
    keys = {"tfidf", "probe", "lora", "full"}
    if answer is None:
        raise AssertionError("还没有作答：请给出以 tfidf、probe、lora、full 为键的预测字典。")
    if not isinstance(answer, dict) or set(answer) != keys:
        raise TypeError(f"字典的键应恰好是 {sorted(keys)}。")
    d, _ = _data()
    y = d["test"]["label"]
    majority = Counter(d["train"]["label"]).most_common(1)[0][0]
    base = _accuracy(y, [majority] * len(y))
    for key in sorted(keys):
        acc = _accuracy(y, _predictions(answer[key], "test", f"{key} 的测试集预测"))
        if acc < base + 0.05:
            raise AssertionError(f"{key} 的测试准确率 {acc:.3f} 不比多数类（{base:.3f}）好：是不是交错了预测？")
