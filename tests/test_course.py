"""python -m ftbook course export: students get no solutions and no outputs; instructors get all."""

import filecmp
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from ftbook import course

ROOT = Path(__file__).resolve().parents[1]
SECRET_CODE = "answer = sum(p.numel() for p in model.parameters())  # secret-code-xyz"
SECRET_TEXT = "参考答案的秘密句子：早停保留验证损失最低的那一轮 secret-text-xyz"


def make_chapter(folder: Path, name: str = "01_demo.ipynb") -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    setup = nbformat.v4.new_code_cell("import ftbook\nctx = ftbook.setup_chapter()", metadata={"tags": ["setup"]})
    setup.outputs = [nbformat.v4.new_output("stream", name="stdout", text="ftbook 0.1.0 | profile tiny\n")]
    setup.execution_count = 1
    ask = nbformat.v4.new_code_cell('answer = None\nftbook.exercises.check("ch01.q1", answer);')
    ask.outputs = [nbformat.v4.new_output("stream", name="stdout", text="❌ 还不对\n")]
    ask.execution_count = 2
    sol_code = nbformat.v4.new_code_cell(SECRET_CODE, metadata={"tags": ["solution", "hide-cell"]})
    sol_code.outputs = [nbformat.v4.new_output("execute_result", data={"text/plain": "22713216"},
                                               execution_count=3)]
    sol_code.execution_count = 3
    sol_md = nbformat.v4.new_markdown_cell(
        f":::{{admonition}} 参考答案\n:class: dropdown\n\n{SECRET_TEXT}\n:::", metadata={"tags": ["solution"]})
    nb.cells = [nbformat.v4.new_markdown_cell("# 第 1 章 演示\n\nbadge"), setup,
                nbformat.v4.new_markdown_cell("## 练习\n\n1. 数一数参数。"), ask, sol_code, sol_md]
    path = folder / name
    nbformat.write(nb, path)
    return path


@pytest.fixture
def chapters(tmp_path):
    folder = tmp_path / "chapters"
    folder.mkdir()
    make_chapter(folder)
    make_chapter(folder, "02_other.ipynb")
    return folder


def test_student_has_no_solution_and_no_outputs(chapters, tmp_path):
    written = course.export(tmp_path / "out", chapters)
    assert [p.name for p in written["student"]] == ["01_demo.ipynb", "02_other.ipynb"]
    for path in written["student"]:
        raw = path.read_text(encoding="utf-8")
        assert "secret-code-xyz" not in raw and "secret-text-xyz" not in raw
        assert "22713216" not in raw and "profile tiny" not in raw
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert not any("solution" in c.metadata.get("tags", []) for c in nb.cells)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None
        # the exercise itself stays, so students can answer it
        assert any('check("ch01.q1"' in c.source for c in nb.cells)
        assert any("学生版" in c.source for c in nb.cells)


def test_instructor_is_the_chapter_unchanged(chapters, tmp_path):
    written = course.export(tmp_path / "out", chapters)
    for path in written["instructor"]:
        assert filecmp.cmp(path, chapters / path.name, shallow=False)
        assert "secret-text-xyz" in path.read_text(encoding="utf-8")


def test_leak_detector_can_fail(chapters):
    nb = nbformat.read(chapters / "01_demo.ipynb", as_version=4)
    leaky = course.student_notebook(nb)
    leaky.cells.append(nbformat.v4.new_markdown_cell(SECRET_TEXT))  # solution copied into prose
    assert course.leaked_solutions(leaky, nb) == [SECRET_TEXT]
    assert course.leaked_solutions(course.student_notebook(nb), nb) == []


def test_lines_students_see_anyway_are_not_secrets(chapters):
    nb = nbformat.read(chapters / "01_demo.ipynb", as_version=4)
    nb.cells[4].source = 'ftbook.exercises.check("ch01.q1", answer);\n' + SECRET_CODE
    assert course.solution_lines(nb) == {SECRET_CODE, SECRET_TEXT}


def test_export_refuses_when_removal_fails(chapters, tmp_path, monkeypatch):
    monkeypatch.setattr(course, "is_solution", lambda cell: False)  # a broken filter
    monkeypatch.setattr(course, "solution_lines", lambda nb: {SECRET_TEXT})
    with pytest.raises(RuntimeError, match="survived in the student notebook"):
        course.export(tmp_path / "out", chapters)


def test_only_filters_by_prefix(chapters, tmp_path):
    written = course.export(tmp_path / "out", chapters, only=["02"])
    assert [p.name for p in written["student"]] == ["02_other.ipynb"]


def test_bad_inputs(chapters, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        course.export(tmp_path / "out", tmp_path / "nope")
    with pytest.raises(ValueError, match="inside the chapters folder"):
        course.export(chapters / "student", chapters)
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    with pytest.raises(NotADirectoryError, match="not a folder"):
        course.export(afile, chapters)
    with pytest.raises(FileNotFoundError, match="starting with"):
        course.export(tmp_path / "out", chapters, only=["99"])
    with pytest.raises(TypeError, match="expected a notebook"):
        course.student_notebook({"cells": []})


def test_cli(chapters, tmp_path, capsys):
    assert course.main(["export", str(tmp_path / "out"), "--chapters", str(chapters)]) == 0
    assert "wrote 2 student and 2 instructor" in capsys.readouterr().out
    assert course.main(["export", str(tmp_path / "out"), "--chapters", str(tmp_path / "nope")]) == 1
    assert "error:" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        course.main([])


def test_cli_through_python_m_ftbook(chapters, tmp_path):
    out = subprocess.run([sys.executable, "-m", "ftbook", "course", "export", str(tmp_path / "o"),
                          "--chapters", str(chapters)], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "o" / "student" / "01_demo.ipynb").is_file()


def test_labs_and_projects_are_exported_in_their_folders(chapters, tmp_path):
    (chapters / "labs").mkdir()
    (chapters / "projects").mkdir()
    make_chapter(chapters / "labs", "lab01.ipynb")
    make_chapter(chapters / "projects", "midterm.ipynb")
    written = course.export(tmp_path / "o", chapters)
    for kind in ("student", "instructor"):
        assert (tmp_path / "o" / kind / "labs" / "lab01.ipynb").is_file()
        assert (tmp_path / "o" / kind / "projects" / "midterm.ipynb").is_file()
        rubric = (tmp_path / "o" / kind / "projects" / "RUBRIC.md").read_text(encoding="utf-8")
        assert "midterm.t1" in rubric and "合计" in rubric
    lab = (tmp_path / "o" / "student" / "labs" / "lab01.ipynb").read_text(encoding="utf-8")
    assert "secret-code-xyz" not in lab and "secret-text-xyz" not in lab
    assert len(written["student"]) == 4


def test_real_chapters_export_without_leaks(tmp_path):
    written = course.export(tmp_path / "book")
    expected = [p for g in ("*.ipynb", "labs/*.ipynb", "projects/*.ipynb") for p in (ROOT / "chapters").glob(g)]
    assert len(written["student"]) == len(expected)
    assert any("labs" in p.parts for p in written["student"]) or not (ROOT / "chapters" / "labs").is_dir()
    for student_path, teacher_path in zip(written["student"], written["instructor"]):
        student = nbformat.read(student_path, as_version=4)
        teacher = nbformat.read(teacher_path, as_version=4)
        assert course.leaked_solutions(student, teacher) == []
        assert all(c.outputs == [] for c in student.cells if c.cell_type == "code")


def test_quizzes_export_questions_to_students_and_answers_to_instructors(chapters, tmp_path):
    from ftbook import quiz

    written = course.export(tmp_path / "out", chapters)
    assert [p.name for p in written["student_quizzes"]] == ["ch01.md", "ch02.md"]  # the exported chapters' only
    for student_path, teacher_path in zip(written["student_quizzes"], written["instructor_quizzes"]):
        key = student_path.stem
        student, teacher = student_path.read_text(encoding="utf-8"), teacher_path.read_text(encoding="utf-8")
        assert teacher == quiz.render_markdown(key)
        questions = quiz.load(key).questions
        assert all(q.question in student for q in questions)
        assert "答案与解析" not in student
        assert not any(c.explanation in student for q in questions for c in q.choices)
        assert all(c.explanation in teacher for q in questions for c in q.choices)


def test_quiz_export_refuses_a_leak(chapters, tmp_path, monkeypatch):
    from ftbook import quiz

    real = quiz.render_markdown
    monkeypatch.setattr(quiz, "render_markdown", lambda key, folder=None, answers=True: real(key, folder))
    with pytest.raises(RuntimeError, match="answer text survived in the student quiz"):
        course.export(tmp_path / "out", chapters)
