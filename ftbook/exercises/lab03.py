"""Checkpoints of lab 3 (``chapters/labs/lab03.ipynb``): cleaning (half-width, HZ, URLs), a deterministic
character vocabulary and length-bucketed batches, from scratch. Chapter 3 teaches it."""

from __future__ import annotations

import random
import unicodedata

from . import exercise
from ._answers import callable_answer as _callable


def _str_fn(answer, cases, ref, name: str, diagnose) -> None:
    for text in cases:
        got = answer(text)
        if got is None:
            raise AssertionError(f"{name} 返回了 None：还没有写完，请完成 # TODO 处并 return 结果。")
        if not isinstance(got, str):
            raise TypeError(f"{name} 应返回 str，而不是 {type(got).__name__}")
        want = ref(text)
        if got != want:
            diagnose(text, got, want)
            raise AssertionError(f"输入 {text!r}：期望 {want!r}，得到 {got!r}。")


T1_CASES = ["ＴＨＩＮＫＰＡＤ　Ｔ４００，屏幕①号；面积３０㎡…", "ｉＰａｄ很好用！（推荐）", "价格：１２９９元～",
            "ａｂｃ　ＸＹＺ　７８９", "没有全角字符的句子。", "Ｗｉ－Ｆｉ信号：５Ｇ＆２．４Ｇ"]


@exercise("lab03.t1", "写 my_halfwidth(text)：把全角字母、数字和全角空格转成半角，保留中文标点，"
          "与 ftbook.data.to_halfwidth 一致。", level="easy")
def t1(answer) -> None:
    _callable(answer, "def my_halfwidth(text): ...")
    from ..data import to_halfwidth

    def diagnose(text, got, want):
        if got == text:
            raise AssertionError("什么也没改：全角 U+FF01..U+FF5E 减去 0xFEE0 就是对应的半角字符。")
        if got == unicodedata.normalize("NFKC", text):
            raise AssertionError("这是 NFKC 规范化：它还把 ①、㎡、…、中文标点都改了。只转换全角字母、数字和 U+3000。")
        if got == to_halfwidth(text, punctuation=True):
            raise AssertionError("中文标点（，！（）：～＆）也被转成了半角：只转换字母和数字（str.isalnum()）与全角空格。")
        if "\u3000" in got and "\u3000" not in want:
            raise AssertionError("全角空格 U+3000 没有转成普通空格。")

    _str_fn(answer, T1_CASES, to_halfwidth, "my_halfwidth", diagnose)


T2_PIECES = [("补充点评 2007年9月24日 ： ", "卫生间没有打扫干净,有头发,很恶心.不要去!上当"),
             ("评分：", "服务很好,下次再来"), ("Room 305: ", "早餐一般")]


def t2_cases() -> list[tuple[str, str]]:
    """(text with an HZ fragment, the text decoded): the HZ fragment is what follows the prefix."""
    out = []
    for prefix, body in T2_PIECES:
        out.append((prefix + body.encode("hz").decode("ascii"), prefix + body))
    return out


@exercise("lab03.t2", "写 fix_hz(text)：把文本里 ~{…~} 形式的 HZ 片段解码成汉字，其余部分（可能含中文）原样保留。",
          level="easy")
def t2(answer) -> None:
    _callable(answer, "def fix_hz(text): ...")
    for text, want in t2_cases() + [("没有 HZ 的评论，保持不变。", "没有 HZ 的评论，保持不变。")]:
        try:
            got = answer(text)
        except UnicodeError as exc:
            raise AssertionError(f"{type(exc).__name__}：整段 .encode('ascii') 会在文本里的中文上失败；"
                                 "只对 ~{…~} 片段（或只含 ASCII 的部分）解码。") from None
        if got is None:
            raise AssertionError("fix_hz 返回了 None：还没有写完，请完成 # TODO 处并 return 结果。")
        if got == want:
            continue
        if "~{" in got or "~}" in got:
            raise AssertionError(f"结果里还留着 ~{{ 或 ~}}：{got!r}。用 'hz' 编解码器解码整个片段（含两个标记）。")
        raise AssertionError(f"输入 {text!r}：期望 {want!r}，得到 {got!r}。")


T3_CASES = ["给大家一个地址，装机非常有用http://bbs.55show.com/thread-12053-1-1.html",
            "详情见 http://a.com/x.html，很好", "访问www.example.com。谢谢！", "参考（http://b.org/p?q=1）安装",
            "链接https://c.cn/a,b;c!就这样", "没有网址的评论"]


def buggy_remove_urls(text: str) -> str:
    """Task 3's planted bug: ``\\S+`` eats the Chinese after an address (and its punctuation)."""
    import re

    return re.sub(r"(?:https?://|www\.)\S+", "", text)


@exercise("lab03.t3", "修好 buggy_remove_urls：删网址时不吃掉后面的中文，并把网址末尾的标点还回去，"
          "与 ftbook.data.remove_urls 一致。", level="medium")
def t3(answer) -> None:
    _callable(answer, "def remove_urls_fixed(text): ...")
    from ..data import _URL, remove_urls

    def diagnose(text, got, want):
        if got == buggy_remove_urls(text):
            raise AssertionError("这还是原来的 \\S+：它把网址后面紧跟的中文也当成网址删掉了。只匹配 ASCII 的网址字符。")
        if got == _URL.sub("", text) or (len(got) < len(want) and want.startswith(got.rstrip())):
            raise AssertionError(f"删多了：期望 {want!r}，得到 {got!r}。网址末尾的 . , ; : ! ? ) ' \" 不属于网址，要还回去。")
        if "http" in got or "www." in got:
            raise AssertionError(f"网址没删干净：{got!r}。")

    _str_fn(answer, T3_CASES, remove_urls, "remove_urls_fixed", diagnose)


def t4_corpus(seed: int) -> list[str]:
    rng = random.Random(seed)
    alphabet = list("的是不了很好差酒店服务ABCabc123，。！ ") + ["Ｔ", "é"]
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(3, 25))) for _ in range(40)]


@exercise("lab03.t4", "写 my_char_vocab(texts)：5 个特殊 token，再按次数降序、次数相同按码位升序排列字符，"
          "字母/数字再加 ## 形式，与 vocab.build_char_vocab(texts) 一致。", level="medium")
def t4(answer) -> None:
    _callable(answer, "def my_char_vocab(texts): ...")
    from ..vocab import build_char_vocab

    for seed in (0, 1):
        texts = t4_corpus(seed)
        got = answer(list(texts))
        if got is None:
            raise AssertionError("my_char_vocab 返回了 None：还没有写完，请完成 # TODO 处并 return 结果。")
        got = list(got)
        want = build_char_vocab(texts)
        if got == want:
            continue
        if got[:5] != want[:5]:
            raise AssertionError(f"开头应是 5 个特殊 token {want[:5]}，得到 {got[:5]}。")
        if not any(t.startswith("##") for t in got):
            raise AssertionError("少了 ## 形式：每个拉丁字母/数字字符后面紧跟一个 '##' + 字符（词中间的片段）。")
        if " " in got:
            raise AssertionError("空白不是 token：统计时跳过空格。")
        if sorted(got) == sorted(want):
            raise AssertionError("token 对了，顺序不对：次数降序，次数相同按 Unicode 码位 ord(c) 升序（而不是出现的先后）。")
        if any(c.isupper() for c in got if not c.startswith("[")):
            raise AssertionError("没有转小写（和 do_lower_case=True 的 BertTokenizer 一致）：é 这样的字母还要去掉重音（NFD 后删去 Mn 类）。")
        raise AssertionError(f"种子 {seed} 的语料：期望 {len(want)} 个 token（前 12 个 {want[:12]}），得到 {len(got)} 个（{got[:12]}）。")


def _pad_fraction(lengths, batches) -> float:
    real = sum(lengths[i] for b in batches for i in b)
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    return 1 - real / padded


@exercise("lab03.t5", "写 bucket_batches(lengths, batch_size, pool_batches, seed)：先打乱、按池排序切批、再打乱批次；"
          "每个样本恰好一次，填充接近 LengthBucketSampler，且随种子变化。", level="hard")
def t5(answer) -> None:
    _callable(answer, "def bucket_batches(lengths, batch_size, pool_batches=50, seed=0): ...")
    from ..data import LengthBucketSampler

    rng = random.Random(5)
    lengths = [min(128, int(rng.lognormvariate(3.8, 0.8)) + 3) for _ in range(3000)]
    got = answer(list(lengths), 32, pool_batches=20, seed=0)
    if got is None:
        raise AssertionError("bucket_batches 返回了 None：还没有写完，请完成 # TODO 处并 return 结果。")
    try:
        got = [[int(i) for i in b] for b in got]
    except (TypeError, ValueError):
        raise TypeError("应返回批次的列表：每批是样本下标的列表") from None
    flat = sorted(i for b in got for i in b)
    if flat != list(range(len(lengths))):
        missing = len(set(range(len(lengths))) - set(flat))
        raise AssertionError(f"每个样本应恰好出现一次：缺了 {missing} 个，重复 {len(flat) - len(set(flat))} 个。"
                             "（最后一个不满的池、不满的批也要保留。）")
    if any(not 0 < len(b) <= 32 for b in got):
        raise AssertionError("每批最多 batch_size=32 个样本，且不能为空。")
    want = _pad_fraction(lengths, list(LengthBucketSampler(lengths, 32, pool_batches=20, seed=0)))
    mine = _pad_fraction(lengths, got)
    random_order = list(range(len(lengths)))
    random.Random(0).shuffle(random_order)
    dynamic = _pad_fraction(lengths, [random_order[s:s + 32] for s in range(0, len(lengths), 32)])
    if mine > 0.5 * dynamic:
        raise AssertionError(f"填充占比 {mine:.1%}，和随机组批（{dynamic:.1%}）差不多：每个池内要按长度排序后再切批。")
    if mine > 2 * want + 0.01:
        raise AssertionError(f"填充占比 {mine:.1%}，比 LengthBucketSampler 的 {want:.1%} 高得多：池的大小应是 batch_size × pool_batches。")
    if mine < 0.3 * want:
        raise AssertionError(f"填充占比 {mine:.1%} 低得可疑（LengthBucketSampler 为 {want:.1%}）：是否对全体数据排序、丢掉了随机性？"
                             "先打乱，再在每个池内排序。")
    sizes = [len(b) for b in got]
    if got == sorted(got, key=lambda b: lengths[b[0]]) and len(set(sizes)) <= 2:
        raise AssertionError("批次按长度从短到长排列：切完批后要再打乱批次的顺序，否则训练先只见短样本、后只见长样本。")
    again = [[int(i) for i in b] for b in answer(list(lengths), 32, pool_batches=20, seed=0)]
    if again != got:
        raise AssertionError("同一个 seed 两次结果不同：用 random.Random(seed) 而不是全局随机数。")
    other = [[int(i) for i in b] for b in answer(list(lengths), 32, pool_batches=20, seed=1)]
    if other == got:
        raise AssertionError("换了 seed，批次却完全相同：打乱要用 seed。")
