"""ftbook.quiz: the quiz format's validation, grading, the book's pages, and every shipped quiz."""

import json
import math

import pytest
import yaml

from ftbook import quiz

TOY = {"chapter": 4, "title": "交叉熵", "questions": [
    {"type": "single", "question": "均匀分布下二分类的交叉熵是？",
     "choices": [{"text": "0", "correct": False, "explanation": "只有确定且正确时才是 0。"},
                 {"text": "$\\ln 2$", "correct": True, "explanation": "$-\\ln(1/2) = \\ln 2$。"}]},
    {"type": "multiple", "question": "哪些是概率分布？",
     "choices": [{"text": "softmax 的输出", "correct": True, "explanation": "非负、和为 1。"},
                 {"text": "logits", "correct": False, "explanation": "logits 可以为负。"},
                 {"text": "one-hot 标签", "correct": True, "explanation": "退化分布。"}]},
    {"type": "numeric", "question": "$-\\ln 0.5$ 等于多少？", "answer": 0.6931, "tolerance": 0.001,
     "compute": "-math.log(0.5)", "explanation": "$\\ln 2 \\approx 0.6931$。"}]}


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "ch04.json").write_text(json.dumps(TOY, ensure_ascii=False), encoding="utf-8")
    return tmp_path


def _write(tmp_path, data):
    (tmp_path / "ch04.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return tmp_path


def test_load_reads_every_question_type(folder):
    q = quiz.load(4, folder)
    assert (q.key, q.chapter, q.title) == ("ch04", 4, "交叉熵")
    assert [x.type for x in q.questions] == ["single", "multiple", "numeric"]
    assert q.questions[0].correct_letters == {"B"} and q.questions[1].correct_letters == {"A", "C"}
    assert quiz.load("ch04", folder) == q
    assert quiz.computed(q.questions[2]) == pytest.approx(math.log(2))


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["questions"][0]["choices"][0].update(correct=True), "exactly one correct choice"),
    (lambda d: d["questions"][1]["choices"][0].update(correct=False) or
     d["questions"][1]["choices"][2].update(correct=False), "at least one correct choice"),
    (lambda d: d["questions"][0]["choices"][1].pop("explanation"), "question 1, choice B: 'explanation'"),
    (lambda d: d["questions"][2].pop("tolerance"), "positive 'tolerance'"),
    (lambda d: d["questions"][2].update(answer="0.69"), "finite 'answer'"),
    (lambda d: d["questions"][1].update(type="essay"), "'type' must be one of"),
    (lambda d: d["questions"][0].update(choices=d["questions"][0]["choices"][:1]), "needs 2-8 choices"),
    (lambda d: d.update(chapter=5), "'chapter' must be 4"),
    (lambda d: d.update(questions=[]), "non-empty list"),
])
def test_malformed_quizzes_say_where(tmp_path, edit, message):
    data = json.loads(json.dumps(TOY))
    edit(data)
    with pytest.raises(quiz.QuizError, match=message):
        quiz.load(4, _write(tmp_path, data))


def test_missing_quiz_and_bad_chapter(tmp_path):
    with pytest.raises(quiz.QuizError, match="no quiz for ch09"):
        quiz.load(9, tmp_path)
    with pytest.raises(quiz.QuizError, match="chapter must be a number or 'chNN'"):
        quiz.load("four", tmp_path)


def test_check_grades_and_explains_the_picked_choices(folder, capsys):
    score = quiz.check(4, {1: "b", 2: ["A", "C"], 3: 0.693}, folder)
    assert score == {"right": 3, "answered": 3, "total": 3}
    out = capsys.readouterr().out
    assert "$-\\ln(1/2) = \\ln 2$" in out and "非负、和为 1" in out and "退化分布" in out

    score = quiz.check(4, {1: "A", 2: ["A"]}, folder)
    out = capsys.readouterr().out
    assert score == {"right": 0, "answered": 2, "total": 3}
    assert "只有确定且正确时才是 0" in out  # the explanation of the wrong pick
    assert "$\\ln 2$" not in out.split("第 2 题")[0].split("第 1 题")[1].replace("只有确定且正确时才是 0。", "")
    assert "还漏了 1 个正确选项" in out and "未作答：[3]" in out

    quiz.check(4, {3: 0.8}, folder)
    assert "0.8 不对（允许误差 ±0.001）" in capsys.readouterr().out


@pytest.mark.parametrize("answers, message", [
    ({1: "E"}, "选项只能是 A, B"), ({1: ["A", "B"]}, "单选题：请只选一个字母"), ({2: []}, "请用字母作答"),
    ({3: "0.69"}, "请给出一个数"), ({7: "A"}, "只有第 1–3 题"), (["A"], "answers must be a dict"),
])
def test_check_rejects_malformed_answers(folder, answers, message):
    with pytest.raises(quiz.QuizError, match=message):
        quiz.check(4, answers, folder)


def test_rendered_page_folds_answers_and_the_student_page_has_none(folder):
    page = quiz.render_markdown(4, folder)
    assert page.startswith("# 第 4 章 测验：交叉熵")
    assert page.count(":::{admonition} 答案与解析") == 3 and page.count(":class: dropdown") == 3
    assert "**答案：A、C**" in page and "**答案：0.6931**" in page
    student = quiz.render_markdown(4, folder, answers=False)
    assert "答案与解析" not in student and "退化分布" not in student and "- **C**. one-hot 标签" in student


# --------------------------------------------------------------------------- the shipped quizzes

SHIPPED = quiz.available()


def test_every_chapter_has_a_quiz():
    chapters = sorted(p.name[:2] for p in quiz.PAGE_DIR.parent.glob("[0-9][0-9]_*.ipynb"))
    assert SHIPPED == [f"ch{n}" for n in chapters]


@pytest.mark.parametrize("key", SHIPPED)
def test_shipped_quiz_is_valid_and_its_numbers_compute(key):
    q = quiz.load(key)
    assert len(q.questions) >= 6
    assert {x.type for x in q.questions} >= {"single", "multiple"}
    for x in q.questions:
        if x.compute is not None:
            assert quiz.computed(x) == pytest.approx(x.answer, abs=x.tolerance), f"{key} question {x.number}"


@pytest.mark.parametrize("key", SHIPPED)
def test_shipped_quiz_graded_with_its_own_answers_is_all_right(key, capsys):
    q = quiz.load(key)
    answers = {x.number: (x.answer if x.type == "numeric" else sorted(x.correct_letters)) for x in q.questions}
    assert quiz.check(key, answers)["right"] == len(q.questions)


@pytest.mark.parametrize("key", SHIPPED)
def test_book_page_is_in_sync_with_the_quiz(key):
    page = quiz.PAGE_DIR / f"{key}.md"
    assert page.is_file(), f"run python -m ftbook quiz render ({page} is missing)"
    assert page.read_text(encoding="utf-8") == quiz.render_markdown(key), "run python -m ftbook quiz render"


def test_every_quiz_page_is_in_the_table_of_contents():
    toc = yaml.safe_load((quiz.PAGE_DIR.parent.parent / "_toc.yml").read_text(encoding="utf-8"))
    sections = {s["file"] for part in toc["parts"] for c in part["chapters"] for s in c.get("sections", [])}
    assert {f"chapters/quizzes/{key}" for key in SHIPPED} <= sections
