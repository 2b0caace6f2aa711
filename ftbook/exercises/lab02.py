"""Checkpoints of lab 2 (``chapters/labs/lab02.ipynb``): the pipeline end to end: truncation, fill-mask,
metrics from a confusion matrix, a bootstrap interval and inference from a checkpoint. Chapter 2 teaches it."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from . import exercise
from ._answers import callable_answer as _callable

T1_MAX_LENGTH = 64


def _not_none(got, name: str) -> None:
    if got is None:
        raise AssertionError(f"{name} 返回了 None：还没有写完，请完成 # TODO 处并 return 结果。")


@lru_cache(maxsize=1)
def _bert():
    """The shipped Chinese BERT (tiny profile): its MLM model and tokenizer."""
    from transformers import AutoTokenizer, BertForMaskedLM

    from ..pretrain import pretrained_chinese_bert
    from ..resources import quiet_load

    path = pretrained_chinese_bert("tiny")
    return quiet_load(lambda: BertForMaskedLM.from_pretrained(path)).eval(), AutoTokenizer.from_pretrained(path)


@exercise("lab02.t1", "用预训练中文 BERT 的分词器、max_length=64 编码验证集：有多少条评论会被截断？", level="easy")
def t1(answer) -> None:
    if answer is None:
        raise AssertionError("还没有作答：请给出一个整数（被截断的评论条数）。")
    if isinstance(answer, bool) or not isinstance(answer, (int, np.integer)):
        raise TypeError(f"请给出一个整数（条数），而不是 {type(answer).__name__}：{answer!r}")
    from ..resources import chinese_reviews

    texts = list(chinese_reviews("tiny")["validation"]["text"])
    tok = _bert()[1]
    n_tokens = [len(ids) for ids in tok(texts, add_special_tokens=True, verbose=False)["input_ids"]]
    truth = sum(n > T1_MAX_LENGTH for n in n_tokens)
    if int(answer) == truth:
        return
    if int(answer) == sum(n - 2 > T1_MAX_LENGTH for n in n_tokens):
        raise AssertionError("你没算 [CLS] 和 [SEP]：它们也占 max_length 里的两个位置。")
    if int(answer) == sum(len(t) > T1_MAX_LENGTH for t in texts) or int(answer) == sum(len(t) > T1_MAX_LENGTH - 2 for t in texts):
        raise AssertionError("你数的是字符数；分词后的 token 数与字符数不同（拉丁字母、数字会被拆成 ## 片段，空格不算 token）。")
    if int(answer) == sum(n >= T1_MAX_LENGTH for n in n_tokens):
        raise AssertionError("恰好 64 个 token（含 [CLS]、[SEP]）的评论放得下，不会被截断：用 >，不是 >=。")
    raise AssertionError(f"{int(answer)} 不对：对验证集的每条评论数 token（含 [CLS]、[SEP]），数一数有几条超过 {T1_MAX_LENGTH}。")


@exercise("lab02.t2", "写 prf(cm, k)：从混淆矩阵（行：真实，列：预测）算类别 k 的精确率、召回率和 F1。", level="easy")
def t2(answer) -> None:
    _callable(answer, "def prf(cm, k): ...")
    from sklearn.metrics import precision_recall_fscore_support

    rng = np.random.default_rng(2)
    for n_cls in (2, 3, 5):
        y_true = rng.integers(0, n_cls, 300)
        y_pred = np.where(rng.random(300) < 0.6, y_true, rng.integers(0, n_cls, 300))
        cm = np.zeros((n_cls, n_cls), dtype=int)
        np.add.at(cm, (y_true, y_pred), 1)
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=list(range(n_cls)), zero_division=0)
        for k in range(n_cls):
            got = answer(cm.copy(), k)
            _not_none(got, "prf")
            try:
                gp, gr, gf = (float(v) for v in got)
            except (TypeError, ValueError):
                raise TypeError("prf 应返回三个数 (precision, recall, f1)") from None
            if np.allclose([gp, gr, gf], [p[k], r[k], f[k]], atol=1e-6):
                continue
            if np.allclose([gp, gr], [r[k], p[k]], atol=1e-6):
                raise AssertionError("精确率和召回率反了：精确率 = 对角元 / 该类的**列**和（预测为 k 的），召回率 = 对角元 / **行**和。")
            if np.allclose([gp, gr], [p[k], r[k]], atol=1e-6) and math.isclose(gf, (p[k] + r[k]) / 2, abs_tol=1e-6):
                raise AssertionError("F1 是精确率和召回率的**调和**平均 2PR/(P+R)，不是算术平均。")
            raise AssertionError(f"{n_cls} 类、k={k}：应为 P={p[k]:.4f}、R={r[k]:.4f}、F1={f[k]:.4f}，"
                                 f"你的是 {gp:.4f}、{gr:.4f}、{gf:.4f}。")


@exercise("lab02.t3", "写 my_fill_mask(model, tokenizer, text, top_k)：不调用 pretrain.fill_mask，给出每个 [MASK] "
          "最可能的 top_k 个字及概率。", level="medium")
def t3(answer) -> None:
    _callable(answer, "def my_fill_mask(model, tokenizer, text, top_k=3): ...")
    from ..pretrain import fill_mask

    model, tok = _bert()
    for text, k in (("这家店的东西很[MASK]，下次还来。", 5), ("[MASK]间很干净，服务也[MASK]。", 3)):
        want = fill_mask(model, tok, text, top_k=k)
        got = answer(model, tok, text, k)
        _not_none(got, "my_fill_mask")
        try:
            got = [[(str(c), float(p)) for c, p in row] for row in got]
        except (TypeError, ValueError):
            raise TypeError("应返回列表的列表：每个 [MASK] 一个 [(字, 概率), ...]") from None
        if len(got) != len(want):
            raise AssertionError(f"“{text}”里有 {len(want)} 个 [MASK]，你返回了 {len(got)} 组：每个 [MASK] 位置一组。")
        for g_row, w_row in zip(got, want):
            if len(g_row) != k:
                raise AssertionError(f"每组应有 top_k={k} 个候选，你给了 {len(g_row)} 个。")
            if [c for c, _ in g_row] != [c for c, _ in w_row]:
                raise AssertionError(f"“{text}”的候选字不对：期望 {[c for c, _ in w_row]}，得到 {[c for c, _ in g_row]}。"
                                     "检查 [MASK] 的位置（分词后的下标，含 [CLS]），以及是否按概率从大到小排序。")
            gp, wp = [p for _, p in g_row], [p for _, p in w_row]
            if not np.allclose(gp, wp, atol=1e-4):
                if all(p > 1 or p < 0 for p in gp[:1]):
                    raise AssertionError("概率应在 0 到 1 之间：对 logits 做 softmax（沿词表那一维）。")
                raise AssertionError(f"候选字对了，概率不对：期望 {np.round(wp, 4).tolist()}，得到 {np.round(gp, 4).tolist()}。"
                                     "softmax 要在整个词表上做，而不是只在 top_k 个里归一化。")


@exercise("lab02.t4", "写 bootstrap_ci(correct, n_boot, seed)：对每条样本判对与否（0/1）有放回重采样，"
          "返回准确率的 95% 区间 (lo, hi)。", level="medium")
def t4(answer) -> None:
    _callable(answer, "def bootstrap_ci(correct, n_boot=2000, seed=0): ...")
    rng = np.random.default_rng(4)
    for n, p in ((400, 0.85), (1500, 0.6)):
        correct = (rng.random(n) < p).astype(int)
        got = answer(correct.copy(), n_boot=2000, seed=0)
        _not_none(got, "bootstrap_ci")
        try:
            lo, hi = (float(v) for v in got)
        except (TypeError, ValueError):
            raise TypeError("bootstrap_ci 应返回两个数 (lo, hi)") from None
        again = tuple(float(v) for v in answer(correct.copy(), n_boot=2000, seed=0))
        acc = correct.mean()
        se = math.sqrt(acc * (1 - acc) / n)
        if again != (lo, hi):
            raise AssertionError("同一个 seed 两次调用结果不同：用 np.random.default_rng(seed) 生成重采样的下标。")
        if not lo < acc < hi:
            raise AssertionError(f"区间 ({lo:.4f}, {hi:.4f}) 应包含样本上的准确率 {acc:.4f}；检查是否 lo < hi。")
        width = hi - lo
        if abs(width - 2 * 1.96 * math.sqrt(acc * (1 - acc))) < 0.2 * width:
            raise AssertionError("区间太宽：你用的是单条样本 0/1 的分布；要对每次重采样求**准确率**（均值），再取这些均值的分位数。")
        if abs(width - 2 * se) < 0.1 * 2 * se:
            raise AssertionError("这是 ±1 个标准误（约 68%）；95% 区间取重采样准确率的 2.5% 和 97.5% 分位数。")
        if not 0.8 < width / (2 * 1.96 * se) < 1.2:
            raise AssertionError(f"n={n} 时区间宽 {width:.4f}，应约为 2×1.96×标准误 = {2 * 1.96 * se:.4f}：每次有放回地抽 n 个"
                                 "（不是更少），算准确率，重复 n_boot 次，取 2.5% 与 97.5% 分位数。")


T5_TEXTS = ["好", "房间干净，服务周到，早餐也很丰富，下次出差还会住这里。", "太差了",
            "物流慢，包装破了，客服也不理人，非常失望，再也不会在这家买东西了。", "还行吧"]


@lru_cache(maxsize=1)
def _classifier():
    from ..finetune import finetuned_checkpoint
    from ..serve import load_classifier

    return load_classifier(finetuned_checkpoint("chinese", "tiny"))


@exercise("lab02.t5", "写 my_predict(model, tokenizer, texts, batch_size)：分批编码、推理，返回每条文本的 (标签, 概率)，"
          "与 serve.load_classifier(...).predict 一致。", level="hard")
def t5(answer) -> None:
    _callable(answer, "def my_predict(model, tokenizer, texts, batch_size=2): ...")
    clf = _classifier()
    want = clf.predict(T5_TEXTS)
    clf.model.train()  # the model handed over may be in training mode: inference must not depend on it
    try:
        got = answer(clf.model, clf.tokenizer, list(T5_TEXTS), 2)
        _not_none(got, "my_predict")
        again = answer(clf.model, clf.tokenizer, list(T5_TEXTS), 2)
        alone = [answer(clf.model, clf.tokenizer, [t], 1)[0] for t in T5_TEXTS]
    finally:
        clf.model.eval()
    try:
        got, again, alone = ([(str(lab), float(s)) for lab, s in rows] for rows in (got, again, alone))
    except (TypeError, ValueError):
        raise TypeError("应返回列表：每条文本一个 (标签名, 概率)，例如 ('positive', 0.93)") from None
    if len(got) != len(T5_TEXTS):
        raise AssertionError(f"{len(T5_TEXTS)} 条文本应有 {len(T5_TEXTS)} 个结果，你返回了 {len(got)} 个（最后一批不满也要算）。")
    if any(not 0 <= s <= 1 for _, s in got):
        raise AssertionError("概率应在 0 到 1 之间：对 logits 做 softmax，取最大的那个。")
    if got != again:
        raise AssertionError("同样的输入两次结果不同：推理前调用 model.eval() 关掉 dropout（并用 torch.no_grad()）。")
    if [lab for lab, _ in got] != [w["label"] for w in want] and [lab for lab, _ in alone] == [w["label"] for w in want]:
        raise AssertionError("单条预测对、成批预测错：填充之后要把 attention_mask 一起传给模型。")
    if not all(math.isclose(s, a, abs_tol=1e-4) for (_, s), (_, a) in zip(got, alone)):
        raise AssertionError("同一条文本单独预测与和更长的文本同批预测，概率不同：把 tokenizer 返回的 attention_mask "
                             "（以及 token_type_ids）都传给模型，**model(**enc)**。")
    for (lab, s), w in zip(got, want):
        if lab != w["label"] or not math.isclose(s, w["score"], abs_tol=1e-4):
            raise AssertionError(f"期望 ({w['label']!r}, {w['score']:.4f})，得到 ({lab!r}, {s:.4f})：标签名取自 "
                                 "model.config.id2label；编码要 truncation=True、max_length=128。")
