"""Checkpoints of lab 12 (``chapters/labs/lab12.ipynb``): serving a classifier - symmetric int8
weights, model size after quantization, the safetensors header, validating API requests, and
dynamic batching of requests. Chapter 12 teaches it."""

from __future__ import annotations

import json
import math
import struct
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from . import exercise
from ._answers import callable_answer as _callable


def t1_weight() -> torch.Tensor:
    """Task 1's weight: its largest magnitude is positive, so w / scale reaches +127.5 there."""
    g = torch.Generator().manual_seed(121)
    w = torch.randn(6, 5, generator=g) * 0.05
    w[2, 3] = 0.2
    w[4, 1] = -0.13
    return w


def _reference_int8(w: torch.Tensor) -> tuple[torch.Tensor, float]:
    from torch.ao.quantization.observer import MinMaxObserver

    obs = MinMaxObserver(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)
    obs(w)
    scale, _ = obs.calculate_qparams()
    with warnings.catch_warnings():  # torch >= 2.10 deprecates quantized tensors; the values are what we check
        warnings.simplefilter("ignore")
        q = torch.quantize_per_tensor(w, float(scale), 0, torch.qint8).int_repr()
    return q, float(scale)


@exercise("lab12.t1", "写 quantize_symmetric(w)：按 torch 动态量化的方式把权重存成 int8（对称、每个张量一个 scale），"
          "返回 (int8 值, scale)。", level="easy")
def t1(answer) -> None:
    _callable(answer, "def quantize_symmetric(w): ...")
    w = t1_weight()
    want_q, want_scale = _reference_int8(w)
    out = answer(w.clone())
    if out is None or (isinstance(out, tuple) and any(v is None for v in out)):
        raise AssertionError("函数返回了 None：还没有完成 TODO（应返回 (q, scale)）。")
    try:
        q, scale = out
        q = torch.as_tensor(q)
        scale = float(scale)
    except (TypeError, ValueError):
        raise TypeError("应返回二元组 (q, scale)：q 是与 w 同形状的整数张量，scale 是一个数。") from None
    amax = w.abs().max().item()
    if math.isclose(scale, amax / 127, rel_tol=1e-5):
        raise AssertionError("scale 用了 max|w| / 127；torch 的 qint8 范围是 [−128, 127]，对称量化的 scale 是 "
                             "max|w| / ((127 − (−128)) / 2) = max|w| / 127.5。")
    if math.isclose(scale, (w.max() - w.min()).item() / 255, rel_tol=1e-5):
        raise AssertionError("这是非对称（affine）量化的 scale；权重用对称量化：零点为 0，scale = max|w| / 127.5。")
    if not math.isclose(scale, want_scale, rel_tol=1e-5):
        raise AssertionError(f"scale 应为 {want_scale:.6g}，你的是 {scale:.6g}：对称量化只看 max|w|。")
    if tuple(q.shape) != tuple(w.shape):
        raise AssertionError(f"q 的形状应与 w 相同 {tuple(w.shape)}，你的是 {tuple(q.shape)}。")
    if q.dtype.is_floating_point and not torch.equal(q, q.round()):
        raise AssertionError("q 还不是整数：要 round(w / scale)。")
    q = q.to(torch.int64)
    if int(q.max()) > 127 or int(q.min()) < -128:
        raise AssertionError(f"q 里有 {int(q.max())}：最大的 |w| 除以 scale 正好是 127.5，四舍五入到 128，超出了 int8；"
                             "要截断到 [−128, 127]（torch.clamp）。")
    bad = (q - want_q.to(torch.int64)).abs()
    if int(bad.max()) == 0:
        return
    if torch.equal(q, torch.trunc(w / want_scale).to(torch.int64).clamp(-128, 127)):
        raise AssertionError("你把 w / scale 截断取整了（向 0 取整）；要四舍五入（torch.round）。")
    raise AssertionError(f"{int((bad > 0).sum())} 个 int8 值与 torch.quantize_per_tensor 不同：q = clamp(round(w / scale), −128, 127)。")


def _t2_model():
    from transformers import BertConfig, BertForSequenceClassification

    cfg = json.loads((Path(__file__).resolve().parent.parent / "weights" / "chinese-bert-tiny" / "config.json").read_text())
    config = BertConfig(**{k: v for k, v in cfg.items() if k in BertConfig().to_dict()}, num_labels=2)
    with torch.device("meta"):
        return BertForSequenceClassification(config)


def _t2_bytes(model, linear_bias_int8=False, embeddings=True) -> int:
    int8 = set()
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            int8.add(id(module.weight))
            if linear_bias_int8 and module.bias is not None:
                int8.add(id(module.bias))
    if embeddings:
        int8.add(id(model.bert.embeddings.word_embeddings.weight))
    return sum(p.numel() * (1 if id(p) in int8 else 4) for p in model.parameters())


@exercise("lab12.t2", "中文评论分类器：若 nn.Linear 的权重和词向量表都存成 int8、其余参数仍为 float32，"
          "参数一共占多少 MB（10⁶ 字节）？", level="easy")
def t2(answer) -> None:
    if answer is None:
        raise AssertionError("还没有作答：请给出一个数（MB，10⁶ 字节）。")
    if isinstance(answer, bool) or not isinstance(answer, (int, float)):
        raise TypeError(f"请给出一个数（float，单位 MB），而不是 {type(answer).__name__}")
    model = _t2_model()
    want = _t2_bytes(model) / 1e6
    a = float(answer)
    if math.isclose(a, want, rel_tol=1e-3):
        return
    n = sum(p.numel() for p in model.parameters())
    checks = [
        (4 * n / 1e6, "这是全部 float32 的大小；nn.Linear 的权重和词向量表每个数只占 1 字节。"),
        (n / 1e6, "不是所有参数都变成 int8：偏置、LayerNorm、位置与句段嵌入仍是 float32（4 字节）。"),
        (_t2_bytes(model, linear_bias_int8=True) / 1e6, "nn.Linear 的偏置仍是 float32：只有权重矩阵存成 int8。"),
        (_t2_bytes(model, embeddings=False) / 1e6, "这是只量化 nn.Linear 的大小（第 12 章的做法）；题目里词向量表也存成 int8。"),
        (_t2_bytes(model) / 2**20, "单位是 MB = 10⁶ 字节，不是 MiB = 2²⁰ 字节。"),
    ]
    for value, hint in checks:
        if math.isclose(a, value, rel_tol=1e-3):
            raise AssertionError(hint)
    raise AssertionError(f"{a:g} MB 不对：逐个参数数一数——nn.Linear 的权重与 word_embeddings 每个 1 字节，其余每个 4 字节。")


def _t3_file(folder: Path) -> tuple[Path, dict]:
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(123)
    tensors = {"encoder.weight": torch.randn(3, 4, generator=g), "encoder.bias": torch.randn(5, generator=g).half(),
               "positions": torch.arange(6).reshape(2, 3, 1)}
    path = folder / "model.safetensors"
    save_file(tensors, str(path), metadata={"format": "pt"})
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8: 8 + n])
    header.pop("__metadata__", None)
    return path, header


@exercise("lab12.t3", "写 read_safetensors_header(path)：只读文件开头的 8 字节长度与 JSON 头，返回 {张量名: 头里的条目}"
          "（dtype、shape、data_offsets），不含 __metadata__。", level="medium")
def t3(answer) -> None:
    _callable(answer, "def read_safetensors_header(path): ...")
    with tempfile.TemporaryDirectory() as tmp:
        path, want = _t3_file(Path(tmp))
        try:
            got = answer(path)
        except (UnicodeDecodeError, json.JSONDecodeError, MemoryError, OverflowError, ValueError) as exc:
            raise AssertionError(f"解析 JSON 头时出错（{type(exc).__name__}）：头的长度是开头 8 字节的"
                                 "小端无符号 64 位整数（struct.unpack('<Q', ...)），JSON 从第 8 个字节开始。") from None
    if got is None:
        raise AssertionError("函数返回了 None：还没有完成 TODO（应返回一个 dict）。")
    if not isinstance(got, dict):
        raise TypeError(f"应返回一个 dict（张量名 → 条目），而不是 {type(got).__name__}")
    if "__metadata__" in got:
        raise AssertionError("__metadata__ 不是张量（它是 {'format': 'pt'} 这样的字符串表）：把它去掉。")
    if set(got) != set(want):
        raise AssertionError(f"张量名应为 {sorted(want)}，你的是 {sorted(got)}。")
    for name, entry in want.items():
        mine = got[name]
        if not isinstance(mine, dict):
            raise TypeError(f"{name} 的条目应是 dict（dtype、shape、data_offsets），而不是 {type(mine).__name__}")
        for key in ("dtype", "shape", "data_offsets"):
            value = mine.get(key)
            ok = value is not None and (value == entry[key] if key == "dtype" else list(value) == list(entry[key]))
            if not ok:
                raise AssertionError(f"{name} 的 {key} 应为 {entry[key]!r}，你的是 {value!r}：直接取 JSON 头里的值。")


def _request_model(max_texts: int, max_chars: int):
    from ..serve import _api_models

    return _api_models(max_texts, max_chars)[0]


def t4_payloads(max_texts: int = 4, max_chars: int = 10) -> dict:
    """Task 4's request bodies (already parsed from JSON), by what each one tries."""
    return {
        "合法：一条文本": {"texts": ["很好"]},
        "合法：正好 max_texts 条": {"texts": ["a"] * max_texts},
        "合法：正好 max_chars 个字符": {"texts": ["x" * max_chars]},
        "合法：前后有空格": {"texts": ["  还行  "]},
        "文本太多": {"texts": ["a"] * (max_texts + 1)},
        "文本太长": {"texts": ["x" * (max_chars + 1)]},
        "空列表": {"texts": []},
        "空字符串": {"texts": ["ok", ""]},
        "只有空白": {"texts": [" \t\n"]},
        "列表里有数字": {"texts": ["ok", 3]},
        "texts 是字符串": {"texts": "just one"},
        "缺少 texts": {"text": ["a"]},
        "多了一个字段": {"texts": ["a"], "debug": True},
        "请求体不是对象": ["a", "b"],
        "texts 为 null": {"texts": None},
    }


@exercise("lab12.t4", "写 validate(payload, max_texts, max_chars)：POST /predict 的请求体是否合法（True / False），"
          "与本书 API 的 pydantic 模型判断一致。", level="medium")
def t4(answer) -> None:
    import pydantic

    _callable(answer, "def validate(payload, max_texts, max_chars): ...")
    for max_texts, max_chars in ((4, 10), (2, 3)):
        model = _request_model(max_texts, max_chars)
        for label, payload in t4_payloads(max_texts, max_chars).items():
            try:
                model.model_validate(payload)
                want = True
            except pydantic.ValidationError:
                want = False
            got = answer(json.loads(json.dumps(payload)), max_texts, max_chars)
            if got is None:
                raise AssertionError("函数返回了 None：还没有完成 TODO（应返回 True 或 False）。")
            if not isinstance(got, (bool, np.bool_)):
                raise TypeError(f"应返回 True 或 False，而不是 {type(got).__name__}")
            if bool(got) != want:
                verdict = "应当接受" if want else "应当拒绝（422）"
                raise AssertionError(f"max_texts={max_texts}、max_chars={max_chars} 时，“{label}” {payload!r:.60} "
                                     f"{verdict}，你的函数返回了 {bool(got)}。")


def _simulate(arrivals, cost_fixed, cost_per_item, max_batch, window, *, from_free=False, cap=True, busy=True):
    """Reference single-worker dynamic batching (see the lab's task 5 for the rules)."""
    n = len(arrivals)
    finish = [0.0] * n
    free, k = 0.0, 0
    while k < n:
        last = k + max_batch - 1 if cap else n - 1
        full_at = arrivals[last] if last < n else math.inf
        opened = max(free, arrivals[k]) if from_free else arrivals[k]
        launch = min(opened + window, full_at)
        if busy:
            launch = max(free, launch)
        j = k
        while j < n and arrivals[j] <= launch and (not cap or j - k < max_batch):
            j += 1
        done = launch + cost_fixed + cost_per_item * (j - k)
        for i in range(k, j):
            finish[i] = done
        free, k = done, j
    return [f - a for f, a in zip(finish, arrivals)]


def t5_arrivals(seed: int = 125, n: int = 60, rate: float = 0.4) -> list[float]:
    """Poisson arrivals (times in ms, sorted) for task 5's checker."""
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.exponential(1 / rate, n)).round(3).tolist()


@exercise("lab12.t5", "写 simulate(arrivals, cost_fixed, cost_per_item, max_batch, window)：单个 worker、动态批处理时"
          "每个请求的延迟，与参考模拟一致。", level="hard")
def t5(answer) -> None:
    _callable(answer, "def simulate(arrivals, cost_fixed, cost_per_item, max_batch, window): ...")
    cases = [(t5_arrivals(), 4.0, 1.0, 1, 0.0), (t5_arrivals(), 4.0, 1.0, 8, 0.0),
             (t5_arrivals(), 4.0, 1.0, 8, 3.0), (t5_arrivals(126, rate=1.5), 4.0, 0.5, 4, 2.0)]
    for arrivals, a, c, b, w in cases:
        want = _simulate(arrivals, a, c, b, w)
        got = answer(list(arrivals), a, c, b, w)
        if got is None:
            raise AssertionError("函数返回了 None：还没有完成 TODO（应返回每个请求的延迟列表）。")
        try:
            got = np.asarray(got, dtype=float).reshape(-1)
        except (TypeError, ValueError):
            raise TypeError("应返回一个数的列表：每个请求一个延迟（完成时刻 − 到达时刻）。") from None
        if got.shape != (len(arrivals),):
            raise AssertionError(f"应返回 {len(arrivals)} 个延迟（每个请求一个），你返回了 {got.size} 个。")
        if np.allclose(got, want, atol=1e-6):
            continue
        setting = f"max_batch={b}、window={w}"
        variants = [
            (dict(from_free=True), "等待窗口从最早那个排队请求的**到达**时刻算起，不是从 worker 空闲的时刻算起。"),
            (dict(cap=False), "一批最多 max_batch 个请求；超出的留到下一批。"),
            (dict(busy=False), "worker 还在算上一批时不能开新的一批：开批时刻至少是上一批的完成时刻。"),
        ]
        for kw, hint in variants:
            if np.allclose(got, _simulate(arrivals, a, c, b, w, **kw), atol=1e-6):
                raise AssertionError(f"{setting}：{hint}")
        i = int(np.argmax(np.abs(got - want)))
        raise AssertionError(f"{setting}：第 {i} 个请求（{arrivals[i]:.3f} ms 到达）的延迟应为 {want[i]:.3f} ms，"
                             f"你的是 {got[i]:.3f} ms。")
