"""Each chapter-10 checker accepts the right answer and rejects a wrong one."""

import pytest
import torch

from ftbook.exercises import check, ch10


def test_q1():
    assert check("ch10.q1", 5e-5, quiet=True)
    assert not check("ch10.q1", 1e-4, quiet=True)
    assert not check("ch10.q1", 0.5, quiet=True)
    assert not check("ch10.q1", None, quiet=True)


def test_q2():
    right = {n for n in ch10.Q2_NAMES if n.endswith("bias") or "LayerNorm" in n}
    assert check("ch10.q2", right, quiet=True)
    assert not check("ch10.q2", right - {"classifier.bias"}, quiet=True)
    assert not check("ch10.q2", right | {"classifier.weight"}, quiet=True)
    assert not check("ch10.q2", {"not.a.param"}, quiet=True)
    assert not check("ch10.q2", None, quiet=True)


def test_q3(capsys):
    assert check("ch10.q3", 4)
    assert not check("ch10.q3", 8)
    assert "两个进程" in capsys.readouterr().out
    assert not check("ch10.q3", 4.0, quiet=True)


def test_q1_value_comes_from_the_schedule():
    from transformers import get_linear_schedule_with_warmup

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-4)
    sched = get_linear_schedule_with_warmup(opt, 10, 100)
    for _ in range(55):
        opt.step(), sched.step()
    assert sched.get_last_lr()[0] == pytest.approx(5e-5)  # the library agrees with the answer
    assert check("ch10.q1", sched.get_last_lr()[0], quiet=True)


def test_q2_answer_is_what_param_groups_decides():
    from transformers import BertConfig, BertForSequenceClassification

    from ftbook.exercises import ch10
    from ftbook.optim import param_groups

    model = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1,
                                                     num_attention_heads=2, intermediate_size=16))
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay = {names[id(p)] for p in param_groups(model, 0.01)[1]["params"]}
    expected = set(ch10.Q2_NAMES) & no_decay
    assert expected and check("ch10.q2", expected, quiet=True)
