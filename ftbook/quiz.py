"""End-of-chapter quizzes: questions whose every choice carries its explanation.

Part of the course kit (``chapters/course.md``). Each chapter's quiz is a JSON file,
``ftbook/quizzes/chNN.json``::

    {"chapter": 4, "title": "损失函数：交叉熵",
     "questions": [
       {"type": "single", "question": "...", "choices": [
          {"text": "...", "correct": true, "explanation": "..."},
          {"text": "...", "correct": false, "explanation": "..."}]},
       {"type": "multiple", "question": "...", "choices": [...]},      # one or more correct
       {"type": "numeric", "question": "...", "answer": 0.6931, "tolerance": 0.001,
        "compute": "math.log(2)", "explanation": "..."}]}

``compute`` (optional, numeric questions) is a Python expression over ``math`` that the test suite
evaluates against ``answer``: the quiz's numbers are checked by code like the book's formulas.

* :func:`load` reads and validates a quiz (:class:`QuizError` says which question is malformed).
* :func:`check` grades a reader's answers in a notebook: ``quiz.check("ch04", {1: "B", 2: ["A",
  "C"], 3: 0.69})`` prints, for each question, right or wrong and the explanation of every choice
  the reader picked (the right answer itself is not given away, so the reader can try again).
* :func:`render_markdown` writes the book's quiz page (``chapters/quizzes/chNN.md``, answers
  folded); ``python -m ftbook quiz render`` regenerates every page and ``python -m ftbook quiz
  check`` validates every quiz; a test keeps the pages in sync with the JSON.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

QUIZ_DIR = Path(__file__).resolve().parent / "quizzes"
PAGE_DIR = Path(__file__).resolve().parent.parent / "chapters" / "quizzes"
LETTERS = "ABCDEFGH"
TYPES = {"single": "单选", "multiple": "多选", "numeric": "数值"}


class QuizError(ValueError):
    """A quiz file, or a reader's answer sheet, is malformed; the message says where."""


@dataclass(frozen=True)
class Choice:
    text: str
    correct: bool
    explanation: str


@dataclass(frozen=True)
class Question:
    number: int  # 1-based, as the reader sees it
    type: str
    question: str
    choices: tuple[Choice, ...] = ()
    answer: float | None = None
    tolerance: float | None = None
    compute: str | None = None
    explanation: str = ""

    @property
    def correct_letters(self) -> set[str]:
        return {LETTERS[i] for i, c in enumerate(self.choices) if c.correct}


@dataclass(frozen=True)
class Quiz:
    key: str  # "ch04"
    chapter: int
    title: str
    questions: tuple[Question, ...]


def _key(chapter: int | str) -> str:
    if isinstance(chapter, bool):
        raise QuizError(f"chapter must be a number or 'chNN', got {chapter!r}")
    if isinstance(chapter, int):
        return f"ch{chapter:02d}"
    if isinstance(chapter, str) and re.fullmatch(r"ch\d{2}", chapter):
        return chapter
    raise QuizError(f"chapter must be a number or 'chNN' (e.g. 'ch04'), got {chapter!r}")


def _text(raw: Mapping, field: str, where: str) -> str:
    value = raw.get(field)
    if not isinstance(value, str) or not value.strip():
        raise QuizError(f"{where}: '{field}' must be a non-empty string")
    return value


def _choices(raw: Mapping, kind: str, where: str) -> tuple[Choice, ...]:
    items = raw.get("choices")
    if not isinstance(items, list) or not 2 <= len(items) <= len(LETTERS):
        raise QuizError(f"{where}: a {kind} question needs 2-{len(LETTERS)} choices")
    choices = []
    for j, c in enumerate(items):
        at = f"{where}, choice {LETTERS[j]}"
        if not isinstance(c, dict) or not isinstance(c.get("correct"), bool):
            raise QuizError(f"{at}: needs 'text', 'correct' (true/false) and 'explanation'")
        choices.append(Choice(_text(c, "text", at), c["correct"], _text(c, "explanation", at)))
    n_correct = sum(c.correct for c in choices)
    if kind == "single" and n_correct != 1:
        raise QuizError(f"{where}: a single-choice question needs exactly one correct choice, has {n_correct}")
    if kind == "multiple" and n_correct < 1:
        raise QuizError(f"{where}: a multiple-choice question needs at least one correct choice")
    return tuple(choices)


def _question(raw: Any, number: int, key: str) -> Question:
    where = f"{key} question {number}"
    if not isinstance(raw, dict):
        raise QuizError(f"{where}: must be an object")
    kind = raw.get("type")
    if kind not in TYPES:
        raise QuizError(f"{where}: 'type' must be one of {sorted(TYPES)}, got {kind!r}")
    text = _text(raw, "question", where)
    if kind != "numeric":
        return Question(number, kind, text, choices=_choices(raw, kind, where))
    answer, tol = raw.get("answer"), raw.get("tolerance")
    if isinstance(answer, bool) or not isinstance(answer, (int, float)) or not math.isfinite(answer):
        raise QuizError(f"{where}: a numeric question needs a finite 'answer'")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol > 0:
        raise QuizError(f"{where}: a numeric question needs a positive 'tolerance'")
    compute = raw.get("compute")
    if compute is not None and not isinstance(compute, str):
        raise QuizError(f"{where}: 'compute' must be a Python expression (a string)")
    return Question(number, kind, text, answer=float(answer), tolerance=float(tol), compute=compute,
                    explanation=_text(raw, "explanation", where))


def load(chapter: int | str, folder: str | Path | None = None) -> Quiz:
    """The validated quiz of ``chapter`` (``4`` or ``"ch04"``) from ``folder`` (default: the package's)."""
    key = _key(chapter)
    path = Path(folder or QUIZ_DIR) / f"{key}.json"
    if not path.is_file():
        have = ", ".join(available(folder)) or "none"
        raise QuizError(f"no quiz for {key} ({path} does not exist); quizzes: {have}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise QuizError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(raw, dict) or raw.get("chapter") != int(key[2:]):
        raise QuizError(f"{path}: 'chapter' must be {int(key[2:])}")
    questions = raw.get("questions")
    if not isinstance(questions, list) or not questions:
        raise QuizError(f"{path}: 'questions' must be a non-empty list")
    return Quiz(key, raw["chapter"], _text(raw, "title", str(path)),
                tuple(_question(q, i, key) for i, q in enumerate(questions, 1)))


def available(folder: str | Path | None = None) -> list[str]:
    """The chapter keys that have a quiz, in order."""
    return sorted(p.stem for p in Path(folder or QUIZ_DIR).glob("ch[0-9][0-9].json"))


def computed(question: Question) -> float:
    """The value of a numeric question's ``compute`` expression (``math`` only, no builtins)."""
    if question.compute is None:
        raise QuizError(f"question {question.number} has no 'compute' expression")
    return float(eval(question.compute, {"__builtins__": {}, "math": math}, {}))  # noqa: S307 (our own files)


# --------------------------------------------------------------------------- grading


def _letters(value: Any, question: Question) -> set[str]:
    """A reader's choice(s) as a set of valid letters; a clear error for anything else."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple, set)) or not items:
        raise QuizError(f"第 {question.number} 题：请用字母作答，例如 \"B\" 或 [\"A\", \"C\"]，而不是 {value!r}")
    valid = LETTERS[:len(question.choices)]
    letters = set()
    for item in items:
        if not isinstance(item, str) or item.strip().upper() not in valid:
            raise QuizError(f"第 {question.number} 题：选项只能是 {', '.join(valid)}，收到 {item!r}")
        letters.add(item.strip().upper())
    if question.type == "single" and len(letters) != 1:
        raise QuizError(f"第 {question.number} 题是单选题：请只选一个字母")
    return letters


def grade(question: Question, value: Any) -> tuple[bool, list[str]]:
    """``(right, lines)`` for one answer: whether it is right, and what to tell the reader."""
    if question.type == "numeric":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise QuizError(f"第 {question.number} 题：请给出一个数，而不是 {value!r}")
        right = abs(value - question.answer) <= question.tolerance
        return right, ([question.explanation] if right else
                       [f"{value:g} 不对（允许误差 ±{question.tolerance:g}）；再算一遍。"])
    picked = _letters(value, question)
    lines = [f"{letter}：{question.choices[LETTERS.index(letter)].explanation}" for letter in sorted(picked)]
    right = picked == question.correct_letters
    missing = len(question.correct_letters - picked)
    if not right and missing and not picked - question.correct_letters:
        lines.append(f"还漏了 {missing} 个正确选项。")
    return right, lines


def check(chapter: int | str, answers: Mapping[int, Any], folder: str | Path | None = None) -> dict:
    """Grade ``answers`` (``{question number: "B" | ["A", "C"] | number}``) and print the feedback.

    Returns ``{"right": k, "answered": m, "total": n}``. Unknown question numbers raise
    :class:`QuizError`; unanswered questions are listed, not counted as wrong.
    """
    quiz = load(chapter, folder)
    if not isinstance(answers, Mapping):
        raise QuizError(f"answers must be a dict {{题号: 答案}}, got {type(answers).__name__}")
    unknown = [k for k in answers if not isinstance(k, int) or not 1 <= k <= len(quiz.questions)]
    if unknown:
        raise QuizError(f"{quiz.key} 只有第 1–{len(quiz.questions)} 题，没有 {unknown}")
    right = 0
    for q in quiz.questions:
        if q.number not in answers:
            continue
        ok, lines = grade(q, answers[q.number])
        right += ok
        print(f"{'✅' if ok else '❌'} 第 {q.number} 题" + ("" if ok else "：还不对"))
        for line in lines:
            print(f"   {line}")
    missing = [q.number for q in quiz.questions if q.number not in answers]
    print(f"{quiz.key}：答对 {right} / {len(answers)} 题" + (f"；未作答：{missing}" if missing else ""))
    return {"right": right, "answered": len(answers), "total": len(quiz.questions)}


# --------------------------------------------------------------------------- the book's page


def _indent(text: str) -> str:
    return text.replace("\n", "\n  ")


def render_markdown(chapter: int | str, folder: str | Path | None = None, answers: bool = True) -> str:
    """The quiz as a MyST page; ``answers=False`` leaves out every answer and explanation (students)."""
    quiz = load(chapter, folder)
    example = {q.number: ("B" if q.type == "single" else ["A", "C"] if q.type == "multiple" else 0.5)
               for q in quiz.questions[:3]}
    out = [f"# 第 {quiz.chapter} 章 测验：{quiz.title}", "",
           f"共 {len(quiz.questions)} 题，对应[第 {quiz.chapter} 章](../{_chapter_file(quiz.chapter)})。"
           + ("每个选项都附有解析：答错时先读你所选选项的解析，再回到正文。" if answers else "")
           + "在 notebook 里自测（`check` 只说对错和你所选选项的解析，不直接给出答案）：", "",
           "```python", "from ftbook import quiz", "",
           f"quiz.check({quiz.key!r}, {example!r})  # {{题号: 答案}}：单选给一个字母，多选给字母列表，数值题给一个数", "```", ""]
    for q in quiz.questions:
        out += [f"## 第 {q.number} 题（{TYPES[q.type]}）", "", q.question, ""]
        out += [f"- **{LETTERS[i]}**. {_indent(c.text)}" for i, c in enumerate(q.choices)]
        if not answers:
            out.append("")
            continue
        out += ["", ":::{admonition} 答案与解析", ":class: dropdown", ""]
        if q.type == "numeric":
            out += [f"**答案：{q.answer:g}**（允许误差 ±{q.tolerance:g}）", "", q.explanation]
        else:
            out += [f"**答案：{'、'.join(sorted(q.correct_letters))}**", ""]
            out += [f"- {'✅' if c.correct else '❌'} **{LETTERS[i]}**：{_indent(c.explanation)}"
                    for i, c in enumerate(q.choices)]
        out += [":::", ""]
    return "\n".join(out).rstrip() + "\n"


def _chapter_file(number: int) -> str:
    root = PAGE_DIR.parent
    found = sorted(root.glob(f"{number:02d}_*.ipynb"))
    return found[0].stem + ".ipynb" if found else ""


def render_all(folder: str | Path | None = None, pages: str | Path | None = None) -> list[Path]:
    """Write ``chapters/quizzes/chNN.md`` for every quiz; returns the paths written."""
    dest = Path(pages or PAGE_DIR)
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for key in available(folder):
        path = dest / f"{key}.md"
        path.write_text(render_markdown(key, folder), encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m ftbook quiz", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("check", help="validate every quiz (and each numeric question's compute)")
    sub.add_parser("render", help="write chapters/quizzes/chNN.md from ftbook/quizzes/chNN.json")
    args = parser.parse_args(argv)
    if args.cmd == "render":
        for path in render_all():
            print(f"wrote {path}")
        return 0
    bad = 0
    for key in available():
        quiz = load(key)
        for q in quiz.questions:
            if q.compute is not None and abs(computed(q) - q.answer) > q.tolerance:
                print(f"{key} question {q.number}: answer {q.answer} but compute gives {computed(q)}")
                bad += 1
        print(f"{key}: {len(quiz.questions)} questions ok")
    return 1 if bad else 0
