"""Checkpoints of lab 13 (``chapters/labs/lab13.ipynb``): NER labels and entity-level scores, sentence
embeddings by mean pooling, retrieval metrics, rank fusion and a lexicon baseline. Chapter 13 teaches it."""

from __future__ import annotations

import functools
import math
import random

import torch

from . import exercise
from ._answers import callable_answer, returned as _returned

TYPES = ("PER", "LOC", "ORG")


# ---------------------------------------------------------------- task 1: word/POS pairs -> BIO


def _t1_cases() -> list[list[tuple[str, str]]]:
    """Hand-made sentences (two people in a row, two places in a row) and 40 lines of the corpus."""
    from ..tagging import corpus_path, parse_line

    cases = [[("江", "nr"), ("泽民", "nr"), ("会见", "v"), ("李", "nr"), ("鹏", "nr")],
             [("中国", "ns"), ("北京", "ns"), ("举行", "v")],
             [("国务院", "nt"), ("总理", "n"), ("朱", "nr"), ("镕基", "nr"), ("在", "p"), ("香港", "ns")],
             [("张", "nr"), ("和", "c"), ("王", "nr"), ("。", "w")]]
    lines = [line for line in corpus_path().read_text(encoding="utf-8").splitlines() if line.strip()]
    rng = random.Random(131)
    return cases + [parse_line(line) for line in rng.sample(lines, 40)]


def _bio_variant(pairs, join: str):
    """words_to_bio with another joining rule: ``"all"`` joins every run of same-POS entity words
    (the mistake of merging two places), ``"none"`` never joins (a surname and a given name split)."""
    from ..tagging import POS_TO_ENTITY

    tags, prev = [], None
    for word, pos in pairs:
        entity = POS_TO_ENTITY.get(pos)
        joined = pos == prev and join == "all"
        for k, _ in enumerate(word):
            tags.append("O" if entity is None else f"{'I' if k or joined else 'B'}-{entity}")
        prev = pos
    return tags


@exercise("lab13.t1", "写 my_words_to_bio(pairs)：把 (词, 词性) 列表变成逐字的 (字列表, BIO 标签列表)，"
          "与 tagging.words_to_bio 一致。", level="easy")
def t1(answer) -> None:
    from ..tagging import words_to_bio

    callable_answer(answer, "def my_words_to_bio(pairs): ...", kind="函数或类")
    for pairs in _t1_cases():
        got = answer(list(pairs))
        _returned(got, "(chars, tags) 两个列表")
        if not isinstance(got, tuple) or len(got) != 2:
            raise AssertionError(f"应返回一个二元组 (chars, tags)，你返回的是 {type(got).__name__}。")
        chars, tags = (list(x) for x in got)
        want_chars, want = words_to_bio(pairs)
        sentence = " ".join(f"{w}/{p}" for w, p in pairs)[:80]
        if len(tags) == len(pairs) != len(want):
            raise AssertionError("标签是逐词给的：中文 BERT 按字切分，每个字都要有一个标签（词的第一个字 B-，其余 I-）。")
        if chars != want_chars:
            raise AssertionError(f"字列表不对（句子 {sentence}）：应是把每个词拆成单个的字，按顺序连起来。")
        if tags == want:
            continue
        if tags == _bio_variant(pairs, "all"):
            raise AssertionError("连续的两个地名（或机构名）是两个实体，不能合并：只有连续的 nr（姓 + 名）才合成一个人名。"
                                 f"（句子 {sentence}）")
        if tags == _bio_variant(pairs, "none"):
            raise AssertionError("“江/nr 泽民/nr”是一个人名：紧跟在 nr 后面的 nr 词，第一个字是 I-PER，不是 B-PER。"
                                 f"（句子 {sentence}）")
        if len(tags) != len(want):
            raise AssertionError(f"句子 {sentence}：应有 {len(want)} 个标签（每个字一个），你给了 {len(tags)} 个。")
        bad = next(i for i, (a, b) in enumerate(zip(tags, want)) if a != b)
        raise AssertionError(f"句子 {sentence}：第 {bad} 个字“{want_chars[bad]}”应为 {want[bad]}，你给了 {tags[bad]}。"
                             "规则：nr→PER、ns→LOC、nt→ORG，其余词性是 O；词的第一个字 B-，其余 I-。")


# ---------------------------------------------------------------- task 2: entity-level P / R / F1


def random_bio(rng: random.Random, n: int, well_formed: bool) -> list[str]:
    """A random BIO sequence of length ``n`` (``well_formed=False``: I- may follow O or another type)."""
    tags, prev = [], "O"
    for _ in range(n):
        r = rng.random()
        if r < 0.45:
            tag = "O"
        elif r < 0.7:
            tag = "B-" + rng.choice(TYPES)
        elif well_formed:
            tag = "O" if prev == "O" else "I-" + prev[2:]
        else:
            tag = "I-" + (prev[2:] if prev != "O" and rng.random() < 0.6 else rng.choice(TYPES))
        tags.append(tag)
        prev = tag
    return tags


def _t2_pairs(well_formed: bool, seed: int):
    rng = random.Random(seed)
    true = [random_bio(rng, rng.randint(1, 14), True) for _ in range(60)]
    pred = [[t if rng.random() < 0.75 else random_bio(rng, 1, False)[0] for t in s] for s in true]
    if well_formed:  # repair: an I- after O or another type becomes B-
        pred = [[("B-" + t[2:]) if t.startswith("I-") and (k == 0 or s[k - 1][2:] != t[2:]) else t
                 for k, t in enumerate(s)] for s in pred]
    return true, pred


def _prf(tp: int, n_pred: int, n_true: int) -> tuple[float, float, float]:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_true if n_true else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def _t2_wrong(true, pred) -> dict[str, tuple[float, float, float]]:
    """The typical wrong scores, each named by the hint the reader gets."""
    from seqeval.metrics.sequence_labeling import get_entities

    flat_t, flat_p = [t for s in true for t in s], [t for s in pred for t in s]
    acc = sum(a == b for a, b in zip(flat_t, flat_p)) / len(flat_t)
    spans = lambda seqs: {(i, s, e) for i, q in enumerate(seqs) for _, s, e in get_entities(list(q))}  # noqa: E731
    ts, ps = spans(true), spans(pred)
    tok = sum(a == b != "O" for a, b in zip(flat_t, flat_p))
    n_tp, n_tt = sum(b != "O" for b in flat_p), sum(a != "O" for a in flat_t)
    return {"逐字准确率不是实体级的分数：先把每个序列变成实体 (类型, 起点, 终点)，再比较实体的集合。": (acc, acc, acc),
            "逐字比较（非 O 的字）不是实体级：一个实体只有类型和左右边界都对才算一个 TP。": _prf(tok, n_tp, n_tt),
            "实体的类型也要相同：(类型, 起点, 终点) 三者都对才算对，你只比较了边界。": _prf(len(ts & ps), len(ps), len(ts))}


@exercise("lab13.t2", "从零写 entity_prf(true, pred)：实体级（seqeval 的规则）micro precision / recall / F1，"
          "返回字典。", level="medium")
def t2(answer) -> None:
    from seqeval.metrics import f1_score, precision_score, recall_score

    callable_answer(answer, "def entity_prf(true, pred): ...", kind="函数或类")
    for well_formed, seed in ((True, 132), (False, 133)):
        true, pred = _t2_pairs(well_formed, seed)
        got = answer([list(s) for s in true], [list(s) for s in pred])
        _returned(got, '{"precision": ..., "recall": ..., "f1": ...}')
        if not isinstance(got, dict) or not {"precision", "recall", "f1"} <= set(got):
            raise AssertionError('应返回一个字典，键为 "precision"、"recall"、"f1"。')
        vals = tuple(float(got[k]) for k in ("precision", "recall", "f1"))
        want = tuple(float(f(true, pred, zero_division=0)) for f in (precision_score, recall_score, f1_score))
        if all(math.isclose(a, b, abs_tol=1e-6) for a, b in zip(vals, want)):
            continue
        if math.isclose(vals[0], want[1], abs_tol=1e-6) and math.isclose(vals[1], want[0], abs_tol=1e-6):
            raise AssertionError("precision 和 recall 写反了：precision = TP / 预测的实体数，recall = TP / 真实的实体数。")
        for hint, wrong in _t2_wrong(true, pred).items():
            if all(math.isclose(a, b, abs_tol=1e-6) for a, b in zip(vals, wrong)):
                raise AssertionError(hint)
        if not well_formed:
            raise AssertionError("规范的 BIO 序列上对了，不规范的（I-X 跟在 O 或别的类型后面）上不对：seqeval 把这样的 I-X "
                                 "当作一个新实体的开始（conlleval 的规则），不是丢掉它。")
        raise AssertionError(f"(P, R, F1) 应为 ({want[0]:.4f}, {want[1]:.4f}, {want[2]:.4f})，你的是 "
                             f"({vals[0]:.4f}, {vals[1]:.4f}, {vals[2]:.4f})：检查实体在 O、B- 和类型变化处结束，"
                             "以及是否把所有句子的实体合在一起算（micro）。")


# ---------------------------------------------------------------- task 3: mean pooling


@functools.lru_cache(maxsize=1)
def _t3_model():
    """A tiny random BERT with the MiniLM tokenizer: every token's vector differs, padding included."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from ..resources import minilm_path

    tok = AutoTokenizer.from_pretrained(minilm_path())
    with torch.random.fork_rng():
        torch.manual_seed(133)
        model = BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=64), add_pooling_layer=True).eval()
    return model, tok


T3_TEXTS = ["A cat.", "The striker scored twice in the second half of the match.", "Rates rose again.",
            "Borrowing costs went up after the central bank's surprise decision on Thursday."]


def _t3_variants(model, tok, texts) -> dict[str, torch.Tensor]:
    import torch.nn.functional as F

    enc = tok(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.no_grad():
        out = model(**enc)
    h = out.last_hidden_state
    masked = (h * enc["attention_mask"].unsqueeze(-1)).sum(1) / enc["attention_mask"].sum(1, keepdim=True)
    return {"平均时把补齐（padding）的位置也算进去了：用 attention_mask 只对真实 token 求和，再除以真实 token 的个数。":
            F.normalize(h.mean(1), dim=-1),
            "这是 [CLS] 向量，不是平均池化：MiniLM 训练时用的是所有 token 向量的平均。": F.normalize(h[:, 0], dim=-1),
            "这是 pooler_output（[CLS] 上的一层 tanh），不是平均池化。": F.normalize(out.pooler_output, dim=-1),
            "少了 L2 归一化：每个向量除以它的长度，余弦相似度才等于点积。": masked}


@exercise("lab13.t3", "写 my_embed(texts, model, tokenizer)：补齐后按 attention_mask 平均池化、再 L2 归一化，"
          "与 similarity.embed 一致。", level="medium")
def t3(answer) -> None:
    from ..similarity import embed

    callable_answer(answer, "def my_embed(texts, model, tokenizer): ...", kind="函数或类")
    model, tok = _t3_model()
    want = embed(T3_TEXTS, model, tok)
    try:
        with torch.no_grad():
            got = answer(list(T3_TEXTS), model, tok)
    except Exception as exc:  # the reader's code crashed: say where to look
        raise AssertionError(f"my_embed 出错了（{type(exc).__name__}: {exc}）；对一批长短不一的句子要 padding=True。") from None
    _returned(got, f"一个 ({len(T3_TEXTS)}, hidden) 的张量")
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(want.shape):
        shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        raise AssertionError(f"应返回形状 (句子数, hidden) = {tuple(want.shape)} 的张量，你返回的是 {shape}。")
    got = got.detach().float()
    if torch.allclose(got, want, atol=1e-5):
        return
    for hint, wrong in _t3_variants(model, tok, T3_TEXTS).items():
        if torch.allclose(got, wrong, atol=1e-5):
            raise AssertionError(hint)
    raise AssertionError(f"结果与 similarity.embed 相差 {(got - want).abs().max().item():.3g}：对 last_hidden_state 做"
                         "带掩码的平均，再 F.normalize(..., dim=-1)。")


# ---------------------------------------------------------------- task 4: Recall@k and MRR


def _t4_matrices() -> list[tuple[torch.Tensor, int]]:
    g = torch.Generator().manual_seed(134)
    plain = torch.randn(12, 12, generator=g, dtype=torch.float64)
    plain.diagonal().add_(0.8)  # the right document usually, not always, scores highest
    ties = (torch.rand(10, 10, generator=g, dtype=torch.float64) * 4).round() / 4  # many equal scores
    return [(plain, 1), (plain, 3), (ties, 2)]


def _t4_wrong(scores: torch.Tensor, k: int) -> dict[str, tuple[float, float]]:
    own = scores.diagonal().unsqueeze(1)
    ranks = {"行和列弄反了：第 i 行是第 i 个查询，它的正确文档是第 i 列；在每一行里排名。":
             1 + (scores > scores.diagonal().unsqueeze(0)).sum(0),
             "排序方向反了：分数越高名次越靠前（名次 1 = 分数最高）。": 1 + (scores < own).sum(1),
             "并列时对正确文档不利：名次 = 1 + 分数严格更高的文档数（并列不算在前面），别把它自己也数进去。":
             (scores >= own).sum(1)}
    out = {hint: (float((r <= k).double().mean()), float((1 / r.double()).mean())) for hint, r in ranks.items()}
    rank = 1 + (scores > own).sum(1)
    out["Recall@k 是名次 ≤ k 的比例（名次从 1 开始），你用了 < k。"] = (float((rank < k).double().mean()),
                                                                   float((1 / rank.double()).mean()))
    return out


@exercise("lab13.t4", "从零写 recall_mrr(scores, k)：方阵 scores 的第 i 行的正确答案是第 i 列，返回 (Recall@k, MRR)。",
          level="easy")
def t4(answer) -> None:
    from ..similarity import retrieval_metrics

    callable_answer(answer, "def recall_mrr(scores, k): ...", kind="函数或类")
    for scores, k in _t4_matrices():
        got = answer(scores.clone(), k)
        _returned(got, "(Recall@k, MRR) 两个数")
        try:
            recall, mrr = (float(v) for v in got)
        except (TypeError, ValueError):
            raise AssertionError(f"应返回两个数 (recall, mrr)，你返回的是 {got!r:.60}。") from None
        want = retrieval_metrics(scores, ks=(k,))
        if math.isclose(recall, want[f"recall@{k}"], abs_tol=1e-9) and math.isclose(mrr, want["mrr"], abs_tol=1e-9):
            continue
        if not math.isfinite(mrr) or mrr > 1 + 1e-9:
            raise AssertionError(f"MRR = {mrr}：名次从 1 开始（排第一的名次是 1，倒数是 1），不是从 0 开始。")
        for hint, (r, m) in _t4_wrong(scores, k).items():
            if math.isclose(recall, r, abs_tol=1e-9) and math.isclose(mrr, m, abs_tol=1e-9):
                raise AssertionError(hint)
        raise AssertionError(f"k = {k} 时应为 Recall@k = {want[f'recall@{k}']:.4f}、MRR = {want['mrr']:.4f}，你的是 "
                             f"{recall:.4f}、{mrr:.4f}：名次 = 1 + 同一行里分数严格高于对角线的个数。")


# ---------------------------------------------------------------- task 5: reciprocal rank fusion


def row_ranks(scores: torch.Tensor) -> torch.Tensor:
    """Rank of every document in its query's row: 1 + the number of documents scored strictly higher."""
    return 1.0 + (scores.unsqueeze(1) > scores.unsqueeze(2)).sum(2).double()


def reference_rrf(score_matrices, k: float) -> torch.Tensor:
    return sum(1.0 / (k + row_ranks(s)) for s in score_matrices)


def _t5_wrong(mats, k) -> dict[str, torch.Tensor]:
    ordinal = lambda s: torch.argsort(torch.argsort(-s, dim=1, stable=True), dim=1).double() + 1  # noqa: E731
    return {"名次从 1 开始：排第一的文档得 1/(k+1)，你用了 0 开始的名次。": sum(1.0 / (k + row_ranks(s) - 1) for s in mats),
            "排序方向反了：分数最高的文档名次是 1。": sum(1.0 / (k + row_ranks(-s)) for s in mats),
            "名次要在每个查询（每一行）的文档里排，不是在每一列里排。": sum(1.0 / (k + row_ranks(s.T).T) for s in mats),
            "少了常数 k：RRF 是 Σ 1/(k + 名次)。": sum(1.0 / row_ranks(s) for s in mats),
            "并列的文档要得到同一个名次（1 + 严格更高的个数）：argsort 给并列的文档排了先后。":
            sum(1.0 / (k + ordinal(s)) for s in mats),
            "RRF 融合的是名次，不是原始分数：不同方法的分数尺度不同，不能直接相加。": sum(mats)}


@exercise("lab13.t5", "从零写 rrf(score_matrices, k)：倒数名次融合，返回 Σ_m 1/(k + 第 m 个方法给的名次)。",
          level="medium")
def t5(answer) -> None:
    callable_answer(answer, "def rrf(score_matrices, k=60): ...", kind="函数或类")
    g = torch.Generator().manual_seed(135)
    plain = [torch.randn(6, 9, generator=g, dtype=torch.float64), torch.rand(6, 9, generator=g, dtype=torch.float64)]
    ties = [(torch.rand(7, 7, generator=g, dtype=torch.float64) * 3).round() for _ in range(3)]
    for mats, k in ((plain, 60), (plain, 2), (ties, 10)):
        got = answer([m.clone() for m in mats], k)
        _returned(got, f"一个 {tuple(mats[0].shape)} 的分数矩阵")
        got = torch.as_tensor(got, dtype=torch.float64)
        want = reference_rrf(mats, k)
        if tuple(got.shape) != tuple(want.shape):
            raise AssertionError(f"应返回与每个分数矩阵同形状 {tuple(want.shape)} 的矩阵，你返回的是 {tuple(got.shape)}。")
        if torch.allclose(got, want, atol=1e-12):
            continue
        for hint, wrong in _t5_wrong(mats, k).items():
            if torch.allclose(got, wrong, atol=1e-12):
                raise AssertionError(hint)
        raise AssertionError(f"{len(mats)} 个 {tuple(want.shape)} 矩阵、k = {k} 时结果不对（最大差 "
                             f"{(got - want).abs().max().item():.3g}）：每一行里求名次，再把 1/(k + 名次) 对各方法求和。")


# ---------------------------------------------------------------- task 6: the lexicon baseline


def _lexicon_variant(train, text: str, longest: bool, first_type: bool, skip: bool) -> list[str]:
    """LexiconTagger with one rule changed: shortest match, last type wins, or no skip past a match."""
    from seqeval.metrics.sequence_labeling import get_entities

    lexicon: dict[str, str] = {}
    for cs, ts in train:
        for etype, s, e in get_entities(list(ts)):
            name = "".join(cs[s:e + 1])
            lexicon[name] = lexicon.get(name, etype) if first_type else etype
    n_max, out, i = max(map(len, lexicon), default=0), ["O"] * len(text), 0
    while i < len(text):
        sizes = range(min(n_max, len(text) - i), 0, -1) if longest else range(1, min(n_max, len(text) - i) + 1)
        n = next((n for n in sizes if text[i:i + n] in lexicon), 0)
        if n:
            etype = lexicon[text[i:i + n]]
            out[i:i + n] = [f"B-{etype}"] + [f"I-{etype}"] * (n - 1)
        i += n if n and skip else 1
    return out


def _t6_data(seed: int = 136):
    """Random sentences over five characters: entities overlap, nest and repeat with other types."""
    rng = random.Random(seed)
    alphabet = "甲乙丙丁戊"
    train = [(list(rng.choices(alphabet, k=n)), random_bio(rng, n, True)) for n in (rng.randint(3, 9) for _ in range(25))]
    test = ["".join(rng.choices(alphabet, k=rng.randint(5, 16))) for _ in range(40)]
    return train, test + ["甲乙丙丁戊甲乙丙丁戊", "己庚辛"]


@exercise("lab13.t6", "从零写 MyLexiconTagger(chars, tags)：记下训练句子里每个实体字符串（第一次出现时的类型），"
          "测试时从左到右做最长匹配。", level="hard")
def t6(answer) -> None:
    from ..tagging import LexiconTagger

    callable_answer(answer, "class MyLexiconTagger: ...", kind="函数或类")
    train, test = _t6_data()
    chars, tags = [list(c) for c, _ in train], [list(t) for _, t in train]
    try:
        mine = answer(chars, tags)
    except TypeError as exc:
        raise AssertionError(f"MyLexiconTagger(chars, tags) 调用失败（{exc}）：构造函数的参数是两个列表。") from None
    if isinstance(mine, LexiconTagger):
        raise AssertionError("这是 ftbook.tagging.LexiconTagger 本身：请自己写。")
    if not callable(getattr(mine, "tag", None)):
        raise AssertionError("找不到方法 tag(chars)：它接收一个字的列表，返回同样长的 BIO 标签列表。")
    ref = LexiconTagger(chars, tags)
    wrong = {"要最长匹配：在每个位置先试最长的候选（“北京市委”优先于“北京”），你先试了短的。": dict(longest=False),
             "同一个字符串在训练句子里有不同类型时，用第一次出现时的类型（dict.setdefault），你用了最后一次的。":
             dict(first_type=False),
             "匹配成功后要跳到这个实体的末尾继续，不能从下一个字接着匹配（那样实体会相互覆盖）。": dict(skip=False)}
    outputs = []
    for text in test:
        got = mine.tag(list(text))
        _returned(got, "一个 BIO 标签列表")
        outputs.append(list(got))
        if len(outputs[-1]) != len(text):
            raise AssertionError(f"“{text}”有 {len(text)} 个字，应返回 {len(text)} 个标签，你返回了 {len(outputs[-1])} 个。")
    wants = [ref.tag(list(text)) for text in test]
    if outputs == wants:
        return
    for hint, change in wrong.items():  # a mistake is named when it explains every sentence
        rule = dict(longest=True, first_type=True, skip=True) | change
        if outputs == [_lexicon_variant(train, text, **rule) for text in test]:
            raise AssertionError(hint)
    text, got, want = next((t, g, w) for t, g, w in zip(test, outputs, wants) if g != w)
    raise AssertionError(f"“{text}”应标为 {' '.join(want)}，你的是 {' '.join(got)}：从左到右，每个位置取词典里"
                         "最长的匹配，标 B-类型 I-类型…，然后跳过它；匹配不到就标 O、前进一个字。")
