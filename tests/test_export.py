"""Tests of ftbook.export: the ONNX file computes what the eager model computes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ftbook import export
from ftbook.resources import minilm_path


@pytest.fixture(scope="module")
def model_and_tokenizer():
    from transformers import AutoTokenizer, BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(minilm_path(), num_labels=3).eval()
    return model, AutoTokenizer.from_pretrained(minilm_path())


@pytest.fixture(scope="module")
def onnx_file(model_and_tokenizer, tmp_path_factory):
    model, tok = model_and_tokenizer
    return export.export_onnx(model, tok, tmp_path_factory.mktemp("onnx") / "clf.onnx", max_length=32)


def test_onnx_equals_eager_on_new_shapes(model_and_tokenizer, onnx_file):
    model, tok = model_and_tokenizer
    assert not model.training  # export leaves the model in eval mode
    sess = export.onnx_session(onnx_file, threads=1)
    # other batch sizes and lengths than the two traced texts, with and without padding
    for texts in (["one"], ["a b c d e f g h i j k l", "x", "medium length text here"]):
        diff = export.check_onnx(model, tok, sess, texts, max_length=32)
        assert diff < 1e-4
    logits = export.onnx_logits(sess, tok, ["hello there"], max_length=32)
    assert logits.shape == (1, 3) and logits.dtype == np.float32


def test_check_onnx_detects_a_different_model(model_and_tokenizer, onnx_file):
    from transformers import BertForSequenceClassification

    _, tok = model_and_tokenizer
    torch.manual_seed(1)  # another random head: logits differ
    other = BertForSequenceClassification.from_pretrained(minilm_path(), num_labels=3).eval()
    sess = export.onnx_session(onnx_file)
    with pytest.raises(AssertionError, match="differ"):
        export.check_onnx(other, tok, sess, ["some text", "more text"], max_length=32)


def test_bad_arguments(model_and_tokenizer, tmp_path):
    model, tok = model_and_tokenizer
    with pytest.raises(ValueError, match=r"must end with \.onnx"):
        export.export_onnx(model, tok, tmp_path / "model.bin")
    with pytest.raises(ValueError, match="opset must be an int >= 14"):
        export.export_onnx(model, tok, tmp_path / "m.onnx", opset=9)
    with pytest.raises(TypeError, match="transformers model"):
        export.export_onnx(object(), tok, tmp_path / "m.onnx")
    with pytest.raises(FileNotFoundError, match="no ONNX file"):
        export.onnx_session(tmp_path / "missing.onnx")
    with pytest.raises(ValueError, match="non-empty list"):
        export.export_onnx(model, tok, tmp_path / "m.onnx", example_texts=["ok", ""])
