"""Exercises of chapter 13 (chapters/13_applications.ipynb): BIO tags, label alignment, Recall@1."""

from __future__ import annotations

import math

from . import exercise


@exercise("ch13.q1", "character BIO tags of 李/nr 鹏/nr 访问/v 日本/ns")
def q1(answer) -> None:
    if not isinstance(answer, (list, tuple)) or not all(isinstance(a, str) for a in answer):
        raise AssertionError("请用字符串列表回答，例如 ['B-PER', ...]")
    if len(answer) != 6:
        raise AssertionError(f"句子有 6 个字，需要 6 个标签，你给了 {len(answer)} 个")
    got = [a.strip().upper() for a in answer]
    if got[:2] == ["B-PER", "B-PER"]:
        raise AssertionError("“李”“鹏”是同一个人名的姓和名：第二个字应是 I-PER")
    expected = ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC"]
    assert got == expected, f"{got} 不对：逐字检查——人名、动词、地名各是什么标签？"


@exercise("ch13.q2", "token labels from word_ids [None, 0, 1, 1, 1, 2, None] and word labels [1, 0, 3]")
def q2(answer) -> None:
    if not isinstance(answer, (list, tuple)) or not all(isinstance(a, int) for a in answer):
        raise AssertionError("请用整数列表回答")
    if len(answer) != 7:
        raise AssertionError(f"有 7 个 token，需要 7 个标签，你给了 {len(answer)} 个")
    if list(answer) == [-100, 1, 0, 0, 0, 3, -100]:
        raise AssertionError("这是“每个片段都放标签”的做法；本章只在词的第一个 token 上放标签")
    assert list(answer) == [-100, 1, 0, -100, -100, 3, -100], f"{list(answer)} 不对：特殊 token 用什么标签？"


@exercise("ch13.q3", "Recall@1 of a 3x3 score matrix")
def q3(answer) -> None:
    if not isinstance(answer, (int, float)) or isinstance(answer, bool):
        raise AssertionError("请用一个小数回答，例如 0.5")
    if math.isclose(answer, 1.0):
        raise AssertionError("看第 1 行：0.7 > 0.6，它的最高分不在对角线上")
    assert math.isclose(answer, 2 / 3, abs_tol=1e-3), f"{answer} 不对：数一数有几行的最高分在对角线上"


BIO_LABELS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG")  # = ftbook.tagging.LABELS


def _valid(tags) -> bool:
    """BIO: an I-X follows a B-X or an I-X."""
    prev = "O"
    for t in tags:
        if t.startswith("I-") and prev[2:] != t[2:]:
            return False
        prev = t
    return True


def _best_valid(scores) -> list[str]:
    """The valid tag sequence with the largest sum of scores, by brute force (short sentences only)."""
    from itertools import product

    best, best_tags = -math.inf, None
    for idx in product(range(len(BIO_LABELS)), repeat=len(scores)):
        tags = [BIO_LABELS[i] for i in idx]
        if _valid(tags):
            s = sum(row[i] for row, i in zip(scores, idx))
            if s > best:
                best, best_tags = s, tags
    return best_tags


@exercise("ch13.q4", "bio_decode(scores): the best tag sequence that is valid BIO (constrained Viterbi)")
def q4(answer) -> None:
    import random

    if not callable(answer):
        raise AssertionError("请传入一个函数 bio_decode(scores)")
    cut = [[0, 0, 0, 5, 0, 0, 0], [0, 0, 0, 0, 1, 0, 2], [0, 0, 0, 0, 3, 0, 0]]  # argmax: B-LOC I-ORG I-LOC
    rng = random.Random(13)
    cases = [cut, [[0, 0, 3, 0, 0, 0, 0]]] + [[[round(rng.gauss(0, 2), 2) for _ in BIO_LABELS]
                                                for _ in range(rng.randint(1, 5))] for _ in range(25)]
    for scores in cases:
        got = answer([list(r) for r in scores])
        if got is None:
            raise AssertionError("函数返回了 None：还没有实现")
        got = list(got)
        if len(got) != len(scores) or not all(t in BIO_LABELS for t in got):
            raise AssertionError(f"对 {len(scores)} 个字应返回 {len(scores)} 个 tagging.LABELS 中的标签，得到 {got}")
        if not _valid(got):
            raise AssertionError(f"{got} 不是合法的 BIO：I-X 前面必须是 B-X 或 I-X")
        want = _best_valid(scores)
        total = lambda tags: sum(row[BIO_LABELS.index(t)] for row, t in zip(scores, tags))  # noqa: E731
        if not math.isclose(total(got), total(want), abs_tol=1e-9):
            raise AssertionError(f"分数矩阵 {scores} 上，{got} 的总分 {total(got):.2f} 不是合法序列中最高的"
                                 f"（{want}：{total(want):.2f}）")
