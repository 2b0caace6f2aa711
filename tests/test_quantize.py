"""Chapter 12's int8 dynamic quantization (ftbook.quantize) on the book's Chinese BERT."""

import pytest
import torch

from ftbook import quantize


@pytest.fixture(scope="module")
def classifier():
    from transformers import AutoTokenizer, BertForSequenceClassification

    from ftbook.pretrain import pretrained_chinese_bert
    from ftbook.resources import quiet_load
    from ftbook.serve import Classifier

    path = pretrained_chinese_bert("tiny")
    torch.manual_seed(0)
    model = quiet_load(lambda: BertForSequenceClassification.from_pretrained(path, num_labels=2))
    return Classifier(model=model, tokenizer=AutoTokenizer.from_pretrained(path), max_batch=8, max_length=32)


def test_linear_layers_become_int8_and_the_original_is_untouched(classifier):
    before = {k: v.clone() for k, v in classifier.model.state_dict().items()}
    q = quantize.quantize_dynamic_int8(classifier.model)
    from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

    n_linear = sum(isinstance(m, torch.nn.Linear) for m in classifier.model.modules())
    assert sum(isinstance(m, DynamicQuantizedLinear) for m in q.modules()) == n_linear == 4 * 6 + 2
    assert not any(isinstance(m, torch.nn.Linear) for m in q.modules())
    assert all(torch.equal(before[k], v) for k, v in classifier.model.state_dict().items())
    assert any(isinstance(m, torch.nn.Linear) for m in classifier.model.modules())


def test_int8_is_smaller_and_close_to_float32(classifier):
    texts = ["这家酒店的服务很好", "房间太小了，而且隔音很差", "物流很快", "一般般吧，下次不来了"] * 4
    res = quantize.compare(classifier, texts, [1, 0, 1, 0] * 4, timing_texts=8, repeat=1)
    assert res["int8"]["mb"] < 0.75 * res["float32"]["mb"]  # the Linear weights shrink 4x; embeddings stay
    assert res["max_prob_diff"] < 0.05 and res["agreement"] >= 0.9
    assert set(res["float32"]) == {"mb", "ms_per_text", "accuracy"}


def test_bad_input_is_a_clear_error(classifier):
    with pytest.raises(TypeError, match="nn.Module"):
        quantize.quantize_dynamic_int8("model")
    with pytest.raises(ValueError, match="no nn.Linear"):
        quantize.quantize_dynamic_int8(torch.nn.LayerNorm(4))
    with pytest.raises(ValueError, match="as many labels"):
        quantize.compare(classifier, ["a", "b"], [1])


def test_serialized_mb_counts_the_state_dict():
    lin = torch.nn.Linear(1000, 250)  # 250,250 float32 numbers
    assert quantize.serialized_mb(lin) == pytest.approx(250_250 * 4 / 1e6, rel=0.01)
