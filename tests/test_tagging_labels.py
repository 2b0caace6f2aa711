"""Tests of the compound-entity recovery of the People's Daily NER labels (ftbook.tagging)."""

import pytest

from ftbook import tagging


def merged(line: str) -> list[tuple[str, str]]:
    return tagging.merge_compound_entities(tagging.parse_line(line))


def entities(line: str) -> list[tuple[str, str]]:
    """``(text, type)`` of every entity of a line after merging, in order."""
    from seqeval.metrics.sequence_labeling import get_entities

    chars, tags = tagging.words_to_bio(merged(line))
    return [("".join(chars[s:e + 1]), t) for t, s, e in get_entities(tags)]


def valid_bio(tags) -> bool:
    prev = "O"
    for tag in tags:
        if tag.startswith("I-") and prev[2:] != tag[2:]:
            return False
        if tag != "O" and tag[:2] not in ("B-", "I-"):
            return False
        prev = tag
    return True


# ---- what is joined ----------------------------------------------------------------------------
@pytest.mark.parametrize("line, expected", [
    ("中央/nt 人民/n 广播/vn 电台/n 记者/n 报道/v", [("中央人民广播电台", "ORG")]),
    ("（/w 中央/n 人民/n 广播/vn 电台/n 记者/n", [("中央人民广播电台", "ORG")]),
    ("李/nr 鹏/nr 在/p 人民/n 大会堂/n 会见/v", [("李鹏", "PER"), ("人民大会堂", "LOC")]),
    ("中共中央/nt 政治局/n 委员/n", [("中共中央政治局", "ORG")]),
    ("原/b 中共中央/nt 顾问/n 委员会/n 常务/b 委员会/n 委员/n", [("中共中央顾问委员会常务委员会", "ORG")]),
    ("香港/ns 特别/a 行政区/n 政府/n 成立/v", [("香港特别行政区政府", "ORG")]),
    ("由/p 北京/ns 京求/nz 计算机/n 软件/n 公司/n 制作/v", [("北京京求计算机软件公司", "ORG")]),
    ("宁夏/ns 回族/nz 自治区/n", [("宁夏回族自治区", "LOC")]),
    ("国家/n 计委/j 国家/n 统计局/n", [("国家计委", "ORG"), ("国家统计局", "ORG")]),
    ("全国/n 人大/j 常委会/j 副/b 委员长/n", [("全国人大常委会", "ORG")]),
    ("在/p 中央/n 电视台/n 播出/v", [("中央电视台", "ORG")]),
    ("新华社/nt 、/w 中央/n 人民/n 广播/vn 电台/n", [("新华社", "ORG"), ("中央人民广播电台", "ORG")]),
    ("据/p 北京/ns 公安局/n 统计/v", [("北京公安局", "ORG")]),
    ("河北省/ns 重点/n 建设/vn 项目/n 石家庄/ns 机场/n", [("河北省", "LOC"), ("石家庄机场", "LOC")]),
])
def test_known_compounds_are_joined(line, expected):
    assert entities(line) == expected


def test_merge_joins_words_and_keeps_characters():
    line = "１２月/t ３１日/t 中央/n 人民/n 广播/vn 电台/n 记者/n 报道/v"
    pairs = tagging.parse_line(line)
    out = tagging.merge_compound_entities(pairs)
    assert out == [("１２月", "t"), ("３１日", "t"), ("中央人民广播电台", "nt"), ("记者", "n"), ("报道", "v")]
    assert "".join(w for w, _ in out) == "".join(w for w, _ in pairs)
    assert tagging.compound_spans(pairs) == [(2, 6, "nt")]
    chars, tags = tagging.words_to_bio(out)
    assert tags[6:14] == ["B-ORG"] + ["I-ORG"] * 7 and set(tags[:6] + tags[14:]) == {"O"}


# ---- what is not joined ------------------------------------------------------------------------
@pytest.mark.parametrize("line", [
    "各级/r 政府/n 要/v 全力/d 救灾/vn",        # a determiner, no name
    "灾区/n 各级/r 政府/n",
    "中国/ns 支持/v 政府/n",                    # a verb before the head
    "中国/ns 的/u 公司/n",                      # 的
    "亚洲/ns 地区/n 的/u 一些/m 航空/n 公司/n",  # no proper name before the head
    "外国/n 公司/n 垄断/v",
    "三/m 家/q 日本/ns 银行/n",                 # a quantity: a common noun phrase
    "这些/r 美国/ns 公司/n",
    "政协/j 第九/m 届/q 全国/n 委员会/n",       # cut off from the start of its name
    "国家/n 银行/n",                            # national kinds, not one body
    "全国/n 海关/n",
    "中央/n 银行/n",
    "全国/n 体委/j 主任/n 会议/n",
    "中国/ns 上市/vn 公司/n",                   # a generic modifier
    "拉美/j 国家/n 政府/n",
    "北京/ns 机关干部/n",                        # 干部 is no head
    "中国/ns 一/n 二/n 三/n 四/n 五/n 公司/n",  # longer than MAX_COMPOUND_WORDS
    "政府/n 公司/n 银行/n",
    "人民/n 检察院/n",                          # 人民 starts only places
])
def test_not_joined(line):
    pairs = tagging.parse_line(line)
    assert tagging.merge_compound_entities(pairs) == pairs
    assert tagging.compound_spans(pairs) == []


@pytest.mark.parametrize("word, pos, kind", [
    ("公司", "n", "nt"), ("有限公司", "n", "nt"), ("公安局", "n", "nt"), ("市委", "n", "nt"),
    ("体委", "j", "nt"), ("人民政府", "l", "nt"), ("大会堂", "n", "ns"), ("音乐厅", "n", "ns"),
    ("当局", "n", None), ("干部", "n", None), ("村干部", "n", None), ("常委", "n", None),
    ("宴会厅", "n", None), ("统揽全局", "l", None), ("公司", "v", None), ("全党", "n", None),
])
def test_compound_head(word, pos, kind):
    assert tagging.compound_head(word, pos) == kind


# ---- people and BIO ----------------------------------------------------------------------------
def test_person_merging_still_works():
    line = "江/nr 泽民/nr 在/p 北京/ns 人民/n 大会堂/n 会见/v 李/nr 鹏/nr 。/w （/w 新华社/nt 记者/n 兰/nr 红光/nr 摄/Vg ）/w"
    assert entities(line) == [("江泽民", "PER"), ("北京人民大会堂", "LOC"), ("李鹏", "PER"),
                              ("新华社", "ORG"), ("兰红光", "PER")]


def test_corpus_lines_keep_characters_and_valid_bio():
    lines = [ln for ln in tagging.corpus_path().read_text(encoding="utf-8").splitlines() if ln.strip()][:3000]
    joined = 0
    for line in lines:
        pairs = tagging.parse_line(line)
        out = tagging.merge_compound_entities(pairs)
        assert "".join(w for w, _ in out) == "".join(w for w, _ in pairs)
        spans = tagging.compound_spans(pairs)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))  # in order, no overlap
        for start, end, pos in spans:
            assert pos in ("nt", "ns") and 2 <= end - start <= tagging.MAX_COMPOUND_WORDS
            assert not any(p in ("w", "v", "u", "nr") for _, p in pairs[start:end])
        joined += len(spans)
        chars, tags = tagging.words_to_bio(out)
        assert len(chars) == len(tags) and valid_bio(tags)
        assert [t for t in tags if t.endswith("PER")] == \
            [t for t in tagging.words_to_bio(pairs)[1] if t.endswith("PER")]  # people untouched
    assert joined > 100


# ---- the data set ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def both():
    return (tagging.people_daily_ner("tiny", compound_entities=False),
            tagging.people_daily_ner("tiny", compound_entities=True))


def test_split_texts_unchanged(both):
    old, new = both
    for split in ("train", "validation", "test"):
        assert len(old[split]) == len(new[split]) > 1000
        assert old[split]["chars"][:] == new[split]["chars"][:]


def test_only_org_and_loc_labels_change(both):
    old, new = both
    names = lambda ds: [[tagging.LABELS[i] for i in t] for t in ds["train"]["tags"][:]]  # noqa: E731
    before, after = tagging.entity_counts(names(old)), tagging.entity_counts(names(new))
    assert after["PER"] == before["PER"]
    assert after["ORG"] > 2 * before["ORG"] and after["LOC"] < before["LOC"]
    assert all(valid_bio(t) for t in names(new))


def test_old_labels_reproducible(both):
    """``compound_entities=False`` gives the plain word-level labels of the first corpus lines."""
    old, _ = both
    max_chars = tagging.get_profile("tiny").sizes("tagging").max_chars
    index = {"".join(c): t for c, t in zip(old["train"]["chars"][:], old["train"]["tags"][:])}
    checked = 0
    lines = [ln for ln in tagging.corpus_path().read_text(encoding="utf-8").splitlines() if ln.strip()][:200]
    for line in lines:
        chars, tags = tagging.words_to_bio(tagging.parse_line(line))
        for cs, ts in tagging.split_sentences(chars, tags, max_chars):
            if "".join(cs) in index:
                assert [tagging.LABELS[i] for i in index["".join(cs)]] == ts
                checked += 1
    assert checked > 100


# ---- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize("bad, error", [
    ("中央/n 电台/n", TypeError),      # a line, not pairs
    (None, TypeError),
    (42, TypeError),
    ([("中央",)], ValueError),
    ([("", "n")], ValueError),
    ([("中央", 1)], ValueError),
    ([("中央", "n", "x")], ValueError),
])
def test_bad_input(bad, error):
    with pytest.raises(error, match="pair"):
        tagging.merge_compound_entities(bad)
    with pytest.raises(error, match="pair"):
        tagging.compound_spans(bad)


def test_compound_entities_is_keyword_only():
    with pytest.raises(TypeError):
        tagging.people_daily_ner("tiny", None, False)
