"""ftbook.exercises: registry, check() verdicts, unknown and bad ids; the ch01 / ch02 checkers."""

import pytest

from ftbook import exercises
from ftbook.exercises import check, exercise, get


def test_right_and_wrong_answers_print_verdicts(capsys):
    @exercise("chtest.q1")
    def _checker(answer):
        assert answer == 42, "答案是一个两位数"

    assert check("chtest.q1", 42) is True
    assert "✅ chtest.q1" in capsys.readouterr().out
    assert check("chtest.q1", 41) is False
    out = capsys.readouterr().out
    assert "❌ chtest.q1 还不对" in out and "两位数" in out


def test_quiet_prints_nothing(capsys):
    @exercise("chtest.q2")
    def _checker(answer):
        if not isinstance(answer, int):
            raise TypeError("需要整数")

    assert check("chtest.q2", "x", quiet=True) is False
    assert check("chtest.q2", 3, quiet=True) is True
    assert capsys.readouterr().out == ""


def test_none_answer_is_wrong_not_an_error(capsys):
    # The exercise cells ship with `answer = None`; check() must say "not yet", not crash.
    for ex_id in ("ch01.q2", "ch02.q1", "ch02.q2", "ch17.q1", "ch17.q2", "ch17.q3"):
        assert check(ex_id, None) is False
    assert capsys.readouterr().out.count("还不对") == 6


def test_unknown_id_names_the_known_ones():
    with pytest.raises(KeyError, match="no exercise 'ch99.q1'"):
        get("ch99.q1")
    with pytest.raises(KeyError, match="ch17.q1"):  # ch17 is loaded on demand and listed
        get("ch17.q1"), get("ch17.q9")


@pytest.mark.parametrize("bad", ["ch06", "", 6, None])
def test_bad_id_rejected(bad):
    with pytest.raises(ValueError, match="exercise id must look like"):
        exercise(bad)


def test_any_exception_of_the_answer_is_a_verdict(capsys):
    # e.g. the reader's function raises inside the checker: a verdict, never a crash of the cell
    @exercise("chtest.q3")
    def _checker(answer):
        answer()

    assert check("chtest.q3", lambda: {}["missing"]) is False
    assert "还不对" in capsys.readouterr().out


def test_level_sets_points_and_is_validated():
    @exercise("labtest.t1", "easy one", level="easy")
    def _e(answer):
        pass

    @exercise("labtest.t2", "hard one", level="hard")
    def _h(answer):
        pass

    assert get("labtest.t1").points == exercises.POINTS["easy"] == 1
    assert get("labtest.t2").points == 3 and get("labtest.t2").level == "hard"
    assert get("ch01.q1").level is None and get("ch01.q1").points == 1
    with pytest.raises(ValueError, match="level must be one of"):
        exercise("labtest.t3", level="trivial")


def test_grade_log_gets_one_json_line_per_check(tmp_path, monkeypatch):
    import json

    @exercise("labtest.t4", level="medium")
    def _m(answer):
        assert answer == 2, "答案是 2"

    log = tmp_path / "grade.jsonl"
    monkeypatch.setenv(exercises.GRADE_LOG_ENV, str(log))
    check("labtest.t4", 1, quiet=True)
    check("labtest.t4", 2, quiet=True)
    lines = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert [(r["id"], r["ok"], r["points"], r["level"]) for r in lines] == [
        ("labtest.t4", False, 2, "medium"), ("labtest.t4", True, 2, "medium")]
    assert lines[0]["message"].startswith("答案是 2") and lines[1]["message"] == ""


def test_no_grade_log_without_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(exercises.GRADE_LOG_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert check("ch01.q2", None, quiet=True) is False
    assert list(tmp_path.iterdir()) == []


def test_registered_lists_a_module_in_natural_order():
    ids = [e.id for e in exercises.registered("ch17")]
    assert ids and all(i.startswith("ch17.") for i in ids)
    assert ids == sorted(ids, key=lambda i: int(i.split(".q")[1]))
    with pytest.raises(KeyError, match="no exercises module"):
        exercises.registered("ch99")


def test_registry_keeps_prompt_from_docstring():
    assert "MiniLM" in get("ch01.q1").prompt
    assert exercises.get("ch02.q1").id == "ch02.q1"


# ---- chapter 1 -------------------------------------------------------------------------------

def test_ch01_q1_parameter_count(capsys):
    from ftbook.exercises.ch01 import minilm_parameter_count

    n = minilm_parameter_count()
    assert n == 22_713_216
    assert check("ch01.q1", n)
    assert not check("ch01.q1", n + 1000)
    assert "很接近" in capsys.readouterr().out
    assert not check("ch01.q1", 22)
    assert "百万" in capsys.readouterr().out
    assert not check("ch01.q1", 22.7e6)  # a float is refused: the count is an integer
    assert not check("ch01.q1", True)


def test_ch01_q2_stage_order(capsys):
    assert check("ch01.q2", ["预训练", "微调", "部署"])
    assert check("ch01.q2", ("pretrain", "Fine-tune", "deploy"))
    assert not check("ch01.q2", ["微调", "预训练", "部署"])
    assert "第一步" in capsys.readouterr().out
    assert not check("ch01.q2", ["预训练", "部署", "微调"])
    assert not check("ch01.q2", ["预训练", "微调"])
    assert not check("ch01.q2", ["预训练", "训练", "部署"])
    assert "不认识" in capsys.readouterr().out
    assert not check("ch01.q2", "预训练 微调 部署")


def test_ch02_q1_accuracy(capsys):
    assert check("ch02.q1", 0.85)
    assert check("ch02.q1", 85 / 100)
    assert not check("ch02.q1", 85)
    assert "百分数" in capsys.readouterr().out
    assert not check("ch02.q1", 0.8)
    assert not check("ch02.q1", 1.5)
    assert not check("ch02.q1", float("nan"))
    assert not check("ch02.q1", "0.85")


def test_ch02_q2_steps_per_epoch(capsys):
    assert check("ch02.q2", 32)
    assert not check("ch02.q2", 31)
    assert "向上取整" in capsys.readouterr().out
    assert not check("ch02.q2", 1000)
