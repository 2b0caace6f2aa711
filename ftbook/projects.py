"""The course's two projects: their data at the profile's size, and the rubric's point table.

Used by ``chapters/projects/midterm.ipynb`` (Reuters R8 topics: fine-tune MiniLM against TF-IDF +
logistic regression, with an error analysis) and ``chapters/projects/final.ipynb`` (who wrote the
tweet, Clinton or Trump: frozen probe, LoRA and full fine-tuning compared), and by their checkers
(:mod:`ftbook.exercises.midterm`, :mod:`ftbook.exercises.final`), which recompute every truth from
here. The course page (``chapters/course.md``) gives the plan; the data come from
:func:`ftbook.resources.reuters_r8` and :func:`ftbook.resources.election_tweets`.

``tiny`` takes a stratified, seeded subset of the training split (:func:`ftbook.baselines.label_budget_indices`)
so that a project runs on a laptop CPU in minutes; validation and test are always whole.
"""

from __future__ import annotations

from functools import lru_cache

from .config import Profile, get_profile, register_sizes

register_sizes("midterm", tiny={"train_docs": 600, "max_length": 96}, full={"train_docs": None, "max_length": 256})
register_sizes("final", tiny={"train_docs": 600, "max_length": 64}, full={"train_docs": None, "max_length": 64})

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
    from . import resources

    if name == "midterm":
        return resources.reuters_r8()
    if name == "final":
        return resources.election_tweets()
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
