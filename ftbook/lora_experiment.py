"""LoRA against full fine-tuning on the Chinese and English classification tracks.

Taught in chapter 15 (chapters/15_lora.ipynb), "LoRA：参数高效微调".

:func:`lora_vs_full` fine-tunes each track's base model in two ways:

* ``chinese``: the profile's Chinese BERT (tiny: the book's shipped 4.5M-parameter model, see
  :func:`ftbook.pretrain.pretrained_chinese_bert`) on the review sentiment track (2 labels);
* ``english``: the profile's English model (tiny: the packaged MiniLM, see
  :func:`ftbook.models.model_source`) on the BBC News topics (5 labels);

and in each, the arms

* ``full``: every parameter trained;
* ``lora r=...``: :func:`ftbook.lora.apply_lora` on the attention ``query`` and ``value`` linears
  (``alpha = 2 r``, so ``alpha / r`` is the same for every rank); the layers the checkpoint does
  not contain (the new classifier, and the pooler when the base model was pre-trained without
  one, as the book's Chinese BERT was) are trained in full (``modules_to_save``).

Every run is :func:`ftbook.training.train`, one torch thread, in :func:`ftbook.workers.run_all`.
Each arm's learning rate is chosen on the validation split over a grid (LoRA's grid is higher:
only a few, freshly initialised parameters move), with the first seed; then every other seed runs
at the chosen rate, and only then is the test subset read, once per chosen run. The chosen run of
the first seed is kept on disk between the two phases (its trainable tensors), so it is scored,
not trained again. A TF-IDF + logistic regression row per track
(:func:`ftbook.baselines.baseline_report`, trained on the same examples, scored on the same test
subset) is the classical reference.

What each run measures (:func:`train_run`): validation accuracy every ``eval_every`` steps (the
curve that shows whether training has converged), the final validation (and, for chosen runs, test)
accuracy, seconds per optimizer step (the training loop's own clock minus the time spent in those
evaluations), the trainable parameters, the bytes of a real AdamW's state for them (measured after
one step, next to the :func:`adam_state_bytes` formula), and the peak resident memory of the
process while the model is loaded and trained (:func:`peak_rss`).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Mapping, Sequence

from .config import Profile, get_profile, register_sizes

register_sizes(
    "lora_experiment",
    tiny={
        "tracks": ("chinese", "english"),
        "train_samples": 2000,  # stratified subset (Chinese: of 13,810 reviews; English: all 1,717 articles)
        "val_samples": 250,  # the first examples of the validation split (lr choice; English has 189)
        "test_samples": 500,  # the first examples of the test split (read once per chosen run; English has 221)
        # a number, or one per track: a BBC article's first 32 tokens are its headline and the start
        # of its first sentence; MiniLM (22.7M parameters) costs ~5x the Chinese BERT per token
        "max_length": {"chinese": 64, "english": 32},
        "batch_size": 16,
        "eval_batch_size": 32,
        "max_steps": {"chinese": 250, "english": 150},  # 2.0 and 1.4 epochs of the training examples
        "eval_every": {"chinese": 50, "english": 25},  # the validation curve of every run (convergence)
        "epochs": 10,  # an upper bound; max_steps ends the runs first
        "ranks": (1, 4, 16),
        "full_lrs": (1e-4, 3e-4),
        "lora_lrs": (1e-3, 3e-3),
        "seeds": (0, 1, 2),
    },
    full={
        "tracks": ("chinese", "english"),
        "train_samples": None,
        "val_samples": None,
        "test_samples": None,
        "max_length": 256,
        "batch_size": 32,
        "eval_batch_size": 128,
        "max_steps": None,
        "eval_every": 500,
        "epochs": 2,
        "ranks": (1, 4, 16),
        "full_lrs": (2e-5, 5e-5),
        "lora_lrs": (3e-4, 1e-3),
        "seeds": (0, 1, 2),
    },
)

TARGETS = ("query", "value")
TRACKS = ("chinese", "english")
PER_TRACK = ("max_length", "max_steps", "eval_every")  # sizes that may differ between the tracks


# --------------------------------------------------------------------------- measuring


def adam_state_bytes(model) -> int:
    """Bytes AdamW keeps in ``optimizer.state`` for ``model``'s trainable parameters.

    Per trainable tensor ``p``: ``exp_avg`` and ``exp_avg_sq`` (each like ``p``) and a 1-element
    float32 ``step`` tensor (PyTorch's default, non-fused AdamW).
    """
    total = 0
    for p in model.parameters():
        if p.requires_grad:
            total += 2 * p.numel() * p.element_size() + 4
    return total


def measured_state_bytes(optimizer) -> int:
    """Sum of the bytes of every tensor in ``optimizer.state`` (what :func:`adam_state_bytes` predicts)."""
    import torch

    return sum(v.numel() * v.element_size() for s in optimizer.state.values()
               for v in s.values() if isinstance(v, torch.Tensor))


def _proc_status_kb(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_rss() -> int | None:
    """Free what the allocator can, reset the kernel's peak-RSS mark of this process; its RSS now (bytes).

    Linux only (``/proc/self/clear_refs``, value 5, resets ``VmHWM`` to the current RSS); elsewhere
    ``None`` and :func:`peak_rss` reports the process's lifetime peak instead.
    """
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # return freed heap pages to the OS (glibc)
    except (OSError, AttributeError):
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    rss = _proc_status_kb("VmRSS")
    return None if rss is None else rss * 1024


def peak_rss() -> tuple[int, str]:
    """``(bytes, how)``: ``VmHWM`` (peak since :func:`reset_peak_rss`) where Linux has it, else ``ru_maxrss``."""
    hwm = _proc_status_kb("VmHWM")
    if hwm is not None:
        return hwm * 1024, "VmHWM"
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (peak if sys.platform == "darwin" else peak * 1024), "ru_maxrss (process lifetime)"


# --------------------------------------------------------------------------- models and data


def make_model(folder, method: str, r: int | None = None, seed: int = 0, num_labels: int = 2):
    """A ``BertForSequenceClassification`` from ``folder``; LoRA on query/value if ``method == "lora"``.

    With LoRA, every module the checkpoint did not provide (``classifier``; ``pooler`` for a model
    pre-trained without one) is trained in full: a frozen random layer would be no fair start.
    """
    import torch
    from transformers import BertForSequenceClassification

    from .lora import apply_lora
    from .resources import quiet_load

    if method not in ("full", "lora"):
        raise ValueError(f"method must be 'full' or 'lora', got {method!r}")
    if method == "lora" and r is None:
        raise ValueError("method 'lora' needs a rank r")
    if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 2:
        raise ValueError(f"num_labels must be an int >= 2, got {num_labels!r}")
    torch.manual_seed(seed)  # the new classifier head (and LoRA's A) depend on the seed
    model, info = quiet_load(lambda: BertForSequenceClassification.from_pretrained(
        folder, num_labels=num_labels, output_loading_info=True))
    if method == "lora":
        apply_lora(model, r, 2 * r, list(TARGETS), modules_to_save=new_modules(info["missing_keys"]))
    return model


def new_modules(missing_keys: Sequence[str]) -> list[str]:
    """The head modules a checkpoint lacked: always ``classifier``, plus ``pooler`` if its weights were missing."""
    saved = ["classifier"]
    if any(k.startswith(("bert.pooler.", "pooler.")) for k in missing_keys):
        saved.append("pooler")
    return saved


def for_track(s, track: str) -> SimpleNamespace:
    """``s`` with ``max_length``, ``max_steps`` and ``eval_every`` resolved for ``track`` (each a value or ``{track: value}``)."""
    out = dict(vars(s))
    for key in PER_TRACK:
        value = out[key]
        if isinstance(value, Mapping):
            if track not in value:
                raise KeyError(f"sizes {key!r} has no value for track {track!r} (has {sorted(value)})")
            out[key] = value[track]
    return SimpleNamespace(**out)


def _check_sizes(s) -> None:
    if not s.tracks or any(t not in TRACKS for t in s.tracks):
        raise ValueError(f"tracks must be a non-empty subset of {TRACKS}, got {s.tracks!r}")
    if not s.ranks or any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in s.ranks):
        raise ValueError(f"ranks must be positive ints, got {s.ranks!r}")
    for name in ("full_lrs", "lora_lrs", "seeds"):
        if not getattr(s, name):
            raise ValueError(f"{name} must not be empty")
    if len(set(s.seeds)) != len(s.seeds):
        raise ValueError(f"seeds must be distinct, got {s.seeds!r}")
    for track in s.tracks:
        every = for_track(s, track).eval_every
        if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
            raise ValueError(f"eval_every must be a positive int or None, got {every!r}")


def _subset(split, n: int | None):
    return split if n is None else split.select(range(min(n, len(split))))


def track_source(track: str, prof: Profile) -> tuple[str, object]:
    """``(model folder, DatasetDict)`` of a track."""
    from . import resources
    from .models import model_source

    if track not in TRACKS:
        raise ValueError(f"track must be one of {TRACKS}, got {track!r}")
    if track == "chinese":
        from .pretrain import pretrained_chinese_bert

        return str(pretrained_chinese_bert(prof)), resources.chinese_reviews(prof)
    return model_source("english", prof), resources.english_news(prof)


def load_data(track: str, prof: Profile, s) -> dict:
    """One track's inputs: ``folder``, ``num_labels``, Encoded ``train`` / ``val`` / ``test`` and ``train_indices``."""
    from transformers import AutoTokenizer

    from . import resources
    from .baselines import label_budget_indices
    from .data import encode, no_progress_bars

    s = for_track(s, track)
    folder, ds = track_source(track, prof)
    tok = resources.from_pretrained(AutoTokenizer, folder)
    labels = ds["train"]["label"]
    n = None if s.train_samples is None else min(s.train_samples, len(labels))
    idx = label_budget_indices(labels, n, seed=0)
    num_labels = ds["train"].features["label"].num_classes
    splits = [ds["train"].select(idx), _subset(ds["validation"], s.val_samples), _subset(ds["test"], s.test_samples)]
    with no_progress_bars():  # no "Map" bars on the chapter's page
        enc = [encode(sp["text"], sp["label"], tok, s.max_length, num_labels=num_labels) for sp in splits]
    return {"folder": folder, "num_labels": num_labels, "train": enc[0], "val": enc[1], "test": enc[2],
            "train_indices": idx, "train_available": len(labels)}


# --------------------------------------------------------------------------- one run (in a worker)


def _probe_state_bytes(model, data, s) -> int:
    """Bytes of a real AdamW's state (the training loop's ``create_optimizer``) after one step on ``model``."""
    import torch

    from .training import TrainConfig, create_optimizer, optimizer_step

    config = TrainConfig(lr=1e-9, max_steps=1, batch_size=s.batch_size, progress=False)
    opt, sched, scaler = create_optimizer(model, config, 1, torch.device("cpu"))
    model(**data.batch(range(min(len(data), s.batch_size)))).loss.backward()
    optimizer_step(model, opt, sched, scaler, config.max_grad_norm)
    return measured_state_bytes(opt)


def train_run(folder: str, num_labels: int, data: dict, s, method: str, r: int | None, lr: float, seed: int,
              *, test: bool = False, state_path: str | None = None, init_state: str | None = None) -> dict:
    """One training run (module level: :func:`ftbook.workers.run_all` calls it in a worker).

    ``data`` holds Encoded ``train`` / ``val`` (and ``test``). ``test=True`` scores the test split
    at the end (only for a run at an already chosen lr). ``state_path``: save the trainable tensors
    there. ``init_state``: no training, load those tensors and score (the chosen run of phase 1).
    """
    import torch

    from .lora import count_parameters
    from .training import TrainConfig, evaluate, train

    rss_start = reset_peak_rss()
    model = make_model(folder, method, r, seed, num_labels)
    curve, eval_seconds = [], 0.0
    if init_state is None:
        config = TrainConfig(lr=lr, max_steps=s.max_steps, epochs=s.epochs, batch_size=s.batch_size,
                             eval_batch_size=s.eval_batch_size, patience=None, load_best=False,
                             seed=seed, progress=False)

        def on_step(state):  # the validation curve, evaluated here: train() then keeps no weight copies
            nonlocal eval_seconds
            if s.eval_every and state.step % s.eval_every == 0:
                t0 = time.perf_counter()
                curve.append((state.step, evaluate(model, data["val"], s.eval_batch_size)["accuracy"]))
                model.train()
                eval_seconds += time.perf_counter() - t0

        result = train(model, data["train"], None, config, on_step=on_step)
        steps, seconds = result.steps, result.seconds - eval_seconds
    else:
        trained = torch.load(init_state, weights_only=True)
        with torch.no_grad():
            for n, p in model.named_parameters():
                if p.requires_grad:
                    p.copy_(trained[n])
        steps, seconds = 0, 0.0
    peak, how = peak_rss()
    out = {"method": method, "r": r, "lr": lr, "seed": seed, "steps": steps,
           "seconds_per_step": seconds / steps if steps else None, "val_curve": curve,
           "val_accuracy": evaluate(model, data["val"], s.eval_batch_size)["accuracy"],
           "peak_rss_bytes": peak if init_state is None else None, "rss_start_bytes": rss_start,
           "rss_method": how}
    if test:
        out["test_accuracy"] = evaluate(model, data["test"], s.eval_batch_size)["accuracy"]
    if state_path is not None:
        torch.save({n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}, state_path)
    out["trainable_params"], out["total_params"] = count_parameters(model)
    out["optimizer_state_formula_bytes"] = adam_state_bytes(model)
    if init_state is None and state_path is not None:  # once per grid run: a real optimizer's state
        out["optimizer_state_bytes"] = _probe_state_bytes(model, data["train"], s)
    return out


# --------------------------------------------------------------------------- the experiment


def arm_name(method: str, r: int | None) -> str:
    return "full" if method == "full" else f"lora r={r}"


def _arms(s) -> list[tuple[str, int | None]]:
    return [("full", None)] + [("lora", r) for r in s.ranks]


def _run_sorted(tasks: list, keys: list, workers, log) -> dict:
    """``run_all`` the tasks, the most expensive first (English before Chinese, full before LoRA)."""
    from .workers import run_all

    def cost(key):
        track, method, r = key[:3]
        return (track == "english", method == "full", r or 0)

    order = sorted(range(len(tasks)), key=lambda i: cost(keys[i]), reverse=True)
    names = [" ".join(str(x) for x in keys[i]) for i in order]
    results = run_all(train_run, [tasks[i] for i in order], workers=workers, names=names)
    return {keys[i]: res for i, res in zip(order, results)}


def _choose(grid_runs: dict, lrs: Sequence[float]) -> float:
    """The lr of the best validation accuracy (the first of the grid on a tie)."""
    return max(lrs, key=lambda lr: (grid_runs[lr]["val_accuracy"], -lrs.index(lr)))


def _summary(track: str, method: str, r, lrs, grid_runs: dict, chosen: float, runs: list[dict]) -> dict:
    """One arm's row: means and sample standard deviations over the seeds of the chosen lr."""
    def mean_std(key):
        xs = [run[key] for run in runs]
        return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)

    val_mean, val_std = mean_std("val_accuracy")
    test_mean, test_std = mean_std("test_accuracy")
    first = grid_runs[chosen]
    return {"track": track, "arm": arm_name(method, r), "method": method, "r": r, "lr": chosen,
            "lr_grid": {str(lr): grid_runs[lr]["val_accuracy"] for lr in lrs},
            "lr_curves": {str(lr): grid_runs[lr]["val_curve"] for lr in lrs},
            "seeds": [run["seed"] for run in runs], "runs": runs,
            "val_accuracies": [run["val_accuracy"] for run in runs],
            "test_accuracies": [run["test_accuracy"] for run in runs],
            "val_accuracy": val_mean, "val_std": val_std, "test_accuracy": test_mean, "test_std": test_std,
            "trainable_params": first["trainable_params"], "total_params": first["total_params"],
            "optimizer_state_bytes": first["optimizer_state_bytes"],
            "optimizer_state_formula_bytes": first["optimizer_state_formula_bytes"],
            "seconds_per_step": statistics.fmean(run["seconds_per_step"] for run in runs),
            "peak_rss_bytes": max(run["peak_rss_bytes"] for run in runs),
            "rss_start_bytes": max(run["rss_start_bytes"] or 0 for run in runs) or None,
            "rss_method": first["rss_method"], "steps": first["steps"]}


def run_experiment(inputs: dict, s, tmp: Path, *, workers: int | None = None,
                   log: Callable[[str], None] = print) -> dict:
    """Both phases for every track in ``inputs`` (``{track: load_data(...)}``); ``{track: [arm rows]}``.

    Phase 1: every lr of each arm's grid with the first seed (validation only; trainable tensors
    saved under ``tmp/states``). Phase 2: per arm, the chosen lr: the saved run is scored on the
    test subset, every other seed is trained and scored. ``tmp/states`` is removed at the end.
    """
    import shutil

    states = Path(tmp) / "states"
    states.mkdir(parents=True, exist_ok=True)
    grid_of = {"full": tuple(s.full_lrs), "lora": tuple(s.lora_lrs)}
    tasks, keys = [], []
    for track, d in inputs.items():
        payload, st = {"train": d["train"], "val": d["val"]}, for_track(s, track)
        for method, r in _arms(s):
            for lr in grid_of[method]:
                path = states / f"{track}-{method}-{r}-{lr:g}.pt"
                tasks.append(((d["folder"], d["num_labels"], payload, st, method, r, lr, s.seeds[0]),
                              {"state_path": str(path)}))
                keys.append((track, method, r, lr))
    grid = _run_sorted(tasks, keys, workers, log)
    for (track, method, r, lr), run in grid.items():
        log(f"[lora_experiment] {track} {arm_name(method, r)} lr={lr:g}: val accuracy {run['val_accuracy']:.3f}")
    chosen = {(t, m, r): _choose({lr: grid[(t, m, r, lr)] for lr in grid_of[m]}, grid_of[m])
              for t in inputs for m, r in _arms(s)}
    tasks, keys = [], []
    for (track, method, r), lr in chosen.items():
        d, st = inputs[track], for_track(s, track)
        payload = {"train": d["train"], "val": d["val"], "test": d["test"]}
        path = str(states / f"{track}-{method}-{r}-{lr:g}.pt")
        for seed in s.seeds:
            kwargs = {"test": True, "init_state": path} if seed == s.seeds[0] else {"test": True}
            tasks.append(((d["folder"], d["num_labels"], payload, st, method, r, lr, seed), kwargs))
            keys.append((track, method, r, lr, seed))
    final = _run_sorted(tasks, keys, workers, log)
    shutil.rmtree(states)
    rows = {track: [] for track in inputs}
    for (track, method, r), lr in chosen.items():
        runs = []
        for seed in s.seeds:
            run = dict(final[(track, method, r, lr, seed)])
            if seed == s.seeds[0]:  # training figures from the grid run, test from its scoring
                run = {**grid[(track, method, r, lr)], "test_accuracy": run["test_accuracy"]}
            runs.append(run)
        lrs = grid_of[method]
        rows[track].append(_summary(track, method, r, lrs, {x: grid[(track, method, r, x)] for x in lrs}, lr, runs))
    return rows


def baseline_row(track: str, prof: Profile, s, data: dict, log: Callable[[str], None] = print) -> dict:
    """TF-IDF + logistic regression on the same training examples, scored on the same test examples."""
    from .baselines import baseline_report

    limit = None if len(data["train_indices"]) == data["train_available"] else len(data["train_indices"])
    report = baseline_report(track, prof, train_limit=limit, seed=0, log=log)["tfidf_lr"]
    labels = data["test"].labels
    preds = report["test_predictions"][:len(labels)]  # the test examples the BERT runs are scored on
    test = sum(int(p == y) for p, y in zip(preds, labels)) / len(labels)
    return {"track": track, "arm": "tfidf_lr", "method": "tfidf_lr", "r": None, "lr": None,
            "params": report["params"], "val_accuracy": None, "val_std": None,  # its val: the whole split
            "val_accuracy_whole_split": report["val_accuracy"],
            "test_accuracy": test, "test_std": None, "train_limit": limit,
            "trainable_params": None, "total_params": None, "optimizer_state_bytes": None,
            "seconds_per_step": None, "peak_rss_bytes": None, "steps": None}


def lora_vs_full(profile: str | Profile | None = None, *, root: str | Path | None = None,
                 log: Callable[[str], None] = print) -> dict:
    """Full fine-tuning vs LoRA at each rank vs TF-IDF + LR on every track of the profile, cached.

    Returns ``{"tracks": {track: {"rows": [...], "data": {...}}}, "workers", "wall_seconds"}``: per
    track one row per arm (see :func:`_summary`: chosen ``lr``, ``lr_grid``, ``runs``, means and
    sample standard deviations of validation / test accuracy over the seeds, ``trainable_params``,
    ``optimizer_state_bytes`` (a real AdamW's, next to the formula's), ``seconds_per_step``,
    ``peak_rss_bytes``) and a last ``tfidf_lr`` row.
    """
    from . import baselines, data, lora, models, optim, resources, training
    from .checkpoints import cached, fingerprint
    from .workers import default_workers

    prof = get_profile(profile)
    s = prof.sizes("lora_experiment")
    _check_sizes(s)
    fp = fingerprint(sys.modules[__name__], lora, training, optim, data, resources, baselines, models,
                     profile=prof.name, sizes=vars(s), chinese_model=prof.chinese_model,
                     english_model=prof.english_model)

    def build(tmp: Path) -> None:
        t0 = time.perf_counter()
        inputs = {track: load_data(track, prof, s) for track in s.tracks}
        workers = default_workers()
        rows = run_experiment(inputs, s, tmp, workers=workers, log=log)
        out = {"tracks": {}, "workers": workers}
        for track, d in inputs.items():
            out["tracks"][track] = {
                "rows": rows[track] + [baseline_row(track, prof, s, d, log)],
                "data": {"train": len(d["train"]), "val": len(d["val"]), "test": len(d["test"]),
                         "num_labels": d["num_labels"], "model": Path(d["folder"]).name,
                         **{k: getattr(for_track(s, track), k) for k in PER_TRACK}}}
        out["wall_seconds"] = round(time.perf_counter() - t0, 1)
        (tmp / "results.json").write_text(json.dumps(out, indent=1), encoding="utf-8")

    folder = cached(f"lora-vs-full-{prof.name}", build, fp, root=root, log=log)
    return json.loads((folder / "results.json").read_text(encoding="utf-8"))


def results_table(result: dict, track: str):
    """A ``pandas.DataFrame`` for the chapter: one row per arm of ``track``, Chinese column names."""
    import pandas as pd

    if track not in result["tracks"]:
        raise KeyError(f"track {track!r} not in the result (has {sorted(result['tracks'])})")
    table = []
    for row in result["tracks"][track]["rows"]:
        mb = row["optimizer_state_bytes"]
        rss = row["peak_rss_bytes"]
        table.append({"方法": row["arm"], "学习率": row["lr"], "验证准确率": row["val_accuracy"],
                      "测试准确率": row["test_accuracy"], "测试 std": row["test_std"],
                      "可训练参数": row["trainable_params"],
                      "优化器状态 (MB)": None if mb is None else mb / 2**20,
                      "峰值 RSS (MB)": None if rss is None else rss / 2**20,
                      "秒/步": row["seconds_per_step"]})
    return pd.DataFrame(table)
