"""Tests of ftbook.encoder_mlm: chapter 8's encoder + BERT's MLM head equals transformers.BertForMaskedLM
(logits and every gradient in float64, both directions of the weight copy, on random weights and on the
book's shipped Chinese BERT), trains with the book's MLM code, and refuses what it does not implement."""

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

from ftbook.encoder_mlm import EncoderForMaskedLM, mlm_key_map
from ftbook.pretrain import fill_mask, mlm_loss, pretrain_mlm, pretrained_chinese_bert
from ftbook.transformer import EncoderConfig


def tiny_hf(seed: int = 0) -> BertForMaskedLM:
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=32, max_position_embeddings=24, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)
    hf = BertForMaskedLM(cfg).eval()
    with torch.no_grad():  # non-trivial head parameters (the library starts some at 0 / 1)
        for p in hf.cls.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return hf


def batch():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 60, (3, 9), generator=g)
    mask = torch.tensor([[1] * 9, [1] * 5 + [0] * 4, [1] * 2 + [0] * 7])
    return ids, mask


def test_from_hf_equals_bertformaskedlm_values_and_gradients_float64():
    hf = tiny_hf().double()
    ours = EncoderForMaskedLM.from_hf(hf).double().eval()
    ids, mask = batch()
    ref, got = hf(input_ids=ids, attention_mask=mask).logits, ours(ids, mask).logits
    assert got.shape == (3, 9, 60)
    real = mask.bool()
    torch.testing.assert_close(got[real], ref[real], atol=1e-10, rtol=0)
    labels = torch.where(real, ids, torch.full_like(ids, -100))
    hf(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
    mlm_loss(ours, ids, mask, labels).backward()  # the book's loss, masked positions only
    theirs = dict(hf.named_parameters())
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, theirs[mlm_key_map(2)[name]].grad, atol=1e-10, rtol=0)


def test_to_hf_round_trip_after_training_and_tied_weights():
    tok = AutoTokenizer.from_pretrained(pretrained_chinese_bert())
    cfg = EncoderConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(0)
    ours = EncoderForMaskedLM(cfg)
    assert ours.cls.decoder.weight is ours.bert.embeddings.word.weight  # tied, as in BERT
    texts = ["交通很方便，服务很好", "房间太小了，不推荐", "早餐不错，下次还来"] * 6
    encoded = [tok(t)["input_ids"] for t in texts]
    before = ours.bert.embeddings.word.weight.detach().clone()
    log = pretrain_mlm(ours, encoded, tokenizer=tok, steps=4, batch_size=6, lr=1e-3, log_every=2)
    assert [r["step"] for r in log] == [2, 4] and not torch.equal(before, ours.bert.embeddings.word.weight)
    hf = ours.to_hf().eval()
    assert isinstance(hf, BertForMaskedLM) and hf.cls.predictions.decoder.weight is hf.bert.embeddings.word_embeddings.weight
    enc = tok(["交通很方[MASK]", "坚持改革开[MASK]，好"], padding=True, return_tensors="pt")
    with torch.no_grad():
        a = ours.eval()(enc["input_ids"], enc["attention_mask"]).logits
        b = hf(**enc).logits
    real = enc["attention_mask"].bool()
    torch.testing.assert_close(a[real], b[real], atol=1e-5, rtol=0)
    (mine,), (twin,) = fill_mask(ours, tok, "交通很方[MASK]"), fill_mask(hf, tok, "交通很方[MASK]")
    assert [c for c, _ in mine] == [c for c, _ in twin]
    assert max(abs(p - q) for (_, p), (_, q) in zip(mine, twin)) < 1e-6


def test_the_shipped_chinese_bert_loads_into_ours_with_equal_logits():
    path = pretrained_chinese_bert()
    hf, tok = BertForMaskedLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)
    ours = EncoderForMaskedLM.from_hf(hf).eval()
    enc = tok(["交通很方[MASK]，服务很好。", "坚持改革开[MASK]"], padding=True, return_tensors="pt")
    with torch.no_grad():
        ref, got = hf(**enc).logits, ours(**enc).logits
    real = enc["attention_mask"].bool()
    torch.testing.assert_close(got[real], ref[real], atol=1e-4, rtol=0)
    assert fill_mask(ours, tok, "交通很方[MASK]")[0][0][0] == "便"  # it has learned Chinese


def test_bad_input():
    with pytest.raises(TypeError, match="BertForMaskedLM"):
        EncoderForMaskedLM.from_hf(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="Post-LN"):
        EncoderForMaskedLM(EncoderConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1,
                                         num_attention_heads=2, intermediate_size=16, norm_first=True))
    ours = EncoderForMaskedLM.from_hf(tiny_hf())
    with pytest.raises(ValueError, match="attention_mask shape"):
        ours(torch.ones(2, 5, dtype=torch.long), torch.ones(2, 4, dtype=torch.long))
