"""ftbook.interpret on the packaged MiniLM: attention maps, viewer, gradient x input."""

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from ftbook import interpret
from ftbook.resources import minilm_path


@pytest.fixture(scope="module")
def model_and_tok():
    from transformers import AutoTokenizer, BertForSequenceClassification

    torch.manual_seed(0)
    path = str(minilm_path())
    model = BertForSequenceClassification.from_pretrained(path, num_labels=3, attn_implementation="eager")
    return model, AutoTokenizer.from_pretrained(path)


def test_attention_maps_shape_and_rows(model_and_tok):
    model, tok = model_and_tok
    maps = interpret.attention_maps(model, tok, "The market rallied after the merger.")
    assert maps.tokens[0] == "[CLS]" and maps.tokens[-1] == "[SEP]"
    n = len(maps.tokens)
    assert tuple(maps.weights.shape) == (6, 12, n, n)
    torch.testing.assert_close(maps.weights.sum(-1), torch.ones(6, 12, n))


def test_attention_maps_work_from_an_sdpa_model():
    from transformers import AutoTokenizer, BertModel

    path = str(minilm_path())
    model = BertModel.from_pretrained(path)  # default attention implementation
    maps = interpret.attention_maps(model, AutoTokenizer.from_pretrained(path), "hello world")
    assert maps.num_layers == 6 and maps.num_heads == 12


def test_bad_text(model_and_tok):
    model, tok = model_and_tok
    with pytest.raises(ValueError, match="text is empty"):
        interpret.attention_maps(model, tok, "   ")
    with pytest.raises(TypeError, match="text must be a str"):
        interpret.token_saliency(model, tok, ["a list"])


def test_plot_and_viewer(model_and_tok):
    model, tok = model_and_tok
    maps = interpret.attention_maps(model, tok, "a short sentence")
    ax = interpret.plot_attention(maps, 5, 11)
    assert "第 6 层" in ax.get_title()
    with pytest.raises(ValueError, match="layer must be in 0..5"):
        interpret.plot_attention(maps, 6, 0)
    with pytest.raises(ValueError, match="head must be in 0..11"):
        interpret.plot_attention(maps, 0, 12)
    viewer = interpret.attention_viewer(model, tok, ["first text", "second text"])
    assert len(viewer.children) == 3
    with pytest.raises(ValueError, match="non-empty list"):
        interpret.attention_viewer(model, tok, "a string, not a list")


def test_saliency_equals_manual_gradient_times_input(model_and_tok):
    model, tok = model_and_tok
    text = "Shares fell sharply as profits dropped."
    sal = interpret.token_saliency(model, tok, text, target=1)
    enc = tok(text, return_tensors="pt")
    emb = model.get_input_embeddings()(enc["input_ids"]).detach().requires_grad_(True)
    logit = model(inputs_embeds=emb, attention_mask=enc["attention_mask"],
                  token_type_ids=enc["token_type_ids"]).logits[0, 1]
    (grad,) = torch.autograd.grad(logit, emb)
    expected = (grad * emb).sum(-1)[0]
    torch.testing.assert_close(torch.tensor(sal.scores), expected, atol=1e-5, rtol=1e-4)
    assert sal.tokens == tok.convert_ids_to_tokens(enc["input_ids"][0].tolist())
    assert 0 < sal.probability < 1


def test_saliency_default_target_is_the_prediction(model_and_tok):
    model, tok = model_and_tok
    text = "A film about football."
    enc = tok(text, return_tensors="pt")
    with torch.no_grad():
        pred = int(model(**enc).logits.argmax(-1))
    assert interpret.token_saliency(model, tok, text).target == pred
    with pytest.raises(ValueError, match="target must be a class index in 0..2"):
        interpret.token_saliency(model, tok, text, target=3)


def test_top_tokens_and_html(model_and_tok):
    sal = interpret.Saliency(tokens=["[CLS]", "good", "<b>", "##s", "[SEP]"], scores=[9.0, 2.0, -1.0, 0.5, 8.0],
                             target=1, probability=0.9)
    assert interpret.top_tokens(sal, 2) == [("good", 2.0), ("##s", 0.5)]
    html = interpret.saliency_html(sal)
    assert "&lt;b&gt;" in html and "[CLS]" not in html and "rgba(38,139,210" in html
    with pytest.raises(ValueError, match="k must be >= 1"):
        interpret.top_tokens(sal, 0)
