import torch

from ftbook.exercises import check
from ftbook.pretrain import mask_tokens


def my_mask_tokens(input_ids, special, mask_id, vocab_size, generator):
    return mask_tokens(input_ids, special, mask_token_id=mask_id, vocab_size=vocab_size, generator=generator)


def all_mask(input_ids, special, mask_id, vocab_size, generator):
    inputs, labels = mask_tokens(input_ids, special, mask_token_id=mask_id, vocab_size=vocab_size,
                                 mask_replace_prob=1.0, random_replace_prob=0.0, generator=generator)
    return inputs, labels


def in_place(input_ids, special, mask_id, vocab_size, generator):
    inputs, labels = my_mask_tokens(input_ids, special, mask_id, vocab_size, generator)
    input_ids.copy_(inputs)
    return inputs, labels


def test_q1(capsys):
    assert check("ch09.q1", {"mask": 0.12, "random": 0.015, "kept": 0.015})
    assert not check("ch09.q1", {"mask": 0.8, "random": 0.1, "kept": 0.1})
    assert "15%" in capsys.readouterr().out
    assert not check("ch09.q1", None)
    assert not check("ch09.q1", {"mask": 0.12})


def test_q2(capsys):
    assert check("ch09.q2", my_mask_tokens)
    assert not check("ch09.q2", all_mask)
    assert "0.8/0.1/0.1" in capsys.readouterr().out
    assert not check("ch09.q2", in_place)
    assert not check("ch09.q2", None)
    assert not check("ch09.q2", lambda *a: (a[0].clone(), a[0].clone()))
