"""Checkers of lab 12: the right answer passes, None fails, typical mistakes fail with their message."""

import functools
import json
import struct

import pytest
import torch

from ftbook.exercises import check, get, lab12


def test_registered_with_levels():
    levels = [get(f"lab12.t{k}").level for k in range(1, 6)]
    assert levels == ["easy", "easy", "medium", "medium", "hard"]
    assert all(get(f"lab12.t{k}").prompt for k in range(1, 6))


def quant(w, levels=127.5, clamp=True, rounding=torch.round):
    scale = w.abs().max().item() / levels
    q = rounding(w / scale)
    return (q.clamp(-128, 127) if clamp else q).to(torch.int8 if clamp else torch.int64), scale


def test_t1_symmetric_int8():
    assert check("lab12.t1", quant, quiet=True)
    assert not check("lab12.t1", None, quiet=True)
    assert not check("lab12.t1", lambda w: (None, None), quiet=True)
    assert not check("lab12.t1", lambda w: 1.0, quiet=True)
    with pytest.raises(AssertionError, match="127.5"):
        lab12.t1(functools.partial(quant, levels=127))
    with pytest.raises(AssertionError, match="截断到"):
        lab12.t1(functools.partial(quant, clamp=False))
    with pytest.raises(AssertionError, match="四舍五入"):
        lab12.t1(functools.partial(quant, rounding=torch.trunc))
    with pytest.raises(AssertionError, match="非对称"):
        lab12.t1(lambda w: (torch.zeros_like(w), (w.max() - w.min()).item() / 255))


def test_t2_size():
    model = lab12._t2_model()
    right = lab12._t2_bytes(model) / 1e6
    assert check("lab12.t2", right, quiet=True)
    assert not check("lab12.t2", None, quiet=True)
    assert not check("lab12.t2", "8.6", quiet=True)
    n = sum(p.numel() for p in model.parameters())
    with pytest.raises(AssertionError, match="全部 float32"):
        lab12.t2(4 * n / 1e6)
    with pytest.raises(AssertionError, match="偏置仍是 float32"):
        lab12.t2(lab12._t2_bytes(model, linear_bias_int8=True) / 1e6)
    with pytest.raises(AssertionError, match="只量化 nn.Linear"):
        lab12.t2(lab12._t2_bytes(model, embeddings=False) / 1e6)
    with pytest.raises(AssertionError, match="MiB"):
        lab12.t2(lab12._t2_bytes(model) / 2**20)


def read_header(path, endian="<", keep_meta=False):
    raw = open(path, "rb").read()
    (n,) = struct.unpack(endian + "Q", raw[:8])
    header = json.loads(raw[8: 8 + n])
    if not keep_meta:
        header.pop("__metadata__", None)
    return header


def test_t3_header():
    assert check("lab12.t3", read_header, quiet=True)
    assert not check("lab12.t3", None, quiet=True)
    assert not check("lab12.t3", lambda p: None, quiet=True)
    with pytest.raises(AssertionError, match="__metadata__"):
        lab12.t3(functools.partial(read_header, keep_meta=True))
    with pytest.raises(AssertionError, match="小端"):
        lab12.t3(functools.partial(read_header, endian=">"))
    with pytest.raises(AssertionError, match="shape"):
        lab12.t3(lambda p: {k: dict(v, shape=v["shape"][::-1] + [1]) for k, v in read_header(p).items()})


def validate(payload, max_texts, max_chars, strip=True, inclusive=True, allow_extra=False):
    if not isinstance(payload, dict) or "texts" not in payload:
        return False
    if not allow_extra and set(payload) != {"texts"}:
        return False
    texts = payload["texts"]
    if not isinstance(texts, list) or not texts or len(texts) > max_texts:
        return False
    for t in texts:
        if not isinstance(t, str) or not (t.strip() if strip else t):
            return False
        if len(t) > max_chars or (not inclusive and len(t) == max_chars):
            return False
    return True


def test_t4_validate():
    assert check("lab12.t4", validate, quiet=True)
    assert not check("lab12.t4", None, quiet=True)
    assert not check("lab12.t4", lambda p, a, b: None, quiet=True)
    assert not check("lab12.t4", lambda p, a, b: "yes", quiet=True)
    with pytest.raises(AssertionError, match="只有空白"):
        lab12.t4(functools.partial(validate, strip=False))
    with pytest.raises(AssertionError, match="正好 max_chars"):
        lab12.t4(functools.partial(validate, inclusive=False))
    with pytest.raises(AssertionError, match="多了一个字段"):
        lab12.t4(functools.partial(validate, allow_extra=True))


def test_t5_simulation():
    assert check("lab12.t5", lab12._simulate, quiet=True)
    assert not check("lab12.t5", None, quiet=True)
    assert not check("lab12.t5", lambda *a: None, quiet=True)
    assert not check("lab12.t5", lambda *a: [0.0], quiet=True)
    with pytest.raises(AssertionError, match="到达"):
        lab12.t5(functools.partial(lab12._simulate, from_free=True))
    with pytest.raises(AssertionError, match="最多 max_batch"):
        lab12.t5(functools.partial(lab12._simulate, cap=False))
    with pytest.raises(AssertionError, match="上一批的完成时刻"):
        lab12.t5(functools.partial(lab12._simulate, busy=False))
