"""ftbook.grading (``course grade``): real submissions in fresh kernels, and what it contains:
an infinite loop, sys.exit, os._exit, deleted files, a notebook that is not JSON."""

import csv
import json
from pathlib import Path

import nbformat
import pytest

from ftbook import course, grading

LN_RIGHT = "import torch.nn.functional as F\nftbook.exercises.check('ch06.q2', lambda x: F.layer_norm(x, x.shape[-1:], eps=1e-5))"


def _nb(path: Path, *sources: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("subs")
    _nb(root / "alice.ipynb", "import ftbook", "ftbook.exercises.check('ch06.q1', [1, 2, 3, 4])", LN_RIGHT)
    _nb(root / "bob.ipynb", "import ftbook", LN_RIGHT, "while True:\n    pass",
        "ftbook.exercises.check('ch06.q1', None)")
    _nb(root / "carol.ipynb", "import ftbook, sys", "sys.exit(3)", LN_RIGHT)
    _nb(root / "dave" / "ch06.ipynb", "import os, ftbook", LN_RIGHT,
        "os.remove('data.csv'); os.remove('ch06.ipynb')", "os._exit(0)", "ftbook.exercises.check('ch06.q1', 0)")
    (root / "dave" / "data.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    (root / "eve.ipynb").write_text("{not a notebook", encoding="utf-8")
    _nb(root / "frank.ipynb", "print('no checks here')")
    _nb(root / "grace.ipynb", "import ftbook", "raise ValueError('boom')", LN_RIGHT)
    out = tmp_path_factory.mktemp("out") / "grades.csv"
    rows = grading.grade(root, out, timeout=25, workers=2, progress=False)
    return root, out, rows


def _by(rows, student):
    return {r["item"]: r for r in rows if r["student"] == student}


def test_every_student_gets_rows_and_the_csv_matches(graded):
    root, out, rows = graded
    assert {r["student"] for r in rows} == {"alice", "bob", "carol", "dave", "eve", "frank", "grace"}
    with open(out, encoding="utf-8") as fh:
        on_disk = list(csv.DictReader(fh))
    assert [r["item"] for r in on_disk] == [r["item"] for r in rows]
    assert list(on_disk[0]) == list(grading.FIELDS)
    n_ch06 = len(__import__("ftbook").exercises.registered("ch06"))
    assert len(_by(rows, "alice")) == n_ch06  # every registered ch06 item, checked or not


def test_pass_fail_and_missing(graded):
    alice = _by(graded[2], "alice")
    assert alice["ch06.q2"]["status"] == "pass" and alice["ch06.q2"]["points"] == 1
    assert alice["ch06.q1"]["status"] == "fail" and "先减去均值" in alice["ch06.q1"]["detail"]
    assert alice["ch06.q3"]["status"] == "missing" and alice["ch06.q3"]["points"] == 0


def test_infinite_loop_is_a_timeout_and_earlier_verdicts_count(graded):
    bob = _by(graded[2], "bob")
    assert bob["ch06.q2"]["status"] == "pass"
    assert bob["ch06.q1"]["status"] == "timeout" and "超时" in bob["ch06.q1"]["detail"]


def test_sys_exit_and_a_raising_cell_do_not_stop_the_notebook(graded):
    assert _by(graded[2], "carol")["ch06.q2"]["status"] == "pass"
    grace = _by(graded[2], "grace")
    assert grace["ch06.q2"]["status"] == "pass"
    assert "ValueError: boom" in grace["ch06.q1"]["detail"]  # missing, with the first error


def test_os_exit_and_deleted_files_are_contained(graded):
    root, _, rows = graded
    dave = _by(rows, "dave")
    assert dave["ch06.q2"]["status"] == "pass"  # checked before the kernel died
    assert dave["ch06.q1"]["status"] == "error" and "内核" in dave["ch06.q1"]["detail"]
    assert (root / "dave" / "data.csv").exists() and (root / "dave" / "ch06.ipynb").exists()


def test_unreadable_and_unrecognised_notebooks_get_a_reason(graded):
    rows = graded[2]
    assert "无法读取" in _by(rows, "eve")["-"]["detail"]
    assert _by(rows, "frank")["-"]["status"] == "error" and "无法识别" in _by(rows, "frank")["-"]["detail"]


def test_summary_totals_points(graded):
    _, out, _ = graded
    with open(out.with_name("grades_summary.csv"), encoding="utf-8") as fh:
        summary = {r["student"]: r for r in csv.DictReader(fh)}
    assert summary["alice"]["points"] == "1" and int(summary["alice"]["max_points"]) >= 3
    assert summary["bob"]["problems"] != "0" and summary["alice"]["problems"] == "0"


def test_prefixes_from_name_or_checks(tmp_path):
    assert grading.prefixes_of(_nb(tmp_path / "my_lab06_v2.ipynb", "")) == ["lab06"]
    assert grading.prefixes_of(_nb(tmp_path / "x.ipynb", "ftbook.exercises.check(\"lab03.t1\", 1)")) == ["lab03"]
    assert grading.prefixes_of(_nb(tmp_path / "lab061.ipynb", "")) == []


def test_bad_arguments_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        grading.grade(tmp_path / "nope", tmp_path / "g.csv")
    with pytest.raises(FileNotFoundError, match="no notebooks"):
        grading.grade(tmp_path, tmp_path / "g.csv")
    _nb(tmp_path / "a.ipynb", "")
    with pytest.raises(ValueError, match="timeout must be at least"):
        grading.grade(tmp_path, tmp_path / "g.csv", timeout=5)
    assert course.main(["grade", str(tmp_path / "nope")]) == 1


def test_forged_log_lines_are_reported_not_crashing(tmp_path):
    log, result = tmp_path / "log.jsonl", tmp_path / "result.json"
    log.write_text('{"id": "ch06.q1", "ok": true}\nnot json\n', encoding="utf-8")
    result.write_text(json.dumps({"errors": [], "fatal": None, "timed_out": False}), encoding="utf-8")
    res = grading.RunResult()
    grading._read_result(res, result, log, 0, b"")
    assert res.verdicts["ch06.q1"]["ok"] is True and "无法解析" in res.errors[0]
