"""Exporting a classifier to ONNX and checking it against the eager PyTorch model.

Taught in chapter 12 (``chapters/12_deployment.ipynb``, "导出：离开 Python 也能推理").

ONNX is a file format for the computation graph plus weights; ``onnxruntime`` (C++, also for
Java, C#, JavaScript, mobile) runs it without PyTorch. We use the TorchScript-based exporter
(``torch.onnx.export(..., dynamo=False)``), which works offline with only ``onnx`` installed; the
newer ``dynamo=True`` exporter needs the extra ``onnxscript`` package. Batch and sequence
lengths are dynamic axes, so one file serves every shape; :func:`check_onnx` proves it on
shapes other than the ones used for tracing.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Sequence

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


class _LogitsOnly:
    """Factory of a wrapper module whose forward takes tensors by position and returns logits."""

    @staticmethod
    def wrap(model):
        import torch

        class LogitsOnly(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, input_ids, attention_mask, token_type_ids):
                return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                                  token_type_ids=token_type_ids).logits  # (batch, num_labels)

        return LogitsOnly(model).eval()


def _encode(tokenizer, texts: Sequence[str], max_length: int):
    if isinstance(texts, str) or not texts or not all(isinstance(t, str) and t for t in texts):
        raise ValueError("texts must be a non-empty list of non-empty strings")
    enc = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    if "token_type_ids" not in enc:
        import torch

        enc["token_type_ids"] = torch.zeros_like(enc["input_ids"])
    return {k: enc[k] for k in INPUT_NAMES}


def export_onnx(model, tokenizer, path: str | os.PathLike, *, example_texts: Sequence[str] | None = None,
                max_length: int = 128, opset: int = 17) -> Path:
    """Write ``model`` (a ``*ForSequenceClassification``) as an ONNX file with dynamic batch/length.

    The example batch used for tracing has two texts of different lengths, so the padding mask
    path is traced too. The model is put in eval mode (dropout off) and left there.
    """
    import torch

    if not hasattr(model, "config") or not hasattr(model, "forward"):
        raise TypeError(f"model must be a transformers model, got {type(model).__name__}")
    if not isinstance(opset, int) or opset < 14:
        raise ValueError(f"opset must be an int >= 14 (scaled-dot-product attention), got {opset!r}")
    path = Path(path)
    if path.suffix != ".onnx":
        raise ValueError(f"path must end with .onnx, got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    texts = list(example_texts or ["a short text", "a somewhat longer example text for tracing"])
    enc = _encode(tokenizer, texts, max_length)
    model.eval()
    wrapper = _LogitsOnly.wrap(model)
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
    axes["logits"] = {0: "batch"}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and legacy-exporter notices, all expected here
        torch.onnx.export(wrapper, tuple(enc[k] for k in INPUT_NAMES), str(path),
                          input_names=list(INPUT_NAMES), output_names=["logits"],
                          dynamic_axes=axes, opset_version=opset, dynamo=False)
    model.eval()  # the exporter may restore training mode on the wrapper's children
    return path


def onnx_session(path: str | os.PathLike, threads: int | None = None):
    """An ``onnxruntime.InferenceSession`` on CPU for the file at ``path``."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no ONNX file at {path}; create it with export_onnx(model, tokenizer, path)")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_logits(session, tokenizer, texts: Sequence[str], max_length: int = 128):
    """Logits from an ONNX session as a NumPy array ``(len(texts), num_labels)``."""
    enc = _encode(tokenizer, texts, max_length)
    return session.run(["logits"], {k: v.numpy() for k, v in enc.items()})[0]


def check_onnx(model, tokenizer, session, texts: Sequence[str], *, max_length: int = 128,
               atol: float = 1e-4) -> float:
    """Max |ONNX - eager| over the logits of ``texts``; raises AssertionError above ``atol``.

    Also checks that both give the same predicted class for every text.
    """
    import numpy as np
    import torch

    enc = _encode(tokenizer, texts, max_length)
    model.eval()
    with torch.inference_mode():
        eager = model(**enc).logits.float().numpy()
    ours = session.run(["logits"], {k: v.numpy() for k, v in enc.items()})[0]
    if ours.shape != eager.shape:
        raise AssertionError(f"ONNX logits have shape {ours.shape}, eager {eager.shape}")
    diff = float(np.abs(ours - eager).max())
    if not diff <= atol:
        raise AssertionError(f"ONNX and eager logits differ by {diff:.3g} > atol {atol:g}")
    if not (ours.argmax(-1) == eager.argmax(-1)).all():
        raise AssertionError("ONNX and eager models predict different classes")
    return diff
