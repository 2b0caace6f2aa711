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
