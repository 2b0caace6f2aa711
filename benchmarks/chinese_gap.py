"""Where the Chinese track's gap to TF-IDF + LR comes from (issue "A Chinese BERT that has learned
Chinese", chapter 9 / 10): more pre-training of the shipped model, or a different fine-tuning recipe.

Two sub-commands, one process each, one thread each (run two side by side on 2 cores):

    # continue MLM pre-training of the shipped model on the same corpus (resumable: rerun to go on)
    python benchmarks/chinese_gap.py pretrain --out /tmp/gap/pt --steps 4000 --lr 5e-4
    # fine-tune a model dir with the Chinese track's recipe (any field overridable), best on validation
    python benchmarks/chinese_gap.py finetune --model /tmp/gap/pt --out /tmp/gap/ft-pt --test
    python benchmarks/chinese_gap.py finetune --out /tmp/gap/ft-lr1e-4 --lr 1e-4 --epochs 3
    # one table of every run folder given (fine-tunes and continued pre-trainings)
    python benchmarks/chinese_gap.py summary /tmp/gap/*

``finetune`` prints validation accuracy at every evaluation and writes ``result.json`` (the best
validation step, and the test accuracy only when ``--test`` is given: read once, for the arm chosen
on validation). The TF-IDF + LR figures it prints beside are the shipped baseline's (same split).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def continue_pretraining(args) -> dict:
    """MLM on the book's corpus, starting from the shipped checkpoint, with a fresh warm-up + decay."""
    from transformers import AutoTokenizer, BertForMaskedLM

    from ftbook import resources
    from ftbook.config import get_profile
    from ftbook.corpus import chinese_corpus
    from ftbook.pretrain import (_mlm_run, encode_corpus, held_out_texts, mlm_dataset, mlm_scores,
                                 packed_corpus, pretrained_chinese_bert)
    from ftbook.training import train

    sizes = get_profile("tiny").sizes("pretrain")
    source = pretrained_chinese_bert("tiny")
    tok = resources.from_pretrained(AutoTokenizer, source)
    model = resources.quiet_load(lambda: resources.from_pretrained(BertForMaskedLM, source))
    data = mlm_dataset(packed_corpus(tok, chinese_corpus("tiny"), sizes.max_length), tok)
    held_out = mlm_dataset(encode_corpus(tok, held_out_texts("tiny"), sizes.max_length), tok)
    out = Path(args.out)
    state_file = out / "run" / "last" / "trainer_state.json"
    done = json.loads(state_file.read_text())["step"] if state_file.is_file() else 0
    config, loss_fn = _mlm_run(data, tok, steps=args.steps, batch_size=sizes.batch_size, lr=args.lr,
                               warmup_steps=args.warmup, weight_decay=sizes.weight_decay,
                               mlm_probability=sizes.mlm_probability, seed=args.seed, amp="bf16", calls=done,
                               load_best=False, save_every=250, eval_every=500,
                               metric_for_best_model="masked_accuracy", progress=False)
    scores = lambda m, d: mlm_scores(m, d, mask_token_id=tok.mask_token_id, vocab_size=len(tok))  # noqa: E731
    before = scores(model, held_out)
    print(f"[gap] shipped model: held-out masked accuracy {before['masked_accuracy']:.4f}", flush=True)
    start = time.perf_counter()
    result = train(model, data, held_out, config, tokenizer=tok, output_dir=out / "run", resume=done > 0,
                   loss_fn=loss_fn, evaluate_fn=scores,
                   on_eval=lambda r: print(f"[gap] step {r['step']}: masked accuracy "
                                           f"{r['val_masked_accuracy']:.4f}", flush=True))
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    record = {"start": str(source), "extra_steps": args.steps, "lr": args.lr, "warmup": args.warmup,
              "shipped_masked_accuracy": round(before["masked_accuracy"], 4),
              "evals": [{"step": r["step"], "masked_accuracy": round(r["val_masked_accuracy"], 4)}
                        for r in result.history],
              "seconds": round(time.perf_counter() - start, 1)}
    (out / "continue_log.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    return record


def finetune(args) -> dict:
    """The Chinese track's fine-tuning (``ftbook.finetune.track_config``) from ``--model``."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ftbook import resources
    from ftbook.data import Encoded
    from ftbook.environment import set_seed
    from ftbook.finetune import base_model_path, track_config
    from ftbook.training import evaluate, train

    overrides = {k: v for k, v in {"lr": args.lr, "epochs": args.epochs, "max_steps": args.max_steps,
                                    "batch_size": args.batch_size, "warmup_ratio": args.warmup_ratio,
                                    "eval_every": args.eval_every, "seed": args.seed}.items() if v is not None}
    config = track_config("chinese", "tiny", progress=False, **overrides)
    set_seed(config.seed)
    source = args.model or base_model_path("chinese", "tiny")
    tok = resources.from_pretrained(AutoTokenizer, source)
    ds = resources.chinese_reviews("tiny")
    data = {k: Encoded.from_dataset(ds[k], tok, args.max_length) for k in ("train", "validation", "test")}
    model = resources.quiet_load(lambda: resources.from_pretrained(
        AutoModelForSequenceClassification, source, num_labels=2))
    start = time.perf_counter()
    result = train(model, data["train"], data["validation"], config,
                   on_eval=lambda r: print(f"[gap] step {r['step']}: val_accuracy {r['val_accuracy']:.4f}",
                                           flush=True))
    record = {"model": str(source), "config": config.to_dict(), "max_length": args.max_length,
              "best": result.best, "history": result.history, "stopped_early": result.stopped_early,
              "seconds": round(time.perf_counter() - start, 1)}
    if args.test:
        record["test"] = evaluate(model, data["test"], config.eval_batch_size)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "result.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    print(f"[gap] best validation {result.best['val_accuracy']:.4f} at step {result.best['step']}"
          + (f"; test {record['test']['accuracy']:.4f}" if args.test else ""), flush=True)
    return record


def summary(args) -> None:
    """Print one row per run folder: validation (best step), test where read, masked accuracy."""
    print(f"{'run':<28} {'lr':>7} {'steps':>6} {'best val':>9} {'at step':>8} {'test':>7}")
    for folder in map(Path, args.runs):
        if (folder / "continue_log.json").is_file():
            log = json.loads((folder / "continue_log.json").read_text())
            print(f"{folder.name:<28} {log['lr']:>7g} {log['extra_steps']:>6} masked accuracy "
                  f"{log['shipped_masked_accuracy']:.4f} -> {log['evals'][-1]['masked_accuracy']:.4f} "
                  f"({log['seconds'] / 60:.0f} min)")
        if (folder / "result.json").is_file():
            r = json.loads((folder / "result.json").read_text())
            test = f"{r['test']['accuracy']:.4f}" if "test" in r else "-"
            print(f"{folder.name:<28} {r['config']['lr']:>7g} {r['history'][-1]['step']:>6} "
                  f"{r['best']['val_accuracy']:>9.4f} {r['best']['step']:>8} {test:>7}")


def main() -> None:
    import torch

    torch.set_num_threads(1)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pretrain", help="continue MLM pre-training of the shipped model")
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--seed", type=int, default=1)
    f = sub.add_parser("finetune", help="fine-tune with the Chinese track's recipe")
    f.add_argument("--out", required=True)
    f.add_argument("--model", help="model dir (default: the shipped Chinese BERT)")
    f.add_argument("--max-length", type=int, default=128)
    for name, kind in (("lr", float), ("epochs", int), ("max-steps", int), ("batch-size", int),
                       ("warmup-ratio", float), ("eval-every", int), ("seed", int)):
        f.add_argument(f"--{name}", type=kind)
    f.add_argument("--test", action="store_true", help="read the test split once, at the end")
    s = sub.add_parser("summary", help="one table of finished run folders")
    s.add_argument("runs", nargs="+")
    args = ap.parse_args()
    {"pretrain": continue_pretraining, "finetune": finetune, "summary": summary}[args.cmd](args)


if __name__ == "__main__":
    main()
