"""Why pre-train? Fine-tuning on a few label budgets, pre-trained vs random init vs TF-IDF + LR.

Taught in chapter 9 (``chapters/09_pretraining.ipynb``, "为什么要预训练？用实验回答"). The design
makes every choice on validation and reads the test split once per reported model:

* Budgets: 100 / 300 / 1000 labels (``tiny``; ``full`` adds all labels). For each budget and
  seed, one stratified subset of the review training split
  (:func:`ftbook.baselines.label_budget_indices`) is shared by the three arms.
* The two BERT arms start from the book's shipped Chinese BERT or from a random initialisation of
  the same architecture and vocabulary. For each arm and budget the learning rate is picked from
  ``lrs`` by validation accuracy with seed 0 (:func:`choose`); the number of steps by early stopping
  on validation (evaluation every ``max_steps // evals`` steps, ``patience``, best weights kept).
  The other seeds then run at the chosen rate.
* The third arm is TF-IDF + logistic regression, tuned on validation
  (:func:`ftbook.baselines.baseline_report`).
* Only the chosen runs are scored on the test split: mean and standard deviation over the seeds.

Each run writes its result (and its best weights) into the run folder as it finishes, so an
interrupted experiment resumes where it stopped (:func:`run_experiment`). The whole ``tiny``
experiment takes about an hour on 2 cores, so the book ran it once
(``python -m ftbook label-budgets --out DIR --ship``) and ships its result in
``ftbook/results/label-budgets-tiny`` with the command, wall time, machine and the digests of the
code that produced it. :func:`label_budget_experiment` returns that result when its settings,
checkpoint and data match the current ones, otherwise it runs the experiment into the cache.
Chapter 9 re-runs one cell of it live (:func:`budget_run`) and compares it with the shipped figure.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from .config import Profile, get_profile, register_sizes

register_sizes(
    "label_budgets",
    tiny={
        # per budget (None would be all 13,810 labels: ~20 min per run here, so the all-labels row of
        # chapter 9 is chapter 10's fine-tune, one seed)
        "budgets": [100, 300, 1000], "max_steps": [120, 200, 300],
        "lrs": [1e-4, 3e-4, 1e-3], "seeds": [0, 1, 2], "evals": 6, "patience": 2,
        "batch_size": 32, "max_length": 128, "val_max": 800, "group_by_length": True,
    },
    full={  # bert-base-chinese: the BERT paper's fine-tuning grid (2e-5..5e-5), batch 32
        "budgets": [100, 300, 1000, None], "max_steps": [200, 300, 600, 2000],
        "lrs": [2e-5, 3e-5, 5e-5], "seeds": [0, 1, 2], "evals": 8, "patience": 3,
        "batch_size": 32, "max_length": 256, "val_max": None, "group_by_length": True,
    },
)

ARMS = ("pretrained", "random")
SHIPPED_ROOT = Path(__file__).resolve().parent / "results"
COMMAND = "python -m ftbook label-budgets --out /tmp/label-budgets --ship"
RESULT_FILES = ("results.json",)


# ----------------------------------------------------------------------------------------------
# One run: fine-tune with early stopping on validation
# ----------------------------------------------------------------------------------------------
def _classifier(checkpoint: str | Path, pretrained: bool):
    from transformers import BertConfig, BertForSequenceClassification

    if pretrained:
        from .resources import quiet_load  # the MLM head is dropped, the new classifier is "missing"

        return quiet_load(lambda: BertForSequenceClassification.from_pretrained(str(checkpoint), num_labels=2))
    return BertForSequenceClassification(BertConfig.from_pretrained(str(checkpoint), num_labels=2))


def _encode(checkpoint, texts, labels, max_length: int):
    from .data import encode
    from .data import no_progress_bars
    from .vocab import char_tokenizer

    tok = char_tokenizer(Path(checkpoint) / "vocab.txt", model_max_length=max_length)
    with no_progress_bars():  # run in a worker, the bars would land in the notebook's output
        return encode(list(texts), list(labels), tok, max_length, num_labels=2)


def budget_run(checkpoint: str | Path, train_texts: Sequence[str], train_labels: Sequence[int],
               val_texts: Sequence[str], val_labels: Sequence[int], *, pretrained: bool, lr: float,
               max_steps: int, evals: int, patience: int, batch_size: int = 32, max_length: int = 128,
               seed: int = 0, group_by_length: bool = True, weights_out: str | Path | None = None) -> dict:
    """Fine-tune one classifier for at most ``max_steps`` steps, evaluating on validation
    ``evals`` times and stopping after ``patience`` evaluations without improvement; keep the
    best weights (written to ``weights_out`` as safetensors when given).

    Returns ``{"val_accuracy", "best_step", "steps", "seconds", "history"}``; the test split is
    not touched here (:func:`test_accuracy` scores chosen runs only).
    """
    import torch

    from .training import TrainConfig, steps_per_epoch, train

    if len(train_texts) != len(train_labels) or len(val_texts) != len(val_labels):
        raise ValueError("texts and labels differ in length")
    if not train_texts or not val_texts:
        raise ValueError("budget_run needs training and validation texts")
    if evals < 1 or max_steps < evals:
        raise ValueError(f"need 1 <= evals <= max_steps, got evals={evals}, max_steps={max_steps}")
    train_data = _encode(checkpoint, train_texts, train_labels, max_length)
    val_data = _encode(checkpoint, val_texts, val_labels, max_length)
    torch.manual_seed(seed)
    model = _classifier(checkpoint, pretrained)
    config = TrainConfig(lr=lr, max_steps=max_steps, batch_size=min(batch_size, len(train_data)),
                         eval_every=max_steps // evals, patience=patience, load_best=True, seed=seed,
                         group_by_length=group_by_length, progress=False)
    config.epochs = math.ceil(max_steps / steps_per_epoch(len(train_data), config))
    result = train(model, train_data, val_data, config)
    if weights_out is not None:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights_out))
    return {"val_accuracy": round(result.best["val_accuracy"], 4), "best_step": result.best["step"],
            "steps": result.steps, "seconds": round(result.seconds, 1),
            "history": [{"step": h["step"], "val_accuracy": round(h["val_accuracy"], 4)} for h in result.history]}


def test_accuracy(checkpoint: str | Path, weights: str | Path, texts: Sequence[str], labels: Sequence[int],
                  max_length: int = 128) -> float:
    """Accuracy on ``texts`` of the classifier whose weights :func:`budget_run` wrote."""
    from safetensors.torch import load_file

    from .training import evaluate

    model = _classifier(checkpoint, pretrained=False)
    model.load_state_dict(load_file(str(weights)))
    return round(evaluate(model, _encode(checkpoint, texts, labels, max_length), batch_size=128)["accuracy"], 4)


def _run_to_file(out_file: str, *args, **kwargs) -> dict:
    """:func:`budget_run` in a worker, its result written (atomically) as soon as it is done."""
    result = budget_run(*args, weights_out=out_file.replace(".json", ".safetensors"), **kwargs)
    tmp = Path(out_file + ".tmp")
    tmp.write_text(json.dumps(result), encoding="utf-8")
    tmp.replace(out_file)
    return result


# ----------------------------------------------------------------------------------------------
# The experiment
# ----------------------------------------------------------------------------------------------
def splits(prof: Profile, sizes) -> dict:
    """``{"train", "validation", "test"}`` -> ``(texts, labels)`` of the review data: the whole
    train split (budgets are drawn from it), the first ``val_max`` validation reviews (tuning and
    early stopping), the whole test split (read once per chosen run)."""
    from .resources import chinese_reviews

    ds = chinese_reviews(prof)
    val = ds["validation"]
    n_val = len(val) if sizes.val_max is None else min(len(val), sizes.val_max)
    return {"train": (list(ds["train"]["text"]), list(ds["train"]["label"])),
            "validation": (list(val["text"][:n_val]), list(val["label"][:n_val])),
            "test": (list(ds["test"]["text"]), list(ds["test"]["label"]))}


def settings(profile: str | Profile | None = None) -> dict:
    """What decides the result: the sizes, the checkpoint's SHA-256 and the data's digest (the
    shipped result is used only when these equal the current ones)."""
    from .checkpoints import sha256_file
    from .corpus import corpus_digest
    from .pretrain import pretrained_chinese_bert

    prof = get_profile(profile)
    sizes = prof.sizes("label_budgets")
    ckpt = Path(pretrained_chinese_bert(prof))
    manifest = ckpt / "MANIFEST.json"  # the shipped model's; the hub's snapshot (full) has none: hash the file
    checkpoint = (json.loads(manifest.read_text(encoding="utf-8"))["files"]["model.safetensors"]["sha256"]
                  if manifest.is_file() else sha256_file(ckpt / "model.safetensors"))
    data = splits(prof, sizes)
    flat = [t for split in data.values() for t in split[0]] + [str(y) for split in data.values() for y in split[1]]
    return {"profile": prof.name, "sizes": vars(sizes), "data": corpus_digest(flat),
            "checkpoint": checkpoint, "threads": 1}


def _key(budget, arm: str, lr: float, seed: int) -> str:
    return f"b{'all' if budget is None else budget}-{arm}-lr{lr:g}-s{seed}"


def choose(tuning: dict[float, float]) -> float:
    """The learning rate with the best validation accuracy (the smaller rate on a tie)."""
    if not tuning:
        raise ValueError("no tuning runs to choose from")
    return min(tuning, key=lambda lr: (-tuning[lr], lr))


def _run_phase(jobs: list[tuple[str, dict]], ckpt, data, sizes, runs_dir: Path, workers, log) -> dict[str, dict]:
    """Run the ``(key, spec)`` jobs whose result file is missing; return every job's result."""
    from .baselines import label_budget_indices
    from .workers import run_all

    todo, names = [], []
    for key, spec in jobs:
        if (runs_dir / f"{key}.json").is_file():
            continue
        texts, labels = data["train"]
        idx = label_budget_indices(labels, spec["budget"], spec["seed"])
        args = (str(runs_dir / f"{key}.json"), str(ckpt), [texts[i] for i in idx], [labels[i] for i in idx],
                *data["validation"])
        kwargs = dict(pretrained=spec["arm"] == "pretrained", lr=spec["lr"], max_steps=spec["max_steps"],
                      evals=sizes.evals, patience=sizes.patience, batch_size=sizes.batch_size,
                      max_length=sizes.max_length, seed=spec["seed"], group_by_length=sizes.group_by_length)
        todo.append((args, kwargs))
        names.append(key)
    if todo:
        run_all(_run_to_file, todo, workers, log=log, names=names)
    return {key: json.loads((runs_dir / f"{key}.json").read_text(encoding="utf-8")) for key, _ in jobs}


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return round(mean, 4), round(std, 4)


def _check_out_dir(out: Path, now: dict) -> None:
    """``out`` is new, or holds runs of exactly these settings (then they are resumed)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "settings.json"
    if path.is_file():
        before = json.loads(path.read_text(encoding="utf-8"))
        if before != json.loads(json.dumps(now)):
            raise ValueError(f"{out} holds runs made with other settings ({path}); use another --out")
    else:
        path.write_text(json.dumps(now, indent=1), encoding="utf-8")


def bert_runs(ckpt, data, sizes, runs_dir: Path, workers, log) -> tuple[dict, dict, dict]:
    """Phase 1: every rate at the first seed; choose a rate per (budget, arm) on validation.
    Phase 2: the other seeds at the chosen rate. Phase 3: the test split, chosen runs only."""
    from .workers import run_all

    first, steps = sizes.seeds[0], dict(zip(map(str, sizes.budgets), sizes.max_steps))
    spec = lambda b, arm, lr, seed: (_key(b, arm, lr, seed), {"budget": b, "arm": arm, "lr": lr, "seed": seed,
                                                             "max_steps": steps[str(b)]})
    tuned = _run_phase([spec(b, arm, lr, first) for b in sizes.budgets for arm in ARMS for lr in sizes.lrs],
                       ckpt, data, sizes, runs_dir, workers, log)
    chosen = {(b, arm): choose({lr: tuned[_key(b, arm, lr, first)]["val_accuracy"] for lr in sizes.lrs})
              for b in sizes.budgets for arm in ARMS}
    final = [spec(b, arm, chosen[(b, arm)], seed) for b in sizes.budgets for arm in ARMS for seed in sizes.seeds]
    runs = {**tuned, **_run_phase(final, ckpt, data, sizes, runs_dir, workers, log)}
    keys = [key for key, _ in final]
    accs = run_all(test_accuracy, [((str(ckpt), str(runs_dir / f"{k}.safetensors"), *data["test"], sizes.max_length), {})
                                   for k in keys], workers, names=[f"test {k}" for k in keys])
    return runs, chosen, dict(zip(keys, accs))


def _rows(sizes, data, runs, chosen, tests, tfidf) -> list[dict]:
    rows = []
    for b in sizes.budgets:
        row = {"labels": len(data["train"][1]) if b is None else b, "runs": {}, "lr": {}, "best_steps": {},
               "tuning": {}}
        for arm in ARMS:
            lr = chosen[(b, arm)]
            keys = [_key(b, arm, lr, seed) for seed in sizes.seeds]
            row[arm], row[f"{arm}_std"] = _mean_std([tests[k] for k in keys])
            row["runs"][arm] = [tests[k] for k in keys]
            row["lr"][arm], row["best_steps"][arm] = lr, [runs[k]["best_step"] for k in keys]
            row["tuning"][arm] = {f"{x:g}": runs[_key(b, arm, x, sizes.seeds[0])]["val_accuracy"] for x in sizes.lrs}
        values = [tfidf[(b, seed)] for seed in sizes.seeds]
        row["tfidf_lr"], row["tfidf_lr_std"] = _mean_std(values)
        row["runs"]["tfidf_lr"] = values
        rows.append(row)
    return rows


def run_experiment(out_dir: str | Path, profile: str | Profile | None = None, *, workers: int | None = None,
                   log: Callable[[str], None] = print) -> dict:
    """Run (or resume) the whole experiment in ``out_dir``; write and return ``results.json``.

    ``out_dir/runs`` gets one JSON (and the best weights) per BERT run as it finishes; a second call
    with the same settings skips the runs already there. ``workers``: processes of
    :func:`ftbook.workers.run_all` (one thread each; ``None``: up to 2).
    """
    from . import baselines, data as data_module, optim, training, vocab
    from .checkpoints import fingerprint
    from .pretrain import _machine, pretrained_chinese_bert

    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive int or None, got {workers!r}")
    prof = get_profile(profile)
    sizes = prof.sizes("label_budgets")
    if len(sizes.max_steps) != len(sizes.budgets):
        raise ValueError(f"label_budgets sizes: {len(sizes.budgets)} budgets but {len(sizes.max_steps)} max_steps")
    out, t0, now = Path(out_dir), time.perf_counter(), settings(prof)
    _check_out_dir(out, now)
    (out / "runs").mkdir(exist_ok=True)
    ckpt, data = pretrained_chinese_bert(prof), splits(prof, sizes)
    runs, chosen, tests = bert_runs(ckpt, data, sizes, out / "runs", workers, log)
    tfidf = {(b, seed): baselines.baseline_report("chinese", prof, train_limit=b, seed=seed, log=log)
             ["tfidf_lr"]["test_accuracy"] for b in sizes.budgets for seed in sizes.seeds}
    n_test = len(data["test"][1])
    results = {
        "rows": _rows(sizes, data, runs, chosen, tests, tfidf), "n_val": len(data["validation"][1]),
        "n_test": n_test, "seeds": list(sizes.seeds), "lrs": list(sizes.lrs),
        "majority": round(max(sum(data["test"][1]), n_test - sum(data["test"][1])) / n_test, 4),
        "settings": now, "command": COMMAND, "machine": _machine(),
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "run_seconds": round(sum(r["seconds"] for r in runs.values()), 1),
        "code": fingerprint(sys.modules[__name__], training, optim, data_module, vocab, baselines)["code"],
    }
    (out / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    return results


# ----------------------------------------------------------------------------------------------
# The shipped result
# ----------------------------------------------------------------------------------------------
def shipped_dir(profile: str | Profile | None = None) -> Path:
    return SHIPPED_ROOT / f"label-budgets-{get_profile(profile).name}"


def ship(out_dir: str | Path, dest: str | Path | None = None) -> Path:
    """Copy a finished experiment's ``results.json`` into the package (``ftbook/results``)."""
    from .checkpoints import ship_folder

    record = json.loads((Path(out_dir) / "results.json").read_text(encoding="utf-8"))
    dest = Path(dest) if dest is not None else shipped_dir(record["settings"]["profile"])
    return ship_folder(out_dir, dest, RESULT_FILES, {"kind": "shipped-label-budgets", "command": record["command"],
                                                     "settings": record["settings"]})


def check_shipped(folder: str | Path) -> dict:
    """Verify a shipped result against its manifest (a missing or altered file: a clear error)."""
    from .checkpoints import check_shipped_folder

    return check_shipped_folder(folder, RESULT_FILES, "the label-budget experiment's result", COMMAND)


def label_budget_experiment(profile: str | Profile | None = None, *, root: str | Path | None = None,
                            log: Callable[[str], None] = print, workers: int | None = None,
                            shipped: str | Path | None = None) -> dict:
    """The experiment's results (see the module docstring): the shipped ones when they were made
    with the current settings, checkpoint and data (``"source": "shipped"``), else run into the
    cache (``"source": "computed"``; resumable in ``<cache>/label-budgets-<profile>-runs``).

    Returns ``{"rows": [{"labels", "pretrained", "pretrained_std", "random", "random_std",
    "tfidf_lr", "tfidf_lr_std", "runs", "lr", "best_steps", "tuning"}], "n_val", "n_test",
    "majority", "seeds", "lrs", "command", "machine", "wall_seconds", ...}``.
    """
    from . import baselines, data, optim, training, vocab
    from .checkpoints import cache_dir, cached, fingerprint

    prof = get_profile(profile)
    now = settings(prof)
    folder = Path(shipped) if shipped is not None else shipped_dir(prof)
    if (folder / "MANIFEST.json").is_file() or shipped is not None:
        manifest = check_shipped(folder)
        if manifest["fingerprint"].get("settings") == json.loads(json.dumps(now)):
            return {**json.loads((folder / "results.json").read_text(encoding="utf-8")), "source": "shipped"}
        log(f"[ftbook] {folder.name} was made with other settings than the current ones; "
            "running the experiment (about an hour on 2 cores for tiny)")
    base = Path(root) if root is not None else cache_dir()
    fp = fingerprint(sys.modules[__name__], training, optim, data, vocab, baselines, **now)

    def build(tmp: Path) -> None:
        runs = base / f"label-budgets-{prof.name}-runs"
        if (runs / "settings.json").is_file() and json.loads((runs / "settings.json").read_text()) != json.loads(
                json.dumps(now)):
            import shutil

            shutil.rmtree(runs)  # runs of other settings: not resumable
        run_experiment(runs, prof, workers=workers, log=log)
        (tmp / "results.json").write_bytes((base / f"label-budgets-{prof.name}-runs" / "results.json").read_bytes())

    out = cached(f"label-budgets-{prof.name}", build, fp, root=base, log=log)
    return {**json.loads((out / "results.json").read_text(encoding="utf-8")), "source": "computed"}
