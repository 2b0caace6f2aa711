"""Each checker of chapter 16 accepts the right answer (computed from the code) and rejects wrong ones."""

from ftbook import instruct
from ftbook.exercises import check
from ftbook.lora import count_parameters


def test_q1_accepts_the_labels_of_sft_example():
    right = lambda p, a: [-100] * len(p) + list(a)  # noqa: E731 - what sft_example does to the token ids
    assert check("ch16.q1", right, quiet=True)
    assert not check("ch16.q1", lambda p, a: list(a) + [-100] * len(p), quiet=True)
    assert not check("ch16.q1", lambda p, a: (list(p) + list(a))[1:] + [-100], quiet=True)
    assert not check("ch16.q1", lambda p, a: 1 / 0, quiet=True)
    assert not check("ch16.q1", None, quiet=True)


def test_q2_matches_apply_lora_on_smollm2():
    from ftbook.resources import small_llm

    model, _ = small_llm("tiny")
    instruct.add_adapter(model, instruct.get_profile("tiny").sizes("instruct"))
    right = count_parameters(model)[0]
    assert check("ch16.q2", right, quiet=True)
    assert not check("ch16.q2", right // 30, quiet=True)
    assert not check("ch16.q2", 30 * 8 * 1152 * 4, quiet=True)
    assert not check("ch16.q2", "921600", quiet=True)


def test_q3_agrees_with_the_chapters_exact_match():
    def right(pred, gold):
        return instruct.normalise(pred, "persons") == instruct.normalise(gold, "persons")

    assert check("ch16.q3", right, quiet=True)
    assert not check("ch16.q3", lambda p, g: p == g, quiet=True)
    assert not check("ch16.q3", lambda p, g: set(p.split("、")) <= set(g.split("、")), quiet=True)
    assert not check("ch16.q3", lambda p, g: "yes", quiet=True)
