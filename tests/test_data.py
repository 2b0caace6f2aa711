"""ftbook.data: cleaning, dedup, tokeniser helpers, encoding, collator (vs transformers), sampler."""

import pytest
import torch
from datasets import ClassLabel, Dataset, Features, Value
from transformers import AutoTokenizer, DataCollatorWithPadding

from ftbook import data as D
from ftbook import vocab
from ftbook.resources import minilm_path

TEXTS = ["这家酒店很好，下次还来！", "书的内容一般，不推荐。", "速度很快ＡＢＣ１２３", "很好", "垃圾，非常失望"]


@pytest.fixture(scope="module")
def char_tok(tmp_path_factory):
    d = tmp_path_factory.mktemp("vocab")
    vocab.save_vocab(vocab.build_char_vocab([D.clean_text(t) for t in TEXTS]), d)
    return vocab.char_tokenizer(d, model_max_length=16)


@pytest.fixture(scope="module")
def minilm_tok():
    return AutoTokenizer.from_pretrained(minilm_path())


def make_ds(texts, labels=None):
    feats = {"text": Value("string")}
    cols = {"text": texts}
    if labels is not None:
        feats["label"] = ClassLabel(names=["neg", "pos"])
        cols["label"] = labels
    return Dataset.from_dict(cols, features=Features(feats))


# ------------------------------------------------------------------ cleaning

def test_to_halfwidth_letters_digits_space_but_not_chinese_punctuation():
    assert D.to_halfwidth("ＡＢＣ１２３　ｘ，。！") == "ABC123 x，。！"
    assert D.to_halfwidth("（注）", punctuation=True) == "(注)"
    assert D.to_halfwidth("①㎡…") == "①㎡…"  # unlike NFKC, nothing else changes


def test_strip_html():
    assert D.strip_html("<p>好评</p><br/>物流&amp;包装 <b>很好</b>") == " 好评  物流&包装 很好"
    assert D.strip_html("a < b > c") == "a < b > c"
    assert D.strip_html("~{N@Iz<dC;SP4rI(8I>;~}") == "~{N@Iz<dC;SP4rI(8I>;~}"  # not a tag
    assert D.strip_html("x<!-- hidden -->y") == "xy"


def test_remove_urls_keeps_following_chinese_and_punctuation():
    assert D.remove_urls("地址http://bbs.55show.com/thread-1.html，很好") == "地址，很好"
    assert D.remove_urls("参考（http://a.cn/x.html），安装") == "参考（），安装"
    assert D.remove_urls("see www.example.com.", "<URL>") == "see <URL>."
    assert D.remove_urls("no link here") == "no link here"


def test_normalize_whitespace():
    assert D.normalize_whitespace("  a\t\tb\n c\u3000d\xa0e\u200bf ") == "a b c d ef"
    assert D.normalize_whitespace("\x00x\x07") == "x"


def test_clean_text_pipeline_and_options():
    raw = " <b>好</b>  http://t.cn/abc　ＯＫ ！"
    assert D.clean_text(raw) == "好 OK ！"
    assert D.clean_text(raw, punctuation=True, lowercase=True) == "好 ok !"
    assert D.clean_text(raw, urls=False, halfwidth=False) == "好 http://t.cn/abc ＯＫ ！"


@pytest.mark.parametrize("fn", [D.to_halfwidth, D.strip_html, D.remove_urls, D.normalize_whitespace, D.clean_text])
@pytest.mark.parametrize("bad", [None, 3, b"bytes", ["a"]])
def test_cleaners_refuse_non_strings(fn, bad):
    with pytest.raises(TypeError, match="must be a str"):
        fn(bad)


def test_deduplicate_after_cleaning_and_conflicts():
    texts = ["好评！", "好评！ ", "ＯＫ", "OK", "差", "差"]
    labels = [1, 1, 1, 1, 0, 1]
    kept, ys, rep = D.deduplicate(texts, labels)
    assert kept == ["好评！", "ＯＫ"] and ys == [1, 1]
    assert rep == {"input": 6, "duplicates": 3, "conflicting": 1, "kept": 2}
    kept, ys, _ = D.deduplicate(texts)
    assert ys is None and kept == ["好评！", "ＯＫ", "差"]
    with pytest.raises(ValueError, match="differ in length"):
        D.deduplicate(texts, [1])
    with pytest.raises(TypeError, match="text #1"):
        D.deduplicate(["a", 2])


def test_clean_dataset_reports_everything_removed():
    ds = make_ds(["好 评", "好评", "<br>", "好　评", "差", "差劲"], [1, 1, 0, 1, 0, 0])
    ds2, rep = D.clean_dataset(ds)
    assert rep == {"input": 6, "empty_after_cleaning": 1, "duplicates": 1, "conflicting": 0, "kept": 4}
    assert ds2["text"] == ["好 评", "好评", "差", "差劲"]
    with pytest.raises(KeyError, match="not in dataset columns"):
        D.clean_dataset(ds, text_column="sentence")
    with pytest.raises(TypeError, match="row 1"):
        D.clean_dataset(Dataset.from_dict({"text": ["a", None]}), label_column=None)


# ------------------------------------------------------------------ tokenisers

def test_train_wordpiece_and_unk_rate(minilm_tok):
    corpus = ["今天天气很好", "今天心情很好", "the weather is good today"] * 20
    tok = D.train_wordpiece(corpus, vocab_size=100, min_frequency=1)
    ids = tok("今天很好")["input_ids"]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    assert D.unk_rate(tok, ["今天很好"]) == 0.0
    assert D.unk_rate(tok, ["龘龘"]) == 1.0
    assert D.unk_rate(minilm_tok, ["ＡＢＣ"]) == 1.0  # full-width is unknown to an English vocab
    assert D.unk_rate(minilm_tok, [D.clean_text("ＡＢＣ")]) == 0.0


def test_tokeniser_helpers_bad_inputs(minilm_tok):
    with pytest.raises(ValueError, match="at least one text"):
        D.unk_rate(minilm_tok, [])
    with pytest.raises(TypeError, match="row 1"):
        D.unk_rate(minilm_tok, ["ok", 3])
    with pytest.raises(ValueError, match="no tokens"):
        D.unk_rate(minilm_tok, ["", " "])
    with pytest.raises(ValueError, match="vocab_size"):
        D.train_wordpiece(["a"], vocab_size=3)
    with pytest.raises(ValueError, match="no texts"):
        D.train_wordpiece([], vocab_size=100)


# ------------------------------------------------------------------ encoding

def test_encode_dataset_counts_truncation(char_tok):
    ds = make_ds(TEXTS, [1, 0, 1, 1, 0])
    enc = D.encode_dataset(ds, char_tok, max_length=8)
    assert set(enc.column_names) == {"input_ids", "attention_mask", "token_type_ids", "length", "truncated", "labels"}
    assert max(enc["length"]) == 8
    # [CLS] + characters + [SEP]: 12+2, 11+2, 4+1+2 (the uncleaned full-width word is ONE [UNK]), 2+2, 7+2
    assert list(enc["truncated"]) == [True, True, False, False, True]
    assert enc[2]["input_ids"].count(char_tok.unk_token_id) == 1
    assert list(enc["labels"]) == [1, 0, 1, 1, 0]
    first = enc[0]["input_ids"]
    assert first[0] == char_tok.cls_token_id and first[-1] == char_tok.sep_token_id
    assert char_tok.unk_token_id not in enc[3]["input_ids"]
    kept = D.encode_dataset(ds, char_tok, max_length=8, keep_text=True)
    assert "text" in kept.column_names


@pytest.mark.parametrize("texts,labels,kwargs,exc,match", [
    (["好", ""], [0, 1], {}, ValueError, "row 1 of 'text' is empty"),
    (["好", "  "], [0, 1], {}, ValueError, "row 1"),
    (["好", "差"], [0, 1], {"max_length": 1}, ValueError, "max_length must be an int >= 2"),
    (["好", "差"], [0, 1], {"text_column": "sentence"}, KeyError, "not in dataset columns"),
    (["好", "差"], [0, 1], {"label_column": "y"}, KeyError, "label_column=None"),
])
def test_encode_dataset_bad_inputs(char_tok, texts, labels, kwargs, exc, match):
    kw = {"max_length": 8, **kwargs}
    with pytest.raises(exc, match=match):
        D.encode_dataset(make_ds(texts, labels), char_tok, **kw)


def test_encode_dataset_labels_outside_label_set(char_tok):
    ds = Dataset.from_dict({"text": ["好", "差", "中"], "label": [0, 1, 2]})
    with pytest.raises(ValueError, match="not a ClassLabel; pass num_labels"):
        D.encode_dataset(ds, char_tok, 8)
    with pytest.raises(ValueError, match=r"row 2: label 2 is outside the label set 0..1"):
        D.encode_dataset(ds, char_tok, 8, num_labels=2)
    assert len(D.encode_dataset(ds, char_tok, 8, num_labels=3)) == 3
    assert "labels" not in D.encode_dataset(ds, char_tok, 8, label_column=None).column_names


def test_encode_dataset_non_string_text(char_tok):
    ds = Dataset.from_dict({"text": ["好", None], "label": [0, 1]})
    with pytest.raises(TypeError, match="row 1 of 'text' is NoneType"):
        D.encode_dataset(ds, char_tok, 8, num_labels=2)


# ------------------------------------------------------------------ collator

@pytest.mark.parametrize("multiple", [None, 8])
def test_collator_equals_datacollatorwithpadding(minilm_tok, multiple):
    texts = ["a short one", "a somewhat longer sentence with more words", "mid length text here"]
    ds = D.encode_dataset(Dataset.from_dict({"text": texts, "label": [0, 1, 2]}), minilm_tok, 32, num_labels=3)
    feats = [ds[i] for i in range(len(ds))]
    ours = D.DynamicPaddingCollator(minilm_tok, pad_to_multiple_of=multiple)(feats)
    plain = [{k: f[k] for k in ("input_ids", "token_type_ids", "attention_mask", "labels")} for f in feats]
    theirs = DataCollatorWithPadding(minilm_tok, pad_to_multiple_of=multiple, return_tensors="pt")(plain)
    assert set(ours) == set(theirs)
    for k in theirs:
        assert torch.equal(ours[k], theirs[k]), k


def test_collator_max_length_mode_and_label_key():
    feats = [{"input_ids": [1, 5, 2], "label": 1}, {"input_ids": [1, 2], "label": 0}]
    b = D.DynamicPaddingCollator(pad_token_id=0, padding="max_length", max_length=6)(feats)
    assert b["input_ids"].tolist() == [[1, 5, 2, 0, 0, 0], [1, 2, 0, 0, 0, 0]]
    assert b["attention_mask"].tolist() == [[1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0]]
    assert b["labels"].tolist() == [1, 0] and "token_type_ids" not in b
    reg = D.DynamicPaddingCollator(pad_token_id=0)([{"input_ids": [1], "labels": 0.5}])
    assert reg["labels"].dtype == torch.float


@pytest.mark.parametrize("kwargs,match", [
    ({}, "pad token id"),
    ({"pad_token_id": 0, "padding": "max"}, "padding must be"),
    ({"pad_token_id": 0, "padding": "max_length"}, "needs max_length"),
    ({"pad_token_id": 0, "pad_to_multiple_of": 0}, "pad_to_multiple_of"),
])
def test_collator_bad_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        D.DynamicPaddingCollator(**kwargs)


@pytest.mark.parametrize("feats,exc,match", [
    ([], ValueError, "empty batch"),
    ([{"text": "好"}], KeyError, "no 'input_ids'"),
    ([{"input_ids": []}], ValueError, "no tokens"),
    ([{"input_ids": [1, 2], "attention_mask": [1]}], ValueError, "attention_mask has 1 entries"),
    ([{"input_ids": list(range(9))}], ValueError, "more than max_length=8"),
    ([{"input_ids": [1], "token_type_ids": [0]}, {"input_ids": [1]}], KeyError, "not in all"),
    ([{"input_ids": [1], "labels": 1}, {"input_ids": [1]}], KeyError, "missing in some"),
])
def test_collator_bad_batches(feats, exc, match):
    with pytest.raises(exc, match=match):
        D.DynamicPaddingCollator(pad_token_id=0, max_length=8)(feats)


# ------------------------------------------------------------------ sampler and padding stats

def test_length_bucket_sampler_covers_every_index_once_and_cuts_padding():
    g = torch.Generator().manual_seed(0)
    lengths = (torch.randint(5, 128, (1000,), generator=g)).tolist()
    s = D.LengthBucketSampler(lengths, batch_size=32, seed=3)
    batches = list(s)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert len(s) == len(batches) == 32 and all(len(b) <= 32 for b in batches)
    assert batches == list(s)  # same epoch -> same order
    s.set_epoch(1)
    assert list(s) != batches
    random_batches = [list(range(i, min(i + 32, 1000))) for i in range(0, 1000, 32)]
    bucketed = D.padding_stats(lengths, batches)["pad_fraction"]
    dynamic = D.padding_stats(lengths, random_batches)["pad_fraction"]
    assert bucketed < dynamic / 5
    eval_order = list(D.LengthBucketSampler(lengths, 32, shuffle=False))
    flat = [lengths[i] for b in eval_order for i in b]
    assert flat == sorted(flat)
    dropped = D.LengthBucketSampler(lengths, 32, drop_last=True)
    assert all(len(b) == 32 for b in dropped) and len(dropped) == 31


@pytest.mark.parametrize("args,match", [
    (([], 4), "empty"),
    (([3, -1], 4), r"lengths\[1\]"),
    (([3, 2.5], 4), r"lengths\[1\]"),
    (([3, 4], 0), "batch_size"),
])
def test_length_bucket_sampler_bad_inputs(args, match):
    with pytest.raises(ValueError, match=match):
        D.LengthBucketSampler(*args)


def test_padding_stats():
    st = D.padding_stats([2, 4, 4, 1], [[0, 1], [2, 3]])
    assert st == {"real": 11, "padded": 16, "pad_fraction": 1 - 11 / 16, "batches": 2}
    assert D.padding_stats([2, 4], [[0, 1]], pad_to=8)["padded"] == 16
    with pytest.raises(ValueError, match="does not fit"):
        D.padding_stats([9], [[0]], pad_to=8)
    with pytest.raises(ValueError, match="empty batch"):
        D.padding_stats([1], [[]])
    with pytest.raises(ValueError, match="no batches"):
        D.padding_stats([1], [])


def test_padding_strategies_and_compare_padding_on_a_tiny_bert():
    from transformers import BertConfig, BertModel

    g = torch.Generator().manual_seed(0)
    lengths = [int(n) for n in torch.randint(3, 40, (40,), generator=g)]
    plans = D.padding_strategies(lengths, 8, seed=1)
    assert set(plans) == {"pad_to_max", "dynamic", "bucketed"}
    for batches in plans.values():
        assert sorted(i for b in batches for i in b) == list(range(40))
    encoded = [{"input_ids": [1] * n, "attention_mask": [1] * n} for n in lengths]
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=10, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=32, max_position_embeddings=64))
    rows = D.compare_padding(model, encoded, 8, 48, pad_token_id=0)
    assert [r["strategy"] for r in rows] == ["pad_to_max", "dynamic", "bucketed"]
    assert rows[0]["padded_tokens"] == 40 * 48
    assert rows[2]["pad_fraction"] < rows[1]["pad_fraction"] < rows[0]["pad_fraction"]
    assert all(r["seconds"] > 0 and r["cpu_seconds"] >= 0 and r["samples_per_s"] > 0 for r in rows)
    with pytest.raises(ValueError, match="more than max_length"):
        D.compare_padding(model, encoded, 8, 16, pad_token_id=0)


def test_train_byte_level_bpe_never_unknown_round_trips_and_merges():
    corpus = ["今天天气很好", "今天心情很好", "the weather is good today"] * 20
    tok = vocab.train_byte_level_bpe(corpus, vocab_size=400, min_frequency=1)
    for text in ("今天很好", "unseen 字符 ☃ and émoji 🙂"):  # never seen: still encodable, exactly
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text and tok.unk_token_id is None
    assert len(tok("今天", add_special_tokens=False)["input_ids"]) == 1  # 6 bytes merged into one token
    assert len(tok("☃", add_special_tokens=False)["input_ids"]) == 3  # an unseen character: its 3 bytes
    with pytest.raises(ValueError, match="257"):
        vocab.train_byte_level_bpe(corpus, vocab_size=100)
    with pytest.raises(ValueError, match="no texts"):
        vocab.train_byte_level_bpe([], vocab_size=300)
