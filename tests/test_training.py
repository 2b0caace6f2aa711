"""Tests of ftbook.training (the one loop): config checks, learning, exact accumulation, clipping,
early stopping, resume, length buckets, checkpoints, mixed precision, the CLI and 2-process DDP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from toy import data, tiny_model, tokenizer, toy_texts, weights  # noqa: F401 (fixtures)

from ftbook import training as F
from ftbook.checkpoints import STATE_FILE, save_checkpoint
from ftbook.cli import finetune_main
from ftbook.data import Encoded, encode

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


# ----------------------------------------------------------------------------- config and tricks


@pytest.mark.parametrize("kwargs, message", [
    ({"lr": 0}, "lr"), ({"batch_size": 0}, "batch_size"), ({"grad_accum": 1.5}, "grad_accum"),
    ({"warmup_ratio": 1.0}, "warmup_ratio"), ({"weight_decay": -1}, "weight_decay"),
    ({"schedule": "exponential"}, "schedule"), ({"amp": "fp8"}, "amp"), ({"patience": 0}, "patience"),
    ({"seed": -1}, "seed"), ({"max_grad_norm": -1.0}, "max_grad_norm"),
])
def test_train_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        F.TrainConfig(**kwargs)


# ----------------------------------------------------------------------------- data


def test_encode_and_batch(tokenizer):
    enc = encode(["很好", "非常差劲了"], [1, 0], tokenizer, max_length=5)
    assert [len(x) for x in enc.input_ids] == [4, 5]  # [CLS] 很 好 [SEP]; truncated to 5
    batch = enc.batch([0, 1])
    assert batch["input_ids"].shape == (2, 5)
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]
    assert batch["labels"].tolist() == [1, 0]


@pytest.mark.parametrize("texts, labels, kwargs, err, match", [
    (["a", "b"], [0], {}, ValueError, "differ in length"),
    ([], [], {}, ValueError, "empty"),
    (["a"], [0], {"max_length": 1}, ValueError, "max_length"),
    ([3], [0], {}, TypeError, "text #0"),
    (["a"], [2], {"num_labels": 2}, ValueError, "row 0: label 2"),
    (["a"], [-1], {}, ValueError, "label #0"),
])
def test_encode_rejects_bad_input(tokenizer, texts, labels, kwargs, err, match):
    kwargs = {"max_length": 8, **kwargs}
    with pytest.raises(err, match=match):
        encode(texts, labels, tokenizer, **kwargs)


def test_batch_rejects_empty_batch(data):
    with pytest.raises(ValueError, match="empty batch"):
        data.batch([])


# ----------------------------------------------------------------------------- the loop


def test_train_learns_and_records_history(tokenizer, data):
    model = tiny_model(tokenizer)
    before = F.evaluate(model, data)
    cfg = F.TrainConfig(lr=3e-3, epochs=6, batch_size=16, eval_every=4, patience=None, progress=False)
    result = F.train(model, data, data, cfg)
    after = F.evaluate(model, data)
    assert after["accuracy"] >= 0.95 and after["accuracy"] - before["accuracy"] >= 0.3
    assert after["loss"] < before["loss"]
    assert len(result.losses) == len(result.grad_norms) == result.steps
    assert result.steps == 6 * F.steps_per_epoch(len(data), cfg)
    assert [h["step"] for h in result.history][:2] == [4, 8]
    assert result.best["val_accuracy"] == max(h["val_accuracy"] for h in result.history)


def test_train_rejects_bad_arguments(tokenizer, data):
    model = tiny_model(tokenizer)
    with pytest.raises(TypeError, match="TrainConfig"):
        F.train(model, data, None, {"lr": 1e-3})
    with pytest.raises(ValueError, match="need output_dir"):
        F.train(model, data, None, F.TrainConfig(save_every=2, progress=False))
    bad = Encoded(data.input_ids[:4], [0, 1, 2, 3])
    with pytest.raises(ValueError, match="num_labels=2"):
        F.train(model, bad, None, F.TrainConfig(progress=False))
    with pytest.raises(ValueError, match="non-empty"):
        F.train(model, Encoded([], []), None, F.TrainConfig(progress=False))


def test_gradient_accumulation_is_exact(tokenizer, data):
    common = dict(lr=1e-3, epochs=1, max_steps=3, warmup_ratio=0.0, patience=None, progress=False)
    a, b = tiny_model(tokenizer), tiny_model(tokenizer)
    F.train(a, data, None, F.TrainConfig(batch_size=16, grad_accum=1, **common))
    F.train(b, data, None, F.TrainConfig(batch_size=8, grad_accum=2, **common))
    wa, wb = weights(a), weights(b)
    changed = any(not torch.equal(wa[k], weights(tiny_model(tokenizer))[k]) for k in wa)
    assert changed
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=2e-6, rtol=1e-5)


def test_clipping_switch_changes_the_run(tokenizer, data):
    common = dict(lr=1e-2, epochs=1, max_steps=2, warmup_ratio=0.0, patience=None, progress=False)
    a, b = tiny_model(tokenizer), tiny_model(tokenizer)
    F.train(a, data, None, F.TrainConfig(max_grad_norm=1e-3, **common))
    F.train(b, data, None, F.TrainConfig(max_grad_norm=None, **common))
    assert any(not torch.allclose(x, y) for x, y in zip(weights(a).values(), weights(b).values()))


def test_early_stopping_stops_and_restores_best(tokenizer, data):
    model = tiny_model(tokenizer)
    cfg = F.TrainConfig(lr=1e-9, epochs=50, batch_size=16, eval_every=1, patience=2, progress=False)
    result = F.train(model, data, data, cfg)
    assert result.stopped_early
    assert result.steps == 3  # 1 best evaluation, then 2 without improvement
    assert len(result.history) == 3


def test_resume_reaches_the_same_weights(tokenizer, data, tmp_path):
    # dropout on: the RNG state must be saved and restored, too
    cfg = F.TrainConfig(lr=2e-3, epochs=2, batch_size=16, eval_every=3, patience=None, save_every=1,
                        progress=False)
    full = tiny_model(tokenizer, dropout=0.1)
    F.train(full, data, data, cfg, tokenizer=tokenizer, output_dir=tmp_path / "a")
    part = tiny_model(tokenizer, dropout=0.1)
    r1 = F.train(part, data, data, cfg, tokenizer=tokenizer, output_dir=tmp_path / "b", stop_after_steps=5)
    assert r1.interrupted and r1.steps == 5
    resumed = tiny_model(tokenizer, dropout=0.1, seed=123)  # a fresh process: other weights
    r2 = F.train(resumed, data, data, cfg, tokenizer=tokenizer, output_dir=tmp_path / "b", resume=True)
    assert r2.steps == 2 * F.steps_per_epoch(len(data), cfg) and not r2.interrupted
    for k, v in weights(full).items():
        torch.testing.assert_close(weights(resumed)[k], v, atol=0, rtol=0)
    with pytest.raises(ValueError, match="same TrainConfig"):
        F.train(tiny_model(tokenizer), data, data, F.TrainConfig(lr=1e-3, progress=False),
                output_dir=tmp_path / "b", resume=True)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        F.train(tiny_model(tokenizer), data, data, cfg, output_dir=tmp_path / "none", resume=True)


def test_epoch_batches_random_and_grouped_by_length():
    import random

    rng = random.Random(1)
    lengths = [rng.randint(2, 128) for _ in range(1001)]
    plain = F.TrainConfig(batch_size=16, grad_accum=2, seed=3)
    grouped = F.TrainConfig(batch_size=16, grad_accum=2, seed=3, group_by_length=True)
    for world_size in (1, 2):
        order = F._epoch_order(len(lengths), 1, 3, world_size)
        assert F.epoch_batches(lengths, 1, plain, world_size) == [order[i: i + 32] for i in range(0, len(order), 32)]
        batches = F.epoch_batches(lengths, 1, grouped, world_size)
        assert len(batches) == F.steps_per_epoch(len(lengths), grouped, world_size)
        assert sorted(i for b in batches for i in b) == sorted(order)  # the same examples, once each
        assert all(len(b) % world_size == 0 for b in batches)  # every rank gets an equal share
        assert [len(b) for b in batches].count(32) >= len(batches) - 1

    def padded(batches):
        return sum(len(b) * max(lengths[i] for i in b) for b in batches)

    by_length = F.epoch_batches(lengths, 0, grouped)
    assert padded(by_length) < 0.6 * padded(F.epoch_batches(lengths, 0, plain))
    assert by_length == F.epoch_batches(lengths, 0, grouped)  # deterministic
    assert by_length != F.epoch_batches(lengths, 1, grouped)  # a new order each epoch
    with pytest.raises(ValueError, match="group_by_length must be True or False"):
        F.TrainConfig(group_by_length="yes")


def test_group_by_length_trains_and_resumes_to_the_same_weights(tokenizer, tmp_path):
    texts, labels = toy_texts(96)
    texts = [t * (1 + i % 5) for i, t in enumerate(texts)]  # lengths from 2 to ~30 characters
    data = encode(texts, labels, tokenizer, max_length=40, num_labels=2)
    cfg = F.TrainConfig(lr=2e-3, epochs=2, batch_size=16, patience=None, save_every=2, progress=False,
                        group_by_length=True)
    full = tiny_model(tokenizer, dropout=0.1)
    r = F.train(full, data, data, cfg, tokenizer=tokenizer, output_dir=tmp_path / "a")
    assert r.steps == 12 and r.samples == 192
    part = tiny_model(tokenizer, dropout=0.1)
    F.train(part, data, data, cfg, tokenizer=tokenizer, output_dir=tmp_path / "b", stop_after_steps=7)
    resumed = tiny_model(tokenizer, dropout=0.1, seed=9)
    F.train(resumed, data, data, cfg, tokenizer=tokenizer, output_dir=tmp_path / "b", resume=True)
    for k, v in weights(full).items():
        torch.testing.assert_close(weights(resumed)[k], v, atol=0, rtol=0)
    plain = tiny_model(tokenizer, dropout=0.1)
    F.train(plain, data, data, F.TrainConfig(**{**cfg.to_dict(), "group_by_length": False, "save_every": None}))
    assert any(not torch.equal(weights(plain)[k], v) for k, v in weights(full).items())


def test_checkpoint_is_atomic_verified_and_loadable(tokenizer, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ftbook.checkpoints import CorruptCheckpointError, verify

    model = tiny_model(tokenizer)
    path = save_checkpoint(tmp_path / "ck", model, tokenizer)
    verify(path)
    loaded = AutoModelForSequenceClassification.from_pretrained(path)
    assert loaded.config.id2label == {0: "negative", 1: "positive"}
    assert AutoTokenizer.from_pretrained(path).vocab_size == tokenizer.vocab_size
    for k, v in weights(model).items():
        torch.testing.assert_close(weights(loaded)[k], v)
    (path / "model.safetensors").write_bytes(b"broken")
    with pytest.raises(CorruptCheckpointError):
        verify(path)


def test_predict_logits_keeps_order(tokenizer, data):
    model = tiny_model(tokenizer)
    logits = F.predict_logits(model, data, batch_size=5)
    one = F.predict_logits(model, data.subset([7]), batch_size=1)
    torch.testing.assert_close(logits[7:8], one, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="empty"):
        F.predict_logits(model, Encoded([], []))


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_path_trains_on_cpu(tokenizer, data, amp, tmp_path):
    """The autocast (and, for fp16, GradScaler) path runs here too, not only on a GPU."""
    model = tiny_model(tokenizer)
    before = F.evaluate(model, data)
    cfg = F.TrainConfig(lr=3e-3, epochs=6, batch_size=16, patience=None, amp=amp, progress=False)
    result = F.train(model, data, None, cfg, output_dir=tmp_path)
    assert all(torch.isfinite(v).all() for v in weights(model).values())
    after = F.evaluate(model, data)
    assert after["loss"] < before["loss"] and after["accuracy"] >= 0.9 > before["accuracy"]
    saved = torch.load(tmp_path / "last" / "training_state.pt", weights_only=True)
    assert ("scaler" in saved) is (amp == "fp16")  # fp16 needs a loss scaler, bf16 does not
    assert result.steps == 6 * F.steps_per_epoch(len(data), cfg)
    assert F.amp_dtype("auto", torch.device("cpu")) is None


def test_token_labels_and_a_custom_loss(tokenizer):
    """Token labels (-100 where nothing is predicted) and a loss_fn hook use the same loop."""
    from transformers import BertConfig, BertForTokenClassification

    texts, _ = toy_texts(32)
    enc = encode(texts, [0] * len(texts), tokenizer, max_length=16)
    good = set(tokenizer.convert_tokens_to_ids(list("好棒")))
    labels = [[-100] + [int(t in good) for t in ids[1:-1]] + [-100] for ids in enc.input_ids]
    tagged = Encoded(enc.input_ids, labels, enc.pad_token_id)
    batch = tagged.batch([0, 1])
    assert batch["labels"].shape == batch["input_ids"].shape
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()
    torch.manual_seed(0)
    model = BertForTokenClassification(BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=32, num_labels=2))
    calls = []

    def loss_fn(m, b):
        calls.append(int((b["labels"] != -100).sum()))
        return F.cross_entropy_loss(m, b)

    before = F.evaluate(model, tagged)
    cfg = F.TrainConfig(lr=5e-3, epochs=8, batch_size=8, patience=None, progress=False)
    F.train(model, tagged, None, cfg, loss_fn=loss_fn)
    after = F.evaluate(model, tagged)
    n_targets = sum(x != -100 for row in labels for x in row)
    assert before["n"] == after["n"] == n_targets  # accuracy over tokens, not padding
    assert after["accuracy"] >= 0.98 and after["accuracy"] > before["accuracy"]
    assert sum(calls) == 8 * n_targets


def test_evaluate_fn_and_lower_is_better(tokenizer, data):
    seen = []

    def evaluate_fn(model, eval_data):
        out = F.evaluate(model, eval_data)
        seen.append(out["loss"])
        return out

    cfg = F.TrainConfig(lr=3e-3, epochs=3, batch_size=16, eval_every=1, patience=None, progress=False,
                        metric_for_best_model="loss", greater_is_better=False)
    result = F.train(tiny_model(tokenizer), data, data, cfg, evaluate_fn=evaluate_fn)
    assert result.best["val_loss"] == min(seen) and len(seen) == result.steps
    with pytest.raises(KeyError, match="f1"):
        F.train(tiny_model(tokenizer), data, data, F.TrainConfig(metric_for_best_model="f1", progress=False))


def test_scheduler_follows_ftbook_optim_and_starts_at_zero(tokenizer, data):
    from transformers import get_scheduler

    lrs = []
    cfg = F.TrainConfig(lr=1e-3, epochs=1, batch_size=8, warmup_steps=3, patience=None, progress=False)
    model = tiny_model(tokenizer)
    opt, sched, _ = F.create_optimizer(model, cfg, 8, torch.device("cpu"))
    ref_opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ref = get_scheduler("linear", ref_opt, num_warmup_steps=3, num_training_steps=8)
    for _ in range(8):
        lrs.append((sched.get_last_lr()[0], ref.get_last_lr()[0]))
        opt.step(), sched.step(), ref_opt.step(), ref.step()
    assert lrs[0] == (0.0, 0.0)
    assert [a for a, _ in lrs] == pytest.approx([b for _, b in lrs])
    assert opt.defaults["betas"] == (0.9, 0.999)
    assert [g["weight_decay"] for g in opt.param_groups] == [cfg.weight_decay, 0.0]


def test_resume_refuses_a_pickled_object(tokenizer, data, tmp_path):
    """Resume reads with weights_only=True: a checkpoint cannot run code when it is loaded."""
    cfg = F.TrainConfig(lr=1e-3, epochs=1, batch_size=16, patience=None, save_every=1, progress=False)
    F.train(tiny_model(tokenizer), data, None, cfg, output_dir=tmp_path, stop_after_steps=1)
    from ftbook.checkpoints import write_manifest

    last = tmp_path / "last"
    extra = torch.load(last / "training_state.pt", weights_only=True)
    extra["payload"] = Path("/")  # not a tensor or plain container
    torch.save(extra, last / "training_state.pt")
    write_manifest(last, {"kind": "training-checkpoint"})
    with pytest.raises(Exception, match="[Ww]eights.only|Unsupported|not an allowed"):
        F.train(tiny_model(tokenizer), data, None, cfg, output_dir=tmp_path, resume=True)


# ----------------------------------------------------------------------------- command line and DDP


def _write_jsonl(path: Path, texts, labels):
    path.write_text("".join(json.dumps({"text": t, "label": ["negative", "positive"][y]}, ensure_ascii=False)
                            + "\n" for t, y in zip(texts, labels)), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def cli_setup(tmp_path_factory, tokenizer):
    folder = tmp_path_factory.mktemp("cli")
    base = folder / "base"
    tiny_model(tokenizer).save_pretrained(base)
    tokenizer.save_pretrained(base)
    texts, labels = toy_texts(48)
    return folder, base, _write_jsonl(folder / "train.jsonl", texts, labels)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli_args(base, train_file, out):
    return ["--model", str(base), "--train-file", str(train_file), "--eval-file", str(train_file),
            "--output-dir", str(out), "--max-steps", "4", "--batch-size", "8", "--grad-accum", "2",
            "--lr", "1e-3", "--max-length", "16", "--patience", "0", "--no-progress", "--seed", "0"]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo", PYTHONPATH=str(ROOT))
    env.pop("WORLD_SIZE", None)
    return env


@pytest.mark.parametrize("sampling", ["--no-group-by-length", "--group-by-length"])
def test_cli_one_process_vs_two_process_gloo(cli_setup, sampling):
    """A 2-process data-parallel run (torchrun, gloo, loopback) reaches the 1-process weights,
    with random batches and with batches grouped by length."""
    from safetensors.torch import load_file

    folder, base, train_file = cli_setup
    folder = folder / sampling
    one = subprocess.run([PYTHON, "-m", "ftbook", "finetune", *_cli_args(base, train_file, folder / "one"),
                          sampling], capture_output=True, text=True, env=_env(), timeout=600, cwd=ROOT)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([PYTHON, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
                          "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
                          "-m", "ftbook", "finetune", *_cli_args(base, train_file, folder / "two"), sampling],
                         capture_output=True, text=True, env=_env(), timeout=600, cwd=ROOT)
    assert two.returncode == 0, two.stderr[-3000:]
    s1 = json.loads(one.stdout.strip().splitlines()[-1])
    s2 = json.loads(two.stdout.strip().splitlines()[-1])
    assert (s1["world_size"], s2["world_size"]) == (1, 2)
    assert s1["steps"] == s2["steps"] == 4
    state = json.loads((folder / "one" / "last" / STATE_FILE).read_text(encoding="utf-8"))
    assert state["config"]["group_by_length"] is (sampling == "--group-by-length")
    w1 = load_file(str(folder / "one" / "final" / "model.safetensors"))
    w2 = load_file(str(folder / "two" / "final" / "model.safetensors"))
    w0 = load_file(str(base / "model.safetensors"))
    assert any(not torch.allclose(w1[k], w0[k]) for k in w1)  # it did train
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], atol=1e-5, rtol=1e-4)
    assert s1["best"]["val_accuracy"] == pytest.approx(s2["best"]["val_accuracy"])


def test_cli_rejects_bad_input(cli_setup, capsys, tmp_path):
    folder, base, train_file = cli_setup
    with pytest.raises(SystemExit):
        finetune_main(["--model", str(base)])  # no --output-dir
    capsys.readouterr()
    with pytest.raises(FileNotFoundError, match="not found"):
        finetune_main(["--model", str(base), "--train-file", str(tmp_path / "missing.jsonl"), "--output-dir", str(tmp_path)])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "很好"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="needs 'text' and 'label'"):
        finetune_main(["--model", str(base), "--train-file", str(bad), "--output-dir", str(tmp_path)])
    txt = tmp_path / "data.txt"
    txt.write_text("x", encoding="utf-8")
    with pytest.raises(ValueError, match="must end in"):
        finetune_main(["--model", str(base), "--train-file", str(txt), "--output-dir", str(tmp_path)])
    with pytest.raises(ValueError, match="batch_size must be a positive"):
        finetune_main(["--model", str(base), "--train-file", str(train_file), "--output-dir", str(tmp_path),
                "--batch-size", "0"])
