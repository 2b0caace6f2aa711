"""Classical baselines on both tracks at every label budget: validation / test accuracy, fit time.

    python benchmarks/baselines.py                    # tiny profile, budgets 100 300 1000 all
    python benchmarks/baselines.py --tracks english --budgets 100 all --seed 1
    FTBOOK_PROFILE=full python benchmarks/baselines.py

Each row is :func:`ftbook.baselines.baseline_report`: the hyper-parameters are chosen on the
validation split, and the test split is read once, at the end. Reports are cached
(``$FTBOOK_CACHE``), so a second run prints the same table at once, with the fit times measured
when the report was built. ``fit s`` is one fit of the chosen pipeline from scratch (TF-IDF +
classifier); ``tune s`` the whole grid (naive Bayes reuses the TF-IDF features fitted for
logistic regression, so its grid costs little more). ``major.`` is the majority class on the
test split. Timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ftbook.baselines import BASELINES, TRACKS, baseline_report  # noqa: E402
from ftbook.config import get_profile  # noqa: E402


def _budget(text: str) -> int | None:
    if text == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"budget must be a positive int or 'all', got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"budget must be a positive int or 'all', got {text!r}")
    return value


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default=None, help="tiny or full (default: $FTBOOK_PROFILE, else tiny)")
    parser.add_argument("--tracks", nargs="+", choices=list(TRACKS), default=list(TRACKS))
    parser.add_argument("--budgets", nargs="+", type=_budget, default=None,
                        help="training-label budgets, ints or 'all' (default: the profile's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the stratified budget subsets")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    prof = get_profile(args.profile)
    budgets = args.budgets or list(prof.sizes("baselines").budgets)
    header = f"{'track':8} {'baseline':12} {'labels':>6} {'params':30} {'val':>6} {'test':>6} " \
             f"{'major.':>6} {'fit s':>6} {'tune s':>7}"
    print(f"profile {prof.name}, seed {args.seed}")
    print(header)
    print("-" * len(header))
    for track in args.tracks:
        for budget in budgets:
            report = baseline_report(track, prof, train_limit=budget, seed=args.seed)
            for name in BASELINES:
                row = report[name]
                params = ", ".join(f"{k}={tuple(v) if isinstance(v, list) else v}"
                                   for k, v in row["params"].items())
                print(f"{track:8} {name:12} {report['sizes']['train']:>6} {params:30} "
                      f"{row['val_accuracy']:6.3f} {row['test_accuracy']:6.3f} "
                      f"{report['majority']['test']:6.3f} {row['fit_seconds']:6.2f} {row['tune_seconds']:7.2f}")


if __name__ == "__main__":
    main()
