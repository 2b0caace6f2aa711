"""Each checker of chapter 13 accepts the right answer and rejects a wrong one."""

from ftbook import similarity, tagging
from ftbook.exercises import check


def test_q1_matches_the_module():
    right = tagging.words_to_bio(tagging.parse_line("李/nr 鹏/nr 访问/v 日本/ns"))[1]
    assert check("ch13.q1", right, quiet=True)
    assert not check("ch13.q1", ["B-PER", "B-PER", "O", "O", "B-LOC", "I-LOC"], quiet=True)
    assert not check("ch13.q1", None, quiet=True)


def test_q2_matches_the_module():
    right = tagging.align_labels([None, 0, 1, 1, 1, 2, None], [1, 0, 3])
    assert check("ch13.q2", right, quiet=True)
    assert not check("ch13.q2", [-100, 1, 0, 0, 0, 3, -100], quiet=True)
    assert not check("ch13.q2", None, quiet=True)


def test_q3_matches_the_module():
    right = similarity.retrieval_metrics([[0.9, 0.2, 0.1], [0.7, 0.6, 0.1], [0.1, 0.3, 0.8]])["recall@1"]
    assert check("ch13.q3", right, quiet=True)
    assert not check("ch13.q3", 1.0, quiet=True)
    assert not check("ch13.q3", None, quiet=True)


def _viterbi(scores):
    """A constrained Viterbi decoder (the exercise's solution, written here independently)."""
    labels = tagging.LABELS
    allowed = lambda a, b: not b.startswith("I-") or a[2:] == b[2:]  # noqa: E731
    best = [s if not labels[j].startswith("I-") else float("-inf") for j, s in enumerate(scores[0])]
    back = []
    for row in scores[1:]:
        ptr, new = [], []
        for j, s in enumerate(row):
            k = max((i for i in range(len(labels)) if allowed(labels[i], labels[j])), key=lambda i: best[i])
            ptr.append(k)
            new.append(best[k] + s)
        back.append(ptr)
        best = new
    j = max(range(len(labels)), key=lambda i: best[i])
    path = [j]
    for ptr in reversed(back):
        j = ptr[j]
        path.append(j)
    return [labels[i] for i in reversed(path)]


def test_q4_accepts_viterbi_and_rejects_argmax():
    assert check("ch13.q4", _viterbi, quiet=True)
    argmax = lambda scores: [tagging.LABELS[max(range(7), key=row.__getitem__)] for row in scores]  # noqa: E731
    assert not check("ch13.q4", argmax, quiet=True)  # may produce B-LOC I-ORG
    first_valid = lambda scores: ["O"] * len(scores)  # noqa: E731
    assert not check("ch13.q4", first_valid, quiet=True)  # valid but not the best
    assert not check("ch13.q4", lambda scores: None, quiet=True)
    assert not check("ch13.q4", None, quiet=True)
