"""Checkers of lab 16: the right answer passes, None fails, typical mistakes fail with their message."""

import re

import pytest
import torch
import torch.nn.functional as F

from ftbook import instruct
from ftbook.exercises import check, get, lab16

SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def chat(instruction, system=None, end="<|im_start|>assistant\n"):
    turns = [("system", SYSTEM if system is None else system), ("user", instruction)]
    return "".join(f"<|im_start|>{r}\n{c}<|im_end|>\n" for r, c in turns) + end


def test_registered_with_levels():
    levels = [get(f"lab16.t{k}").level for k in range(1, 7)]
    assert levels == ["easy", "easy", "medium", "medium", "medium", "hard"]
    assert all(get(f"lab16.t{k}").prompt for k in range(1, 7))


def test_t1_chat_prompt():
    assert check("lab16.t1", chat, quiet=True)
    assert check("lab16.t1", lambda i, s=None: instruct.chat_prompt(lab16.tokenizer(), i) if s is None else chat(i, s),
                 quiet=True)
    assert not check("lab16.t1", None, quiet=True)
    assert not check("lab16.t1", "text", quiet=True)
    with pytest.raises(AssertionError, match="系统提示"):
        lab16.t1(lambda i, s=None: f"<|im_start|>user\n{i}<|im_end|>\n<|im_start|>assistant\n")
    with pytest.raises(AssertionError, match="结尾"):
        lab16.t1(lambda i, s=None: chat(i, s, end=""))
    with pytest.raises(AssertionError, match="代替默认"):
        lab16.t1(lambda i, s=None: chat(i))


def sft_example(tok, instruction, answer, eot=True, mask=True, shift=False):
    prompt = tok(chat(instruction), add_special_tokens=False)["input_ids"]
    target = tok(answer + ("<|im_end|>" if eot else ""), add_special_tokens=False)["input_ids"]
    labels = ([-100] * len(prompt) if mask else prompt) + target
    if shift:
        labels = labels[1:] + [-100]
    return {"input_ids": prompt + target, "labels": labels}


def test_t2_sft_example():
    assert check("lab16.t2", sft_example, quiet=True)
    assert check("lab16.t2", instruct.sft_example, quiet=True)
    assert not check("lab16.t2", None, quiet=True)
    assert not check("lab16.t2", lambda *a: [1, 2], quiet=True)
    with pytest.raises(AssertionError, match="结束标记"):
        lab16.t2(lambda *a: sft_example(*a, eot=False))
    with pytest.raises(AssertionError, match="-100"):
        lab16.t2(lambda *a: sft_example(*a, mask=False))
    with pytest.raises(AssertionError, match="左移"):
        lab16.t2(lambda *a: sft_example(*a, shift=True))


def test_t3_loss():
    def right(logits, labels):
        return F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)

    assert check("lab16.t3", right, quiet=True)
    assert not check("lab16.t3", None, quiet=True)
    assert not check("lab16.t3", lambda lg, lb: None, quiet=True)
    with pytest.raises(AssertionError, match="没有移位"):
        lab16.t3(lambda lg, lb: F.cross_entropy(lg.flatten(0, 1), lb.flatten(), ignore_index=-100))
    with pytest.raises(AssertionError, match="方向反了"):
        lab16.t3(lambda lg, lb: F.cross_entropy(lg[:, 1:].flatten(0, 1), lb[:, :-1].flatten(), ignore_index=-100))
    with pytest.raises(AssertionError, match="每条样本求平均"):
        lab16.t3(lambda lg, lb: torch.stack([F.cross_entropy(lg[i, :-1], lb[i, 1:], ignore_index=-100)
                                             for i in range(len(lg))]).mean())
    with pytest.raises(AssertionError, match="求导"):
        lab16.t3(lambda lg, lb: right(lg, lb).detach())


def make_exact_match(lower=True, strip=True, sets=True, pooled=True):
    def norm(text, task):
        if strip:
            text = text.strip().strip("“”\"'「」‘’").strip()
            text = re.sub(r"[。.!！;；,，]+$", "", text).strip()
        text = text.lower() if lower else text
        if task == "persons" and sets:
            return frozenset(n for n in re.split(r"[、，,\s和]+", text) if n)
        return text

    def em(preds, items):
        hits = {}
        for p, x in zip(preds, items):
            hits.setdefault(x.task, []).append(norm(p, x.task) == norm(x.answer, x.task))
        out = {t: sum(h) / len(h) for t, h in hits.items()}
        out["all"] = (sum(sum(h) for h in hits.values()) / len(items)) if pooled else sum(out.values()) / len(out)
        return out

    return em


def test_t4_exact_match():
    assert check("lab16.t4", make_exact_match(), quiet=True)
    assert check("lab16.t4", instruct.exact_match, quiet=True)
    assert not check("lab16.t4", None, quiet=True)
    assert not check("lab16.t4", lambda p, i: [0.5], quiet=True)
    with pytest.raises(AssertionError, match="小写"):
        lab16.t4(make_exact_match(lower=False))
    with pytest.raises(AssertionError, match="引号"):
        lab16.t4(make_exact_match(strip=False))
    with pytest.raises(AssertionError, match="集合"):
        lab16.t4(make_exact_match(sets=False))
    with pytest.raises(AssertionError, match="不是三个任务分数的平均"):
        lab16.t4(make_exact_match(pooled=False))


def greedy(model, prompt, max_new, eot, keep_eot=False, stop=True, with_prompt=False):
    seq, new = prompt, []
    with torch.no_grad():
        for _ in range(max_new):
            nxt = int(model(input_ids=seq).logits[0, -1].argmax())
            if nxt == eot and stop:
                if keep_eot:
                    new.append(nxt)
                break
            new.append(nxt)
            seq = torch.cat([seq, torch.tensor([[nxt]])], 1)
    return prompt[0].tolist() + new if with_prompt else new


def test_t5_greedy():
    assert check("lab16.t5", greedy, quiet=True)
    assert not check("lab16.t5", None, quiet=True)
    assert not check("lab16.t5", lambda *a: 3, quiet=True)
    with pytest.raises(AssertionError, match="不应出现"):
        lab16.t5(lambda *a: greedy(*a, keep_eot=True))
    with pytest.raises(AssertionError, match="没有停下"):
        lab16.t5(lambda *a: greedy(*a, stop=False))
    with pytest.raises(AssertionError, match="提示本身"):
        lab16.t5(lambda *a: greedy(*a, with_prompt=True))


def collate(examples, pad_id, mask_ok=True, shift=True, pad_label=-100, left=False):
    width = max(len(e["input_ids"]) for e in examples)
    ids, mask, labels = [], [], []
    for e in examples:
        n, k = len(e["input_ids"]), width - len(e["input_ids"])
        lab = (list(e["labels"][1:]) + [-100]) if shift else list(e["labels"])
        if left:
            ids.append([pad_id] * k + e["input_ids"])
            mask.append([0] * k + [1] * n)
            labels.append([pad_label] * k + lab)
        else:
            ids.append(e["input_ids"] + [pad_id] * k)
            mask.append([1] * n + [0] * k if mask_ok else [1] * width)
            labels.append(lab + [pad_label] * k)
    return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask), "labels": torch.tensor(labels)}


def test_t6_collate():
    assert check("lab16.t6", collate, quiet=True)
    assert not check("lab16.t6", None, quiet=True)
    assert not check("lab16.t6", lambda e, p: [1], quiet=True)
    with pytest.raises(AssertionError, match="attention_mask"):
        lab16.t6(lambda e, p: collate(e, p, mask_ok=False))
    with pytest.raises(AssertionError, match="没有左移"):
        lab16.t6(lambda e, p: collate(e, p, shift=False))
    with pytest.raises(AssertionError, match="pad_id"):
        lab16.t6(lambda e, p: collate(e, p, pad_label=p))
    with pytest.raises(AssertionError, match="左边填充"):
        lab16.t6(lambda e, p: collate(e, p, left=True))
