"""Checkpoints of lab 9 (``chapters/labs/lab09.ipynb``): masked-language-model pre-training - the
unigram baseline, packing, the loss on masked positions only, cloze probes and a linear probe of
pretrained vs random features. Chapter 9 teaches it."""

from __future__ import annotations

import functools
import math
import statistics

import torch

from . import exercise
from ._answers import number as _number, callable_answer as _callable, returned as _returned

T2_LENGTHS = [50, 30, 200, 10, 90, 60]  # token counts of six texts (no special tokens)
T2_MAX_LENGTH = 128
T4_PROBES = [("今天的天气真[MASK]，我们去公园吧。", "好"), ("这本书写得很有意[MASK]。", "思"),
             ("中华人民共和国的首都是北[MASK]。", "京"), ("价格太贵了，性价比很[MASK]。", "低")]
MAX_LENGTH = 48            # tasks 5 and 6: texts truncated to 48 tokens
N_POOL, N_VAL = 300, 300   # task 6: the first 300 training reviews (the label pool) and 300 validation reviews
BUDGET = 100               # task 6: labels per probe
SEEDS = (0, 1, 2)


def t1_texts() -> list[str]:
    """Task 1's corpus: the first 500 training reviews (their text only)."""
    from ..resources import chinese_reviews

    return list(chinese_reviews()["train"][:500]["text"])


@functools.lru_cache(maxsize=1)
def shipped():
    """The shipped Chinese BERT (``BertForMaskedLM``, eval) and its character tokenizer, loaded once."""
    from transformers import BertForMaskedLM

    from ..pretrain import pretrained_chinese_bert
    from ..vocab import char_tokenizer

    ckpt = pretrained_chinese_bert()
    return BertForMaskedLM.from_pretrained(ckpt).eval(), char_tokenizer(ckpt)


@functools.lru_cache(maxsize=1)
def random_model():
    """The same architecture and vocabulary as :func:`shipped`, randomly initialised (seed 0), eval."""
    from transformers import BertForMaskedLM

    torch.manual_seed(0)
    return BertForMaskedLM(shipped()[0].config).eval()


@functools.lru_cache(maxsize=1)
def probe_data() -> dict:
    """Task 6's data: ``{"train": (texts, labels), "validation": (texts, labels)}`` (300 + 300 reviews)."""
    from ..resources import chinese_reviews

    ds = chinese_reviews()
    tr, va = ds["train"][:N_POOL], ds["validation"][:N_VAL]
    return {"train": (list(tr["text"]), list(tr["label"])), "validation": (list(va["text"]), list(va["label"]))}


@exercise("lab09.t1", "t1_texts() 的 500 条评论：按字频猜被遮的字，交叉熵（字频熵，单位 nat）是多少？", level="easy")
def t1(answer) -> None:
    from collections import Counter

    from ..pretrain import unigram_entropy

    a = _number(answer, "字频熵")
    texts = t1_texts()
    truth = unigram_entropy([[ord(c) for c in t] for t in texts])
    if math.isclose(a, truth, rel_tol=1e-4):
        return
    counts = Counter(c for t in texts for c in t)
    if math.isclose(a, truth / math.log(2), rel_tol=1e-4):
        raise AssertionError("这是以 2 为底的（bit）；交叉熵损失用自然对数（nat），除以 ln 2 之前的那个数。")
    if math.isclose(a, math.log(len(counts)), rel_tol=1e-4):
        raise AssertionError(f"这是 ln|V|（{len(counts)} 个不同的字均匀乱猜）；按字频猜要用每个字的频率 p：−Σ p·ln p。")
    if math.isclose(a, -truth, rel_tol=1e-4):
        raise AssertionError("符号反了：熵是 −Σ p·ln p，是正数。")
    n = sum(counts.values())
    if math.isclose(a, -sum(math.log(c / n) for c in counts.values()) / len(counts), rel_tol=1e-4):
        raise AssertionError("你对每个不同的字等权平均了 −ln p；要按频率加权：−Σ p·ln p。")
    raise AssertionError(f"{a:.4f} 不对：数出每个字（字符）出现的次数 c，p = c / 总字数，熵 = −Σ p·ln p。")


@exercise("lab09.t2", "6 段长度为 T2_LENGTHS 的文本按 corpus.pack 拼成最长 128 的序列：一共几个序列、几个 [SEP]？",
          level="easy")
def t2(answer) -> None:
    from ..corpus import pack

    if answer is None or (isinstance(answer, (tuple, list)) and any(v is None for v in answer)):
        raise AssertionError("还没有作答：请给出 (序列数, [SEP] 个数)。")
    if not isinstance(answer, (tuple, list)) or len(answer) != 2 or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in answer):
        raise TypeError("请给出两个整数 (n_sequences, n_sep)。")
    n_seq, n_sep = answer
    encoded = [[7] * n for n in T2_LENGTHS]
    seqs = pack(encoded, T2_MAX_LENGTH, cls_token_id=1, sep_token_id=2)
    truth = (len(seqs), sum(s.count(2) for s in seqs))
    if (n_seq, n_sep) == truth:
        return
    total = sum(T2_LENGTHS)
    if n_seq == math.ceil(total / T2_MAX_LENGTH):
        raise AssertionError(f"{n_seq} = ⌈{total}/128⌉ 忽略了 [CLS] 和每段后面的 [SEP]，也忽略了“放不下的文本从下一个"
                             "序列开始”这条规则。")
    if n_seq == len(T2_LENGTHS) + 1 or n_seq == len(T2_LENGTHS):
        raise AssertionError("拼接会把几段短文本放进同一个序列；只有放不下时才开新序列，比整个序列还长的那段会被切开。")
    if n_seq == truth[0]:
        raise AssertionError(f"序列数对了；[SEP] 的个数不对：每段文本后面一个 [SEP]，被切开的那段在每个片段后面各有一个。")
    raise AssertionError("按 corpus.pack 的规则逐段模拟：当前序列从 [CLS] 开始；放得下（含它的 [SEP]）就接上，"
                         "放不下就另起一个序列；比一整个序列还长的文本切成几段。")


def t3_model():
    """A small random ``BertForMaskedLM`` in float64 (vocab 40, hidden 16, 2 layers), eval: no dropout."""
    from transformers import BertConfig, BertForMaskedLM

    cfg = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                     max_position_embeddings=32)
    torch.manual_seed(9)
    return BertForMaskedLM(cfg).double().eval()


def _t3_batch(g: torch.Generator):
    ids = torch.randint(5, 40, (3, 10), generator=g)
    mask = torch.ones(3, 10, dtype=torch.long)
    mask[1, 7:] = 0
    mask[2, 4:] = 0
    labels = torch.full_like(ids, -100)
    pick = (torch.rand(3, 10, generator=g) < 0.4) & mask.bool()
    pick[:, 1] = True  # at least one target per row
    labels[pick] = ids[pick]
    return ids, mask, labels


@exercise("lab09.t3", "写 masked_mlm_loss(model, input_ids, attention_mask, labels)：只对被遮位置做词表投影，"
          "损失与梯度都与 BertForMaskedLM(..., labels=labels).loss 相同。", level="medium")
def t3(answer) -> None:
    _callable(answer, "def masked_mlm_loss(model, input_ids, attention_mask, labels): ...")
    model = t3_model()
    ids, mask, labels = _t3_batch(torch.Generator().manual_seed(93))
    rows = []
    hook = model.cls.register_forward_hook(lambda mod, inp, out: rows.append(inp[0].shape))
    try:
        got = answer(model, ids, mask, labels.clone())
    finally:
        hook.remove()
    _returned(got, "一个标量张量")
    if not isinstance(got, torch.Tensor) or got.numel() != 1:
        raise AssertionError("应返回一个标量张量（被遮位置的平均交叉熵）。")
    n_targets = int((labels != -100).sum())
    if not rows:
        raise AssertionError("没有经过 model.cls（MLM 头）：先取 model.bert(...).last_hidden_state，"
                             "挑出被遮的位置，再交给 model.cls 投影到词表。")
    if any(len(s) != 2 or s[0] != n_targets for s in rows):
        raise AssertionError(f"model.cls 收到的是形状 {tuple(rows[0])} 的输入：你对所有位置都做了词表投影。"
                             f"先用 labels != -100 挑出 {n_targets} 个被遮位置的隐藏状态 (M, hidden)，只投影它们。")
    model.zero_grad()
    want = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    want_grads = torch.autograd.grad(want, list(model.parameters()), allow_unused=True)
    if not torch.allclose(got.detach(), want.detach(), rtol=1e-9):
        n_all = labels.numel()
        for value, message in ((want * n_targets, "这是损失的总和；BertForMaskedLM 返回的是被遮位置上的平均。"),
                               (want * n_targets / n_all, f"分母应是被遮位置数 {n_targets}，而不是全部 {n_all} 个位置。")):
            if torch.allclose(got.detach(), value.detach(), rtol=1e-9):
                raise AssertionError(message)
        raise AssertionError(f"损失 {got.item():.6f}，应为 {want.item():.6f}：对被遮位置的 logits 与 labels[selected] "
                             "做交叉熵（均值）。")
    if not got.requires_grad:
        raise AssertionError("返回值不能求导：不要用 .item() 或 torch.no_grad()。")
    grads = torch.autograd.grad(got, list(model.parameters()), allow_unused=True)
    for (name, _), a, b in zip(model.named_parameters(), grads, want_grads):
        a = torch.zeros(()) if a is None else a
        b = torch.zeros(()) if b is None else b
        if not torch.allclose(a, b, rtol=1e-7, atol=1e-12):
            raise AssertionError(f"损失对了，{name} 的梯度却不同：不要 detach 隐藏状态，也不要在别处改动模型。")


def probe_answer(model, tokenizer, text: str, answer: str) -> tuple[float, int]:
    """Probability of ``answer`` at the (single) [MASK] of ``text``, and its rank (1 = the top guess)."""
    enc = tokenizer(text, return_tensors="pt")
    pos = int((enc["input_ids"][0] == tokenizer.mask_token_id).nonzero()[0])
    with torch.no_grad():
        probs = model(**enc).logits[0, pos].softmax(-1)
    target = tokenizer.convert_tokens_to_ids(answer)
    return probs[target].item(), int((probs > probs[target]).sum()) + 1


@exercise("lab09.t4", "写 answer_rank(model, tokenizer, text, answer)：句中唯一的 [MASK] 处，正确字的概率与名次（1 = 第一）。",
          level="medium")
def t4(answer) -> None:
    _callable(answer, "def answer_rank(model, tokenizer, text, answer): ...")
    model, tok = shipped()
    for text, right in [("这家店的菜很好[MASK]，服务也热情。", "吃"), ("我们坚持改革开[MASK]。", "放"),
                        ("房间很干净，就是有点[MASK]。", "小")]:
        out = answer(model, tok, text, right)
        _returned(out, "(概率, 名次)")
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise TypeError("应返回一对 (prob, rank)。")
        prob, rank = _number(out[0], "概率"), out[1]
        if isinstance(rank, torch.Tensor):
            rank = int(rank)
        if isinstance(rank, bool) or not isinstance(rank, int):
            raise TypeError(f"名次应是整数，而不是 {type(rank).__name__}")
        p, r = probe_answer(model, tok, text, right)
        if not math.isclose(prob, p, rel_tol=1e-4, abs_tol=1e-7):
            enc = tok(text, return_tensors="pt")
            pos = int((enc["input_ids"][0] == tok.mask_token_id).nonzero()[0])
            with torch.no_grad():
                logits = model(**enc).logits[0]
            target = tok.convert_tokens_to_ids(right)
            if math.isclose(prob, logits[pos, target].item(), rel_tol=1e-4):
                raise AssertionError("这是 logit，不是概率：先对词表维做 softmax。")
            if any(math.isclose(prob, logits[q].softmax(-1)[target].item(), rel_tol=1e-4) for q in (pos - 1, pos + 1)):
                raise AssertionError("位置错了一格：[MASK] 的下标要在分词后的 input_ids 里找（开头还有 [CLS]）。")
            if math.isclose(prob, logits.softmax(0)[pos, target].item(), rel_tol=1e-4):
                raise AssertionError("softmax 做在了序列维上；要对词表维（最后一维）做。")
            raise AssertionError(f"“{text}” 里“{right}”的概率应约为 {p:.4f}，你给的是 {prob:.4f}。")
        if rank != r:
            if rank == r - 1:
                raise AssertionError("名次从 1 开始：模型的第一猜是第 1 名（比它概率大的字的个数 + 1）。")
            raise AssertionError(f"“{text}” 里“{right}”的名次应是 {r}（比它概率大的字的个数 + 1），你给的是 {rank}。")


def reference_features(model, tokenizer, texts, max_length: int = MAX_LENGTH, batch_size: int = 64) -> torch.Tensor:
    """Mean of ``model.bert``'s last hidden state over the real tokens ([CLS] and [SEP] included) -> ``(n, hidden)``."""
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(list(texts[i:i + batch_size]), padding=True, truncation=True, max_length=max_length,
                            return_tensors="pt")
            h = model.bert(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
            out.append((h * m).sum(1) / m.sum(1))
    return torch.cat(out)


T5_TEXTS = ["好", "这家酒店的位置很方便，早餐也不错。", "物流太慢了", "屏幕清晰，电池耐用，系统流畅，总体来说非常满意，推荐购买！" * 2]


@exercise("lab09.t5", "写 features(model, tokenizer, texts)：截断到 48 个词元、批量补齐，对真实词元（含 [CLS]/[SEP]）的"
          "最后一层隐藏状态求平均，返回 (n, hidden)。", level="medium")
def t5(answer) -> None:
    _callable(answer, "def features(model, tokenizer, texts): ...")
    model, tok = shipped()
    got = answer(model, tok, list(T5_TEXTS))
    _returned(got, "形状 (n, hidden) 的张量")
    hidden = model.config.hidden_size
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != (len(T5_TEXTS), hidden):
        seen = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        raise AssertionError(f"应返回形状 ({len(T5_TEXTS)}, {hidden}) 的张量，得到 {seen}。")
    got = got.detach().float()
    want = reference_features(model, tok, T5_TEXTS)
    if torch.allclose(got, want, atol=1e-4):
        return
    enc = tok(list(T5_TEXTS), padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
    with torch.no_grad():
        h = model.bert(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        h_nomask = model.bert(input_ids=enc["input_ids"]).last_hidden_state
    if torch.allclose(got, h.mean(1), atol=1e-4):
        raise AssertionError("你对所有位置求了平均，包括 [PAD]：用 attention_mask 加权，只平均真实词元。")
    if torch.allclose(got, h[:, 0], atol=1e-4):
        raise AssertionError("这是 [CLS] 位置的向量；题目要的是所有真实词元的平均（mean pooling）。")
    m = enc["attention_mask"].unsqueeze(-1).float()
    if torch.allclose(got, (h_nomask * m).sum(1) / m.sum(1), atol=1e-4):
        raise AssertionError("没有把 attention_mask 传给模型：短句的真实词元看到了填充。")
    if torch.allclose(got[:3], want[:3], atol=1e-4):
        raise AssertionError(f"最长的那条没有截断到 {MAX_LENGTH} 个词元：分词时用 truncation=True, max_length=48。")
    raise AssertionError(f"与参考特征的最大差 {(got - want).abs().max().item():.2e}：对 model.bert(...).last_hidden_state "
                         "按 attention_mask 加权平均。")


def probe_accuracy(train_features, train_labels, val_features, val_labels, seed: int, budget: int = BUDGET) -> float:
    """Task 6's recipe: ``budget`` stratified labels (:func:`ftbook.baselines.label_budget_indices`, ``seed``),
    ``LogisticRegression(max_iter=2000)`` on their features, accuracy on the validation features."""
    from sklearn.linear_model import LogisticRegression

    from ..baselines import label_budget_indices

    idx = label_budget_indices(list(train_labels), budget, seed)
    clf = LogisticRegression(max_iter=2000).fit(train_features[idx].numpy(), [train_labels[i] for i in idx])
    return float(clf.score(val_features.numpy(), list(val_labels)))


def _t6_arm(answer, arm):
    got = answer.get(arm)
    if not isinstance(got, dict) or not {"accs", "mean", "std", "features"} <= set(got):
        raise AssertionError(f'answer["{arm}"] 应是一个字典 {{"features": ..., "accs": [...], "mean": ..., "std": ...}}。')
    if any(got[k] is None for k in ("features", "accs", "mean", "std")) or not got["accs"]:
        missing = [k for k in ("features", "accs", "mean", "std") if got[k] is None or (k == "accs" and not got[k])]
        raise AssertionError(f"{arm} 组还没有完成：{', '.join(missing)}。")
    feats = got["features"]
    n = N_POOL + N_VAL
    if not isinstance(feats, torch.Tensor) or feats.dim() != 2 or feats.size(0) != n:
        raise AssertionError(f'{arm} 组的 "features" 应是 ({n}, hidden) 的张量：先训练池的 {N_POOL} 条，再验证集的 {N_VAL} 条。')
    accs = got["accs"]
    if len(accs) != len(SEEDS):
        raise AssertionError(f"{arm} 组应有 {len(SEEDS)} 个准确率（种子 {list(SEEDS)}），你给了 {len(accs)} 个。")
    return feats.detach().float(), [float(a) for a in accs], _number(got["mean"], "均值"), _number(got["std"], "标准差")


@exercise("lab09.t6", "线性探针：预训练与随机初始化的特征各用 100 条标签、3 个种子训练逻辑回归，给出验证集准确率的"
          "均值 ± 标准差，并判断差距是否超出种子噪声。", level="hard")
def t6(answer) -> None:
    if answer is None:
        raise AssertionError('还没有作答：请给出 {"pretrained": {...}, "random": {...}, "better": ..., "beyond_noise": ...}。')
    if not isinstance(answer, dict):
        raise TypeError(f"请给出一个字典，而不是 {type(answer).__name__}")
    data = probe_data()
    texts = data["train"][0] + data["validation"][0]
    ytr, yva = data["train"][1], data["validation"][1]
    arms = {}
    for arm, model in (("pretrained", shipped()[0]), ("random", random_model())):
        feats, accs, mean, std = _t6_arm(answer, arm)
        rows = [0, N_POOL - 1, N_POOL, N_POOL + N_VAL - 1]
        ref = reference_features(model, shipped()[1], [texts[i] for i in rows])
        if not torch.allclose(feats[rows], ref, atol=1e-3):
            raise AssertionError(f"{arm} 组的特征与参考不同：用任务 5 的 features（{arm} 组用 "
                                 f"{'lab09.shipped()[0]' if arm == 'pretrained' else 'lab09.random_model()'}），"
                                 "顺序是训练池在前、验证集在后。")
        for seed, acc in zip(SEEDS, accs):
            want = probe_accuracy(feats[:N_POOL], ytr, feats[N_POOL:], yva, seed)
            if not math.isclose(acc, want, abs_tol=1e-6):
                raise AssertionError(f"{arm} 组种子 {seed}：用你的特征按给定的做法应得 {want:.4f}，你给的是 {acc:.4f}。"
                                     "检查 label_budget_indices(train_labels, 100, seed) 与 "
                                     "LogisticRegression(max_iter=2000)。")
        if not math.isclose(mean, statistics.mean(accs), abs_tol=1e-6):
            raise AssertionError(f"{arm} 组的均值应为 {statistics.mean(accs):.4f}。")
        if not math.isclose(std, statistics.stdev(accs), abs_tol=1e-6):
            if math.isclose(std, statistics.pstdev(accs), abs_tol=1e-6):
                raise AssertionError(f"{arm} 组：你用了总体标准差（除以 n）；3 个种子用样本标准差（除以 n − 1）。")
            raise AssertionError(f"{arm} 组的标准差应为 {statistics.stdev(accs):.4f}（样本标准差）。")
        arms[arm] = (mean, std)
    better = max(arms, key=lambda a: arms[a][0])
    if answer.get("better") not in ("pretrained", "random"):
        raise AssertionError('"better" 应是 "pretrained" 或 "random"。')
    if answer["better"] != better:
        raise AssertionError(f"看你自己的数：{better} 组的均值更高。")
    beyond = abs(arms["pretrained"][0] - arms["random"][0]) > max(arms["pretrained"][1], arms["random"][1])
    if not isinstance(answer.get("beyond_noise"), bool):
        raise AssertionError('"beyond_noise" 应是 True 或 False：均值之差是否大于两组标准差中较大的那个？')
    if answer["beyond_noise"] != beyond:
        raise AssertionError(f"均值之差 {abs(arms['pretrained'][0] - arms['random'][0]):.4f}，两组标准差中较大的是 "
                             f"{max(arms['pretrained'][1], arms['random'][1]):.4f}：beyond_noise 应为 {beyond}。")
