"""Int8 dynamic quantization of a classifier for CPU serving: size, latency and accuracy.

Taught in chapter 12 (``chapters/12_deployment.ipynb``, "int8 动态量化"). Dynamic quantization
(``torch.ao.quantization.quantize_dynamic``) stores the weights of every ``nn.Linear`` as int8
with one scale per tensor, and quantizes each activation on the fly (its range is measured per
batch, hence "dynamic"); matrix products run in int8 and are rescaled to float. Embeddings,
LayerNorm and softmax stay float32. No calibration data, no retraining: the cheapest of the
compression methods, and the one to measure first on a CPU server.

* :func:`quantize_dynamic_int8` - a quantized copy of a model (the original is untouched);
* :func:`serialized_mb` - the size of a model's ``state_dict`` as ``torch.save`` writes it;
* :func:`compare` - float32 vs int8 side by side: size, milliseconds per text, accuracy, and how
  often the two disagree.
"""

from __future__ import annotations

import copy
import io
import time
import warnings
from typing import Sequence


def quantize_dynamic_int8(model):
    """A copy of ``model`` (eval mode) whose ``nn.Linear`` layers are int8
    ``DynamicQuantizedLinear``; everything else is float32 as before. CPU only."""
    import torch
    from torch.ao.quantization import quantize_dynamic

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not any(isinstance(m, torch.nn.Linear) for m in model.modules()):
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer: nothing to quantize")
    if any(p.device.type != "cpu" for p in model.parameters()):
        raise ValueError("dynamic int8 quantization runs on the CPU: move the model with .cpu() first")
    with warnings.catch_warnings():  # torch >= 2.10 points to torchao for new code; the API still works
        warnings.simplefilter("ignore", (DeprecationWarning, UserWarning, FutureWarning))
        return quantize_dynamic(copy.deepcopy(model).eval(), {torch.nn.Linear}, dtype=torch.qint8)


def serialized_mb(model) -> float:
    """Megabytes (10^6 bytes) of ``torch.save(model.state_dict())`` - what a checkpoint takes on disk."""
    import torch

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes / 1e6


def _ms_per_text(classifier, texts: Sequence[str], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        classifier.logits(texts)
        best = min(best, time.perf_counter() - t0)
    return 1000 * best / len(texts)


def compare(classifier, texts: Sequence[str], labels: Sequence[int], *, timing_texts: int = 64,
            repeat: int = 3) -> dict:
    """Float32 ``classifier`` (an :class:`ftbook.serve.Classifier`) against its int8 copy.

    Accuracy and predictions on all ``texts``; milliseconds per text is the best of ``repeat``
    passes over the first ``timing_texts`` texts (in ``classifier.max_batch`` batches). Returns
    ``{"float32": {...}, "int8": {...}, "agreement": share of texts with the same prediction,
    "max_prob_diff": largest difference of a class probability}``.
    """
    import torch

    from .serve import Classifier

    if len(texts) != len(labels) or not texts:
        raise ValueError(f"need as many labels as texts (got {len(texts)} texts, {len(labels)} labels)")
    quantized = Classifier(model=quantize_dynamic_int8(classifier.model), tokenizer=classifier.tokenizer,
                           max_batch=classifier.max_batch, max_length=classifier.max_length)
    y = torch.tensor(list(labels))
    out, probs = {}, {}
    for name, clf in (("float32", classifier), ("int8", quantized)):
        logits = clf.logits(texts)
        probs[name] = logits.softmax(-1)
        out[name] = {"mb": round(serialized_mb(clf.model), 2),
                     "ms_per_text": round(_ms_per_text(clf, list(texts[:timing_texts]), repeat), 2),
                     "accuracy": round((logits.argmax(-1) == y).double().mean().item(), 4)}
    out["agreement"] = round((probs["float32"].argmax(-1) == probs["int8"].argmax(-1)).double().mean().item(), 4)
    out["max_prob_diff"] = round((probs["float32"] - probs["int8"]).abs().max().item(), 4)
    return out
