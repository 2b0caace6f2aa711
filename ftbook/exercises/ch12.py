"""Exercises of chapter 12 (chapters/12_deployment.ipynb): status codes, p95 latency, dynamic axes."""

from __future__ import annotations

import math

from . import exercise


@exercise("ch12.q1", "100 texts against a 64-text limit: which HTTP status code?")
def q1(answer) -> None:
    if not isinstance(answer, int) or isinstance(answer, bool):
        raise AssertionError("请用一个整数回答，例如 200")
    if answer == 413:
        raise AssertionError("413 只在请求体的字节数超过 max_body_bytes 时出现；这里的请求体并不大")
    if answer == 500:
        raise AssertionError("坏输入永远不应得到 500：那表示服务器自己出了错")
    if answer == 200:
        raise AssertionError("服务器不会悄悄截掉多出的文本，而是拒绝这个请求")
    assert answer == 422, f"{answer} 不对：想想 FastAPI 对“内容不符合约定”的请求返回什么"


@exercise("ch12.q2", "p95(latencies): the 95th percentile with linear interpolation")
def q2(answer) -> None:
    if not callable(answer):
        raise AssertionError("请传入一个函数 p95(latencies)")
    cases = [([5.0], 5.0), ([1.0, 2.0], 1.95), ([3, 1, 2, 5, 4], 4.8),
             (list(range(1, 101)), 95.05), ([10, 10, 10, 200], 171.5)]
    for data, expected in cases:
        got = answer(list(data))
        if got is None:
            raise AssertionError("函数返回了 None：还没有实现")
        if not isinstance(got, (int, float)) or not math.isclose(float(got), expected, rel_tol=1e-9, abs_tol=1e-9):
            raise AssertionError(f"p95({data if len(data) < 10 else '1..100'}) 应为 {expected}，得到 {got}；"
                                 f"记得先排序，再在位置 (n-1)*0.95 处线性插值")


@exercise("ch12.q3", "which two dimensions are dynamic in the ONNX export?")
def q3(answer) -> None:
    if not isinstance(answer, (set, frozenset, list, tuple)):
        raise AssertionError("请用由两个字符串组成的集合回答，例如 {'a', 'b'}")
    got = {str(a).strip().lower() for a in answer}
    if not got:
        raise AssertionError("集合是空的")
    if "hidden" in got or "num_labels" in got:
        raise AssertionError("hidden 与 num_labels 由模型结构决定，对每个请求都一样")
    assert got == {"batch", "sequence"}, f"{sorted(got)} 不对：哪两个维度随请求变化？"
