"""ftbook.causal_lm: next-token labels, the loss against LlamaForCausalLM, n-gram baselines, the
resumable run and the shipped decoder."""

import math
import shutil

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from ftbook import causal_lm
from ftbook.data import IGNORE_INDEX
from ftbook.decoder import Decoder, DecoderConfig
from ftbook.training import cross_entropy_loss


def test_labels_are_the_inputs_shifted_left():
    assert causal_lm.causal_lm_labels([5, 6, 7]) == [6, 7, IGNORE_INDEX]
    assert causal_lm.causal_lm_labels([5]) == [IGNORE_INDEX]
    with pytest.raises(ValueError, match="at least one token"):
        causal_lm.causal_lm_labels([])


def test_loss_equals_llama_with_unshifted_labels_on_a_padded_batch():
    torch.manual_seed(0)
    hf = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
                                      pad_token_id=0)).eval()
    ours = Decoder.from_hf(hf).eval()
    seqs = [[3, 9, 4, 22, 7, 8], [5, 11, 2]]
    data = causal_lm.lm_dataset(seqs, pad_token_id=0)
    batch = data.batch([0, 1])  # right-padded
    n = int((batch["labels"] != IGNORE_INDEX).sum())
    assert n == 5 + 2
    hf_labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, IGNORE_INDEX)
    with torch.no_grad():
        ref = hf(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=hf_labels).loss
        got = cross_entropy_loss(ours, batch) / n
    assert torch.allclose(got, ref, atol=1e-6), (got, ref)


def test_ngram_baselines_by_hand():
    train = [[1, 2, 3, 2, 3], [1, 3]]
    held = [[1, 2, 3]]
    got = causal_lm.ngram_cross_entropy(train, held, vocab_size=4, discount=0.5)
    # unigram counts of targets (every token after the first): 2:2, 3:3 -> N = 5
    p_uni = {2: 3 / 9, 3: 4 / 9}
    # bigram: c(1)=2 with followers {2, 3}; c(1,2)=1; c(2)=2 with follower {3}; c(2,3)=2
    p12 = (1 - 0.5) / 2 + 0.5 * 2 / 2 * p_uni[2]
    p23 = (2 - 0.5) / 2 + 0.5 * 1 / 2 * p_uni[3]
    assert got["n"] == 2
    assert math.isclose(got["unigram"], -(math.log(p_uni[2]) + math.log(p_uni[3])) / 2)
    assert math.isclose(got["bigram"], -(math.log(p12) + math.log(p23)) / 2)
    with pytest.raises(ValueError, match="discount"):
        causal_lm.ngram_cross_entropy(train, held, 4, discount=1.0)
    with pytest.raises(ValueError, match="no target tokens"):
        causal_lm.ngram_cross_entropy(train, [[1]], 4)


def test_bigram_is_a_distribution_for_every_context():
    import random

    rng = random.Random(0)
    train = [[rng.randrange(6) for _ in range(30)] for _ in range(5)]
    for v in range(7):  # 6 is never seen: falls back to the unigram
        total = sum(math.exp(-causal_lm.ngram_cross_entropy(train, [[v, w]], 7)["bigram"]) for w in range(7))
        assert math.isclose(total, 1.0, rel_tol=1e-9), (v, total)


def test_lm_scores_is_the_mean_cross_entropy():
    torch.manual_seed(1)
    model = Decoder(DecoderConfig(vocab_size=20, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                  num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=16))
    seqs = [[1, 2, 3, 4], [5, 6, 7], [8, 9]]
    data = causal_lm.lm_dataset(seqs, pad_token_id=0)
    with torch.no_grad():
        nll = [torch.nn.functional.cross_entropy(model(torch.tensor([s]))[0, :-1], torch.tensor(s[1:]), reduction="sum")
               for s in seqs]
    scores = causal_lm.lm_scores(model, data, batch_size=2)
    assert scores["n"] == 6
    assert math.isclose(scores["loss"], float(sum(nll)) / 6, rel_tol=1e-5)
    assert math.isclose(scores["perplexity"], math.exp(scores["loss"]))


def test_decoder_saves_a_tied_matrix_once_and_loads_back(tmp_path):
    from safetensors.torch import load_file

    model = Decoder(DecoderConfig(vocab_size=20, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                  num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=16))
    model.save_pretrained(tmp_path)
    assert "lm_head.weight" not in load_file(str(tmp_path / "model.safetensors"))
    back = Decoder.from_pretrained(tmp_path)
    assert back.lm_head.weight is back.embed_tokens.weight
    x = torch.tensor([[1, 2, 3]])
    assert torch.equal(back(x), model.eval()(x))
    (tmp_path / "config.json").write_text('{"model_type": "bert"}', encoding="utf-8")
    with pytest.raises(ValueError, match="not an ftbook Decoder"):
        Decoder.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="no saved Decoder"):
        Decoder.from_pretrained(tmp_path / "nothing")


SMALL = dict(steps=4, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
             intermediate_size=64, batch_size=8, warmup_steps=1, max_length=32)


def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path):
    from safetensors.torch import load_file

    whole = causal_lm.train_chinese_gpt(tmp_path / "whole", save_every=2, eval_every=4, progress=False, **SMALL)
    causal_lm.train_chinese_gpt(tmp_path / "cut", save_every=2, eval_every=4, progress=False,
                                stop_after_steps=2, **SMALL)
    assert not (tmp_path / "cut" / "model.safetensors").exists()
    resumed = causal_lm.train_chinese_gpt(tmp_path / "cut", resume=True, save_every=2, eval_every=4,
                                          progress=False, **SMALL)
    a, b = load_file(str(whole / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    log = causal_lm.training_log(whole)
    assert log["sizes"]["steps"] == 4 and log["evals"][-1]["step"] == 4
    assert log["baselines"]["bigram"] < log["baselines"]["unigram"]
    with pytest.raises(ValueError, match="unknown causal-LM settings"):
        causal_lm.train_chinese_gpt(tmp_path / "x", mlm_probability=0.1)


def test_shipped_decoder_is_intact_and_has_learned_chinese(tmp_path):
    model, tok = causal_lm.pretrained_chinese_gpt()
    log = causal_lm.training_log()
    held = causal_lm.held_out_sequences(tok, limit=100)
    loss = causal_lm.lm_scores(model, causal_lm.lm_dataset(held, tok.pad_token_id))["loss"]
    assert loss < log["baselines"]["bigram"] - 0.5  # it beats the bigram model on text it never saw
    assert causal_lm.complete(model, tok, "中国人民", max_new_tokens=3) == "解放军"
    copy = tmp_path / "copy"
    shutil.copytree(causal_lm.SHIPPED_DIR, copy)
    (copy / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match="tokenizer.json is missing.*pretrain-gpt"):
        causal_lm.pretrained_chinese_gpt(copy)
    shutil.copy2(causal_lm.SHIPPED_DIR / "tokenizer.json", copy / "tokenizer.json")
    with (copy / "config.json").open("a", encoding="utf-8") as fh:
        fh.write(" ")
    with pytest.raises(Exception, match="config.json.*pretrain-gpt"):
        causal_lm.check_shipped(copy)


def test_complete_stops_at_the_end_of_text_and_refuses_long_prompts():
    model, tok = causal_lm.pretrained_chinese_gpt()
    text = causal_lm.complete(model, tok, "房间很", max_new_tokens=120)
    assert "[SEP]" not in text and len(text) <= 125
    with pytest.raises(ValueError, match="no room"):
        causal_lm.complete(model, tok, "好" * 200)
