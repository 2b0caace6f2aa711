"""Command line: ``python -m ftbook <command> ...``.

Commands (each lives in the module that teaches it):

* ``pretrain``  - chapter 9, :func:`pretrain_main` here (the run is :func:`ftbook.pretrain.train_chinese_bert`)
* ``pretrain-gpt`` - chapter 14, :func:`pretrain_gpt_main` here (the run is :func:`ftbook.causal_lm.train_chinese_gpt`)
* ``sft``       - chapter 16, :func:`sft_main` here (the run is :func:`ftbook.instruct.train_sft`)
* ``label-budgets`` - chapter 9, :func:`label_budgets_main` here (the experiment is :mod:`ftbook.label_budgets`)
* ``finetune``  - chapter 10, :func:`finetune_main` here (the loop is :mod:`ftbook.training`)
* ``serve``     - chapter 12, :mod:`ftbook.serve`
* ``course``    - the course kit, :mod:`ftbook.course`
* ``quiz``      - the course kit's quizzes, :mod:`ftbook.quiz`
* ``prebuilt``  - chapter 9's cache, :func:`prebuilt_main` here (:func:`ftbook.checkpoints.ship_prebuilt`)
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

COMMANDS = {  # name: ("module:function", help)
    "pretrain": ("ftbook.cli:pretrain_main", "pre-train the book's Chinese BERT (chapter 9)"),
    "pretrain-gpt": ("ftbook.cli:pretrain_gpt_main", "pre-train the book's Chinese decoder LM (chapter 14)"),
    "sft": ("ftbook.cli:sft_main", "instruction-tune SmolLM2 with the book's LoRA (chapter 16)"),
    "label-budgets": ("ftbook.cli:label_budgets_main", "chapter 9's label-budget experiment, run once and shipped"),
    "finetune": ("ftbook.cli:finetune_main", "fine-tune a BERT classifier (chapter 10)"),
    "serve": ("ftbook.serve:main", "serve a fine-tuned checkpoint over HTTP (chapter 12)"),
    "course": ("ftbook.course:main", "export student / instructor notebooks, grade submissions (course kit)"),
    "quiz": ("ftbook.quiz:main", "validate the chapter quizzes or render their book pages (course kit)"),
    "prebuilt": ("ftbook.cli:prebuilt_main", "list or ship the cache entries shipped in the package (chapter 9)"),
}


def _usage() -> str:
    lines = ["usage: python -m ftbook <command> [options]", "", "commands:"]
    lines += [f"  {name:<12} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module, function = COMMANDS[name][0].split(":")
    return int(getattr(importlib.import_module(module), function)(rest) or 0)


# --------------------------------------------------------------------------- finetune


def _load_data_file(path: Path) -> tuple[list[str], list[int], list[str] | None]:
    """A .jsonl / .json / .csv file with ``text`` and ``label`` (int or label name) per row."""
    import csv

    if not path.is_file():
        raise FileNotFoundError(f"data file {path} not found")
    if path.suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
    elif path.suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    elif path.suffix == ".json":
        rows = json.loads(path.read_text(encoding="utf-8"))
    else:
        raise ValueError(f"data file {path} must end in .csv, .jsonl or .json")
    if not rows or any("text" not in r or "label" not in r for r in rows):
        raise ValueError(f"every row of {path} needs 'text' and 'label'")
    labels = [r["label"] for r in rows]
    if all(isinstance(y, int) or (isinstance(y, str) and y.isdigit()) for y in labels):
        return [r["text"] for r in rows], [int(y) for y in labels], None
    names = sorted({str(y) for y in labels})
    return [r["text"] for r in rows], [names.index(str(y)) for y in labels], names


PRETRAIN_FLAGS = (("steps", int), ("batch-size", int), ("lr", float), ("warmup-steps", int),
                  ("mlm-probability", float), ("max-length", int), ("hidden-size", int),
                  ("num-hidden-layers", int), ("num-attention-heads", int), ("intermediate-size", int),
                  ("seed", int))  # each overrides the profile's pretrain size of the same name


GPT_FLAGS = (("steps", int), ("batch-size", int), ("lr", float), ("warmup-steps", int), ("max-length", int),
             ("hidden-size", int), ("num-hidden-layers", int), ("num-attention-heads", int),
             ("num-key-value-heads", int), ("intermediate-size", int), ("seed", int))  # causal_lm sizes


def pretrain_parser(prog: str = "python -m ftbook pretrain", flags=PRETRAIN_FLAGS, what: str = "Chinese BERT with "
                    "masked language modelling", dest: str = "chinese-bert-tiny") -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description=f"Pre-train the book's {what} "
                                                        f"(resumable: run the same command with --resume after a stop).")
    ap.add_argument("--out", type=Path, required=True, help="output folder (the model and its train_log.json)")
    ap.add_argument("--profile", default=None, help="tiny (default) or full")
    for name, kind in flags:
        ap.add_argument(f"--{name}", type=kind, default=None, help="default: the profile's size of that name")
    ap.add_argument("--amp", choices=["off", "bf16"], default="off",
                    help="bf16 autocast (about 2x faster on CPUs with AVX512-BF16)")
    ap.add_argument("--save-every", type=int, default=250, help="steps between resumable checkpoints")
    ap.add_argument("--eval-every", type=int, default=500, help="steps between held-out evaluations")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/run/last")
    ap.add_argument("--ship", action="store_true",
                    help=f"afterwards, copy the model into ftbook/weights/{dest} (what the book loads)")
    ap.add_argument("--no-progress", action="store_true")
    return ap


def _pretrain(argv, name: str, parser: argparse.ArgumentParser, flags, run, ship) -> int:
    """Parse, run ``run(out, ...)`` (resumable), record the command that reproduces it, maybe ship."""
    import shlex

    args = parser.parse_args(argv)
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    overrides = {f.replace("-", "_"): getattr(args, f.replace("-", "_")) for f, _ in flags}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    argv = sys.argv[1:] if argv is None else [name, *argv]
    command = "python -m ftbook " + shlex.join(a for a in argv if a not in ("--resume", "--ship"))
    out = run(args.out, profile=args.profile, resume=args.resume, save_every=args.save_every,
              eval_every=args.eval_every, amp=args.amp, command=command, progress=not args.no_progress, **overrides)
    print(f"[{name}] done: {out}", file=sys.stderr)
    if args.ship:
        print(f"[{name}] shipped: {ship(out)}", file=sys.stderr)
    return 0


def pretrain_main(argv: list[str] | None = None) -> int:
    """``python -m ftbook pretrain``: the long MLM run whose result the book ships (chapter 9)."""
    from .pretrain import ship, train_chinese_bert

    return _pretrain(argv, "pretrain", pretrain_parser(), PRETRAIN_FLAGS, train_chinese_bert, ship)


def pretrain_gpt_main(argv: list[str] | None = None) -> int:
    """``python -m ftbook pretrain-gpt``: the long next-token run whose result the book ships (chapter 14)."""
    from .causal_lm import ship, train_chinese_gpt

    parser = pretrain_parser("python -m ftbook pretrain-gpt", GPT_FLAGS, "Chinese decoder LM (next-token prediction)",
                             "chinese-gpt-tiny")
    return _pretrain(argv, "pretrain-gpt", parser, GPT_FLAGS, train_chinese_gpt, ship)


SFT_FLAGS = (("steps", int), ("batch-size", int), ("lr", float), ("warmup-steps", int), ("r", int),
             ("alpha", float), ("train-per-task", int), ("seed", int))  # instruct sizes


def sft_main(argv: list[str] | None = None) -> int:
    """``python -m ftbook sft``: the LoRA instruction-tuning run whose adapter the book ships (chapter 16)."""
    from .instruct import ship, train_sft

    parser = pretrain_parser("python -m ftbook sft", SFT_FLAGS, "SmolLM2 instruction tuning (LoRA adapter)",
                             "smollm2-sft-lora")
    parser.set_defaults(save_every=50, eval_every=50)
    return _pretrain(argv, "sft", parser, SFT_FLAGS, train_sft, ship)


def finetune_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m ftbook finetune",
        description="Fine-tune a BERT sequence classifier (chapter 10). Data parallel: "
                    "torchrun --nproc-per-node N -m ftbook finetune ... (gloo on CPU, nccl on GPU).",
    )
    from .finetune import TRACKS
    from .optim import SCHEDULES
    from .training import AMP_MODES

    ap.add_argument("--track", choices=TRACKS, default="english",
                    help="bundled data + the profile's model: english (BBC News) or chinese (reviews)")
    ap.add_argument("--model", help="model dir or hub id (default: the track's pretrained model)")
    ap.add_argument("--train-file", type=Path, help=".jsonl/.json/.csv with text,label (default: the track's data)")
    ap.add_argument("--eval-file", type=Path, help="validation file (same format)")
    ap.add_argument("--profile", choices=("tiny", "full"), help="sizes (default: $FTBOOK_PROFILE or tiny)")
    ap.add_argument("--output-dir", type=Path, required=True, help="where checkpoints go (final/, last/, best/)")
    ap.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/last")
    ap.add_argument("--max-length", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--max-steps", type=int)
    ap.add_argument("--batch-size", type=int, help="global batch per micro-step (summed over processes)")
    ap.add_argument("--grad-accum", type=int)
    ap.add_argument("--warmup-ratio", type=float)
    ap.add_argument("--schedule", choices=sorted(SCHEDULES))
    ap.add_argument("--weight-decay", type=float)
    ap.add_argument("--decay-norm-and-bias", action="store_true", help="also decay LayerNorm and bias")
    ap.add_argument("--max-grad-norm", type=float, help="0 disables clipping")
    ap.add_argument("--amp", choices=AMP_MODES)
    ap.add_argument("--eval-every", type=int, help="steps between evaluations (default: each epoch)")
    ap.add_argument("--patience", type=int, help="0 disables early stopping")
    ap.add_argument("--save-every", type=int)
    ap.add_argument("--group-by-length", action=argparse.BooleanOptionalAction,
                    help="batches of similar length (default: the track's setting; on for chinese)")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--no-progress", action="store_true")
    return ap


def finetune_main(argv: list[str] | None = None) -> int:
    """``python -m ftbook finetune``: fine-tune a classifier (chapter 10), alone or under torchrun."""
    args = finetune_parser().parse_args(argv)
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from . import resources
    from .checkpoints import save_checkpoint
    from .data import Encoded, encode
    from .distributed import init_from_environment, world
    from .environment import set_seed
    from .config import get_profile
    from .finetune import base_model_path, track_config
    from .training import train

    prof = get_profile(args.profile)
    s = prof.sizes("finetune")
    started = init_from_environment()
    try:
        rank, size = world()
        overrides = {k: v for k, v in {
            "lr": args.lr, "epochs": args.epochs, "max_steps": args.max_steps, "batch_size": args.batch_size,
            "grad_accum": args.grad_accum, "warmup_ratio": args.warmup_ratio, "schedule": args.schedule,
            "weight_decay": args.weight_decay, "amp": args.amp, "eval_every": args.eval_every,
            "save_every": args.save_every, "seed": args.seed,
            "group_by_length": args.group_by_length}.items() if v is not None}
        if args.max_grad_norm is not None:
            overrides["max_grad_norm"] = args.max_grad_norm or None
        if args.patience is not None:
            overrides["patience"] = args.patience or None
        overrides["decay_norm_and_bias"] = args.decay_norm_and_bias
        overrides["progress"] = not args.no_progress
        config = track_config(args.track, prof, **overrides)
        set_seed(config.seed)
        max_length = args.max_length or s.max_length
        source = args.model or base_model_path(args.track, prof)
        tokenizer = resources.from_pretrained(AutoTokenizer, source)
        if args.train_file:
            texts, labels, names = _load_data_file(args.train_file)
            names = names or [str(i) for i in range(max(labels) + 1)]
            train_data = encode(texts, labels, tokenizer, max_length)
            eval_data = None
            if args.eval_file:
                et, el, en = _load_data_file(args.eval_file)
                if en is not None and en != names:
                    raise ValueError(f"label names of {args.eval_file} ({en}) differ from the training file's ({names})")
                eval_data = encode(et, el, tokenizer, max_length, len(names))
        else:
            ds = resources.english_news(prof) if args.track == "english" else resources.chinese_reviews(prof)
            names = ds["train"].features["label"].names
            train_data = Encoded.from_dataset(ds["train"], tokenizer, max_length)
            eval_data = Encoded.from_dataset(ds["validation"], tokenizer, max_length)
        model = resources.quiet_load(lambda: resources.from_pretrained(
            AutoModelForSequenceClassification, source, num_labels=len(names),
            id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)}))
        device = torch.device(f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu")
        model.to(device)
        if rank == 0:
            print(f"[finetune] {len(train_data)} train examples, {size} process(es), global batch "
                  f"{config.batch_size}x{config.grad_accum}, model {source}", file=sys.stderr)
        result = train(model, train_data, eval_data, config, tokenizer=tokenizer,
                       output_dir=args.output_dir, resume=args.resume,
                       on_eval=lambda r: print(f"[finetune] step {r['step']}: val_accuracy "
                                               f"{r['val_accuracy']:.4f}", file=sys.stderr))
        save_checkpoint(args.output_dir / "final", model, tokenizer, state={
            "steps": result.steps, "best": result.best, "world_size": size})
        if rank == 0:
            summary = {"steps": result.steps, "samples": result.samples, "seconds": round(result.seconds, 2),
                       "best": result.best, "stopped_early": result.stopped_early, "world_size": size,
                       "output": str(args.output_dir / "final")}
            print(json.dumps(summary))
        return 0
    finally:
        if started:
            import torch.distributed as dist

            dist.destroy_process_group()



# --------------------------------------------------------------------------- label budgets


def label_budgets_main(argv: list[str] | None = None) -> int:
    """``python -m ftbook label-budgets``: chapter 9's label-budget experiment, resumable, once."""
    from .label_budgets import run_experiment, ship

    ap = argparse.ArgumentParser(prog="python -m ftbook label-budgets",
                                 description="Fine-tune on 100 / 300 / 1000 / all labels: pre-trained vs random "
                                             "init vs TF-IDF + LR, rates tuned on validation, several seeds "
                                             "(chapter 9). Rerun with the same --out to resume.")
    ap.add_argument("--out", required=True, type=Path, help="run folder (one file per finished run)")
    ap.add_argument("--profile", default=None, help="tiny or full (default: $FTBOOK_PROFILE or tiny)")
    ap.add_argument("--workers", type=int, default=None, help="processes, one thread each (default: up to 2)")
    ap.add_argument("--ship", action="store_true", help="copy results.json into ftbook/results when done")
    args = ap.parse_args(argv)
    results = run_experiment(args.out, args.profile, workers=args.workers)
    for row in results["rows"]:
        print(f"{row['labels']:>6} labels: pre-trained {row['pretrained']:.4f} ± {row['pretrained_std']:.4f}, "
              f"random {row['random']:.4f} ± {row['random_std']:.4f}, TF-IDF + LR {row['tfidf_lr']:.4f}")
    if args.ship:
        print("shipped to", ship(args.out))
    return 0


# --------------------------------------------------------------------------- prebuilt cache entries

PREBUILT_INDEX = "INDEX.json"


def _git_commit() -> str | None:
    import subprocess

    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "ftbook"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+uncommitted ftbook changes" if dirty else "")


def prebuilt_main(argv: list[str] | None = None) -> int:
    """``python -m ftbook prebuilt list | ship NAME... --command CMD``: the cache entries that ship
    in ``ftbook/prebuilt`` (a long run done once), each recorded in its ``INDEX.json`` with the
    command that produced it, the commit, machine, date and wall time."""
    import datetime
    import platform

    from . import checkpoints

    ap = argparse.ArgumentParser(prog="python -m ftbook prebuilt", description=prebuilt_main.__doc__)
    sub = ap.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="the shipped entries, their size and provenance")
    ship = sub.add_parser("ship", help="copy cache entries into ftbook/prebuilt")
    ship.add_argument("names", nargs="+", help="cache folder names, e.g. finetuned-chinese-tiny")
    ship.add_argument("--cache", type=Path, default=None, help="cache root (default: $FTBOOK_CACHE)")
    ship.add_argument("--command", required=True, help="the command that built them (recorded)")
    ship.add_argument("--wall-s", type=float, default=None, help="wall seconds of that command (recorded)")
    args = ap.parse_args(argv)
    index_path = checkpoints.PREBUILT_ROOT / PREBUILT_INDEX
    index = json.loads(index_path.read_text(encoding="utf-8")) if index_path.is_file() else {}
    if args.action == "list":
        for name, meta in sorted(index.items()):
            folder = checkpoints.prebuilt_dir(name)
            size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6
            print(f"{name:<40} {size:8.2f} MB  {meta.get('date', '?')}  {meta.get('command', '?')}")
        return 0
    cpus = f"{platform.machine()}, {__import__('os').cpu_count()} CPUs"
    for name in args.names:
        dest = checkpoints.ship_prebuilt(name, root=args.cache)
        index[name] = {"command": args.command, "wall_s": args.wall_s, "commit": _git_commit(), "machine": cpus,
                       "date": datetime.date.today().isoformat()}
        print(f"shipped {name} -> {dest}")
    index_path.write_text(json.dumps(index, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return 0
