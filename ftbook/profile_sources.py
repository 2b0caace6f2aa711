"""Where the ``full`` profile's learning rates, steps and epochs come from.

Taught in the preface (``chapters/intro.md``, "三种用法"): the table of every ``full`` learning
rate, step count, epoch count and warm-up of every registered section, each with its source: a
paper or official code (with the values it gives, checked against the setting), a deliberate
experimental design, or the word 估计 (a guess) with the reason. The ``full`` profile has not been
run by the book (it needs a GPU and the hub), so no ``full`` value is a measured sweep.

``python -m ftbook.profile_sources render`` writes :func:`render_table` into the preface between
:data:`BEGIN` and :data:`END`; ``tests/test_profile_sources.py`` checks that every schedule key of
every registered section has an entry here, that no entry names a missing key, and that the page
shows the rendered table. This module only reads ``ftbook.config._SECTIONS``; the modules that
register sizes do not import it.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import sys
from dataclasses import dataclass
from pathlib import Path

PAPER, CODE, DESIGN, GUESS, NO_CAP = "论文", "官方代码", "实验设计", "估计", "不设上限"
KINDS = (PAPER, CODE, DESIGN, GUESS, NO_CAP)
SCHEDULE_WORDS = {"lr", "lrs", "steps", "epochs", "warmup", "warmups"}  # a key's "_"-separated words
BEGIN = "<!-- profile-sources: begin (python -m ftbook.profile_sources render) -->"
END = "<!-- profile-sources: end -->"
PAGE = Path("chapters") / "intro.md"


@dataclass(frozen=True)
class Source:
    """Where one ``full`` value comes from. ``cited``: the (low, high) range the cited source
    gives, which every number of the setting must lie in (checked by the tests)."""

    kind: str
    text: str
    cited: tuple[float, float] | None = None


BERT_LR = Source(PAPER, "BERT 论文（Devlin et al. 2019）附录 A.3：微调学习率在 5e-5、3e-5、2e-5 中选", (2e-5, 5e-5))
BERT_EPOCHS = Source(PAPER, "BERT 论文（Devlin et al. 2019）附录 A.3：微调 2–4 轮", (2, 4))
BERT_WARMUP = Source(CODE, "BERT 官方代码 run_classifier.py（Devlin et al. 2019）：warmup_proportion=0.1；"
                           "Sun et al. 2019《How to Fine-Tune BERT for Text Classification》同样用 0.1", (0.1, 0.1))
BY_EPOCHS = Source(NO_CAP, "None：不按步数截断，训练 epochs 轮（验证集早停）")

# Keys whose words include "lr"/"steps"... but that are no learning rate or schedule length.
NOT_SCHEDULE = {
    ("baselines", "lr_C"): "逻辑回归（LogisticRegression）的正则化强度 C 的候选值",
    ("faq", "lr_train"): "第 17 章学习率问题所用的训练样本数",
    ("faq", "lr_eval"): "第 17 章学习率问题所用的验证样本数",
}

SOURCES: dict[str, dict[str, Source]] = {
    "causal_lm": {
        "lr": Source(PAPER, "GPT-3 论文（Brown et al. 2020）表 2.1：同为 12 层、hidden 768 的 GPT-3 Small 用 6.0e-4",
                     (6e-4, 6e-4)),
        "steps": Source(GUESS, "按预算定的步数，远少于 GPT-3 的训练量，未测量"),
        "warmup_steps": Source(GUESS, "总步数的 5%，未测量"),
        "live_steps": Source(GUESS, "第 14 章现场演示的长度，只为看到损失下降"),
    },
    "faq": {
        "shift_epochs": BERT_EPOCHS,
        "shift_lr": BERT_LR,
        "lr_range_steps": Source(GUESS, "学习率区间测试（Smith 2017）的步数，够扫过 6 个数量级即可，未测量"),
        "lr_sweep_steps": Source(GUESS, "每个学习率训练的步数，按预算定，未测量"),
        "overfit_epochs": Source(DESIGN, "故意远超 BERT 推荐的 2–4 轮，让过拟合在验证曲线上出现"),
        "overfit_lr": BERT_LR,
        "dapt_steps": Source(GUESS, "领域继续预训练（Gururangan et al. 2020）的步数，按预算定，未测量"),
        "dapt_lr": Source(GUESS, "低于 BERT 预训练的 1e-4，以免冲掉已学到的知识，未测量"),
        "dapt_warmup": Source(GUESS, "dapt_steps 的 10%，未测量"),
    },
    "finetune": {
        "english_lr": BERT_LR,
        "english_max_steps": BY_EPOCHS,
        "chinese_lr": BERT_LR,
        "chinese_max_steps": BY_EPOCHS,
        "epochs": BERT_EPOCHS,
        "warmup_ratio": BERT_WARMUP,
        "compare_steps": Source(GUESS, "第 10 章 Trainer 对比与计时的步数，够测出稳定的吞吐量即可"),
        "search_steps": Source(GUESS, "第 11 章超参数搜索中每组的步数，按预算定，未测量"),
        "search_lrs": Source(DESIGN, "以 BERT 论文的 2e-5–5e-5 为中心，向两侧各扩一档（1e-5、1e-4）"),
        "search_warmups": Source(DESIGN, "不预热（0）对照 BERT 官方代码的 warmup_proportion=0.1"),
    },
    "instruct": {
        "lr": Source(PAPER, "QLoRA 论文（Dettmers et al. 2023）：7B、13B 模型的 LoRA 学习率 2e-4（33B、65B 用 1e-4）；"
                               "这里 0.5B 的模型沿用 2e-4", (2e-4, 2e-4)),
        "steps": Source(GUESS, "按预算定的步数，未测量"),
        "warmup_steps": Source(GUESS, "总步数的 5%，未测量"),
        "live_steps": Source(GUESS, "第 16 章现场演示的长度，只为看到损失下降"),
    },
    "label_budgets": {
        "lrs": BERT_LR,
        "max_steps": Source(GUESS, "随标签数增加的步数上限，按预算定，未测量"),
    },
    "lora_experiment": {
        "max_steps": BY_EPOCHS,
        "epochs": BERT_EPOCHS,
        "full_lrs": BERT_LR,
        "lora_lrs": Source(DESIGN, "LoRA 论文（Hu et al. 2021）附录 D 中 RoBERTa 的 LoRA 学习率在 2e-4–5e-4 之间；"
                                   "取其中的 3e-4 与高一档的 1e-3"),
    },
    "norms": {
        "deep_steps": Source(GUESS, "深层网络有无 LayerNorm 的对比，训练到差别清楚为止的步数，未测量"),
    },
    "optim": {
        "steps": Source(GUESS, "优化器对比的步数，按预算定，未测量"),
    },
    "pipeline": {
        "pretrain_steps": Source(GUESS, "第 2 章小模型预训练的步数，按预算定，未测量"),
        "pretrain_lr": Source(GUESS, "4 层、hidden 256 的小模型：介于 tiny 配置用的 1e-3 与 BERT 预训练的 1e-4 之间，未测量"),
        "finetune_epochs": BERT_EPOCHS,
        "finetune_lr": Source(PAPER, "小型 BERT（Turc et al. 2019，google-research/bert 发布的 24 个小模型）："
                                     "微调学习率在 3e-4、1e-4、5e-5、3e-5 中选",
                              (3e-5, 3e-4)),
    },
    "pretrain": {
        "lr": Source(PAPER, "BERT 论文（Devlin et al. 2019）附录 A.2：预训练学习率 1e-4", (1e-4, 1e-4)),
        "steps": Source(GUESS, "BERT 预训练 100 万步（批 256）；这里按预算取 2 万步，未测量"),
        "warmup_steps": Source(GUESS, "BERT 预热 1 万步（总步数的 1%）；这里取总步数的 5%，未测量"),
        "live_steps": Source(GUESS, "第 9 章现场演示的长度，只为看到损失下降"),
    },
    "tagging": {
        "epochs": BERT_EPOCHS,
        "lr": BERT_LR,
        "warmup": BERT_WARMUP,
    },
    "tricks": {
        "steps": Source(GUESS, "更大的玩具模型需要更多步，按预算定，未测量"),
        "warmup": Source(GUESS, "总步数的 20%（tiny 配置是 150 步中的 50 步），未测量"),
        "lrs": Source(GUESS, "更大的模型通常要更小的学习率：把 tiny 配置实测的一组整体下移约一个数量级，未测量"),
        "lr_high": Source(GUESS, "同上：tiny 配置 1e-2 的十分之一，未测量"),
        "lr_too_high": Source(GUESS, "同上：tiny 配置 3e-2 的十分之一，未测量"),
    },
}


def import_all() -> None:
    """Import every ftbook module, so that every section is registered."""
    import ftbook

    for info in pkgutil.walk_packages(ftbook.__path__, "ftbook."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)


def is_schedule_key(key: str) -> bool:
    """Whether a size key names a learning rate, a number of steps or epochs, or a warm-up."""
    return bool(SCHEDULE_WORDS & set(key.split("_")))


def book_sections() -> list[str]:
    """The sections that ftbook's own modules register (a ``register_sizes`` call with a literal name in their
    source), not ones a test or a reader's script adds; each must be registered by now."""
    from .config import _SECTIONS

    names = set()
    for path in Path(__file__).parent.rglob("*.py"):
        names |= set(re.findall(r'register_sizes\(\s*"([\w-]+)"', path.read_text(encoding="utf-8")))
    missing = sorted(names - set(_SECTIONS))
    if missing:
        raise RuntimeError(f"sections {missing} are not registered yet: call import_all() first")
    return sorted(names)


def schedule_keys() -> list[tuple[str, str]]:
    """``(section, key)`` of every schedule key of the book's sections (after :func:`import_all`)."""
    from .config import _SECTIONS

    return [(section, key) for section in book_sections() for key in _SECTIONS[section]["full"]
            if is_schedule_key(key) and (section, key) not in NOT_SCHEDULE]


def problems() -> list[str]:
    """Everything wrong with :data:`SOURCES` against the registered sections (empty: all good)."""
    from .config import _SECTIONS

    keys = set(schedule_keys())
    named = {(s, k) for s, entries in SOURCES.items() for k in entries}
    out = [f"{s}.{k}: no source (add it to ftbook/profile_sources.py SOURCES)" for s, k in sorted(keys - named)]
    out += [f"{s}.{k}: SOURCES names a key that is not registered" for s, k in sorted(named - keys)
            if k not in _SECTIONS.get(s, {}).get("full", {})]
    out += [f"{s}.{k}: not a schedule key, but listed in SOURCES" for s, k in sorted(named - keys)
            if k in _SECTIONS.get(s, {}).get("full", {})]
    out += [f"{s}.{k}: NOT_SCHEDULE names a key that is not registered" for s, k in sorted(NOT_SCHEDULE)
            if k not in _SECTIONS.get(s, {}).get("full", {})]
    for section, key in sorted(keys & named):
        out += [f"{section}.{key}: {p}" for p in _entry_problems(SOURCES[section][key],
                                                                    _SECTIONS[section]["full"][key])]
    return out


def _numbers(value) -> list[float]:
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in _numbers(v)]
    return [] if value is None or isinstance(value, bool) else [float(value)]


def _entry_problems(source: Source, value) -> list[str]:
    out = []
    if source.kind not in KINDS:
        out.append(f"kind {source.kind!r} is not one of {', '.join(KINDS)}")
    if not source.text.strip():
        out.append("no reason or citation given")
    if source.kind in (PAPER, CODE) and not re.search(r"\b(19|20)\d\d\b", source.text):
        out.append("a citation names its year")
    if (source.kind == NO_CAP) != (value is None):
        out.append(f"value {value!r}: {NO_CAP} is for None exactly")
    if source.cited is not None:
        lo, hi = source.cited
        outside = [x for x in _numbers(value) if not lo * (1 - 1e-9) <= x <= hi * (1 + 1e-9)]
        if outside or not _numbers(value):
            out.append(f"value {value!r} is outside the cited range {lo:g}–{hi:g}")
    return out


def format_value(value) -> str:
    """``3e-05`` -> ``3e-5``, ``0.0006`` -> ``6e-4``, ``(1e-05, 0.1)`` -> ``1e-5, 0.1``, ``None`` -> ``None``."""
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(v) for v in value)
    if isinstance(value, float) and value != 0 and abs(value) < 0.01:
        mantissa, exponent = f"{value:e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def render_table() -> str:
    """The Markdown table: section, key, full value, kind of source, source or reason."""
    from .config import _SECTIONS

    found = problems()
    if found:
        raise ValueError("profile sources are incomplete:\n" + "\n".join(found))
    rows = ["| 模块（section） | 设置 | full 取值 | 依据 | 来源或理由 |", "|---|---|---|---|---|"]
    for section, key in schedule_keys():
        src = SOURCES[section][key]
        rows.append(f"| `{section}` | `{key}` | {format_value(_SECTIONS[section]['full'][key])} | "
                    f"{src.kind} | {src.text} |")
    return "\n".join(rows)


def page_table(text: str) -> str:
    """What stands between :data:`BEGIN` and :data:`END` in a page."""
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ValueError(f"the page must hold one {BEGIN!r} ... {END!r} block")
    return text[text.index(BEGIN) + len(BEGIN):text.index(END)].strip("\n")


def render_page(root: str | Path = ".") -> bool:
    """Write :func:`render_table` into the preface. Returns True if the page changed."""
    path = Path(root) / PAGE
    text = path.read_text(encoding="utf-8")
    old = page_table(text)
    new = render_table()
    if old == new:
        return False
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    path.write_text(text[:start] + "\n" + new + "\n" + text[end:], encoding="utf-8")
    return True


def main(argv: list[str] | None = None) -> int:
    """``python -m ftbook.profile_sources render|check``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv not in (["render"], ["check"]):
        print("usage: python -m ftbook.profile_sources render|check")
        return 2
    import_all()
    found = problems()
    if found:
        print("\n".join(found))
        return 1
    if argv == ["render"]:
        from .colab import book_root

        print(f"{PAGE}: {'updated' if render_page(book_root()) else 'unchanged'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
