"""Checkers for the exercises of chapter 1 (``chapters/01_background.ipynb``).

* ``ch01.q1``: how many parameters does the packaged MiniLM (``AutoModel``) have?
  Expected: ``22713216`` (an int; computed here from the real model, not hard-coded).
* ``ch01.q2``: put the stages ``["微调", "部署", "预训练"]`` in the order a project runs them.
  Expected: ``["预训练", "微调", "部署"]`` (English names pretrain/finetune/deploy also accepted).
"""

from __future__ import annotations

from functools import lru_cache

from . import exercise


@lru_cache(maxsize=1)
def minilm_parameter_count() -> int:
    """Number of parameters of ``AutoModel.from_pretrained(minilm_path())`` (no task head)."""
    from transformers import AutoModel

    from ..resources import from_pretrained, minilm_path

    model = from_pretrained(AutoModel, str(minilm_path()))
    return sum(p.numel() for p in model.parameters())


@exercise("ch01.q1")
def _q1(answer) -> None:
    """打包的 MiniLM（AutoModel，不含任务头）一共有多少个参数？"""
    if isinstance(answer, bool) or not isinstance(answer, int):
        raise TypeError(f"请给出一个整数（参数个数），而不是 {type(answer).__name__}：{answer!r}")
    expected = minilm_parameter_count()
    if answer == expected:
        return
    ratio = answer / expected
    if 0.9 < ratio < 1.1:
        raise AssertionError(
            f"{answer:,} 很接近了（相差 {answer - expected:+,}）。用 sum(p.numel() for p in "
            f"model.parameters()) 数全部参数，包括词嵌入和 pooler"
        )
    if answer < 1000 and abs(answer - expected / 1e6) < 1:
        raise AssertionError("看起来你给的是“百万”为单位的数；请给出参数的个数本身（整数）")
    raise AssertionError(f"{answer:,} 与实际相差太多；提示：hidden 384、6 层、词表 30,522，约两千多万")


_STAGES = {
    "预训练": "pretrain", "pretrain": "pretrain", "pre-train": "pretrain", "pretraining": "pretrain",
    "微调": "finetune", "finetune": "finetune", "fine-tune": "finetune", "finetuning": "finetune",
    "部署": "deploy", "deploy": "deploy", "deployment": "deploy",
}
_ORDER = ["pretrain", "finetune", "deploy"]


@exercise("ch01.q2")
def _q2(answer) -> None:
    """把 ["微调", "部署", "预训练"] 排成一个项目实际进行的顺序（列表）。"""
    if not isinstance(answer, (list, tuple)):
        raise TypeError(f"请给出一个列表，例如 ['A', 'B', 'C']，而不是 {type(answer).__name__}")
    unknown = [s for s in answer if not isinstance(s, str) or s.strip().lower() not in _STAGES]
    if unknown:
        raise ValueError(f"不认识的阶段 {unknown!r}；可用的名字：预训练、微调、部署")
    got = [_STAGES[s.strip().lower()] for s in answer]
    if sorted(got) != sorted(_ORDER):
        raise AssertionError("三个阶段每个恰好出现一次：预训练、微调、部署")
    if got[0] != "pretrain":
        raise AssertionError("第一步不对：微调需要一个已经学过大量无标注文本的模型")
    if got != _ORDER:
        raise AssertionError("顺序不对：模型要先在任务数据上训练好，才能部署")
