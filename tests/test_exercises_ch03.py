import torch

from ftbook.exercises import check


def test_q1_right_and_wrong():
    ls = sorted([5, 17, 9, 30, 12, 28])
    right = 1 - sum(ls) / (2 * 9 + 2 * 17 + 2 * 30)
    assert check("ch03.q1", right, quiet=True)
    assert not check("ch03.q1", 1 - sum(ls) / 180, quiet=True)
    assert not check("ch03.q1", None, quiet=True)


def test_q2_right_and_wrong():
    def good(features, pad_id):
        w = max(len(f["input_ids"]) for f in features)
        return {"input_ids": torch.tensor([f["input_ids"] + [pad_id] * (w - len(f["input_ids"])) for f in features]),
                "attention_mask": torch.tensor([[1] * len(f["input_ids"]) + [0] * (w - len(f["input_ids"])) for f in features])}

    def pads_with_zero(features, pad_id):
        return good(features, 0)

    assert check("ch03.q2", good, quiet=True)
    assert not check("ch03.q2", pads_with_zero, quiet=True)
    assert not check("ch03.q2", None, quiet=True)
