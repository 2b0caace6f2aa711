"""Tests of ftbook.finetune: the tricks, exact accumulation, resume, checkpoints, CLI, 2-process DDP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ftbook import finetune as F
from ftbook.vocab import build_char_vocab, char_tokenizer, save_vocab

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable

POS = ["很好", "非常好", "好极了", "不错很好", "真好看", "好用好用", "很棒很好", "好评"]
NEG = ["很差", "太差了", "差评", "糟糕很差", "不行太差", "坏了很差", "真差劲", "差差差"]


def toy_texts(n: int = 64):
    texts, labels = [], []
    for i in range(n):
        src = POS if i % 2 == 0 else NEG
        texts.append(src[(i // 2) % len(src)] + "。" * (i % 3))
        labels.append(1 if i % 2 == 0 else 0)
    return texts, labels


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vocab")
    texts, _ = toy_texts()
    save_vocab(build_char_vocab(texts), folder)
    return char_tokenizer(folder)


def tiny_model(tokenizer, dropout: float = 0.0, seed: int = 0, num_labels: int = 2):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                     hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
                     num_labels=num_labels, id2label={0: "negative", 1: "positive"},
                     label2id={"negative": 0, "positive": 1})
    return BertForSequenceClassification(cfg)


@pytest.fixture(scope="module")
def data(tokenizer):
    texts, labels = toy_texts()
    return F.encode(texts, labels, tokenizer, max_length=16, num_labels=2)


def weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ----------------------------------------------------------------------------- config and tricks


@pytest.mark.parametrize("kwargs, message", [
    ({"lr": 0}, "lr"), ({"batch_size": 0}, "batch_size"), ({"grad_accum": 1.5}, "grad_accum"),
    ({"warmup_ratio": 1.0}, "warmup_ratio"), ({"weight_decay": -1}, "weight_decay"),
    ({"schedule": "cosine"}, "schedule"), ({"amp": "fp8"}, "amp"), ({"patience": 0}, "patience"),
    ({"seed": -1}, "seed"), ({"max_grad_norm": -1.0}, "max_grad_norm"),
])
def test_train_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        F.TrainConfig(**kwargs)


def test_track_config_reads_profile_and_rejects_unknown():
    cfg = F.track_config("english", "tiny")
    sizes = F.get_profile("tiny").sizes("finetune")
    assert cfg.lr == sizes.english_lr and cfg.max_steps == sizes.english_max_steps
    assert F.track_config("chinese", "tiny", lr=1e-3).lr == 1e-3
    with pytest.raises(TypeError, match="unknown TrainConfig fields"):
        F.track_config("english", "tiny", learning_rate=1e-3)
    with pytest.raises(ValueError, match="track must be one of"):
        F.track_config("french")


def test_lr_lambda_warmup_then_linear_decay():
    values = [F.lr_lambda(s, 4, 10) for s in range(10)]
    assert values[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8])  # rising, never exactly 0
    assert values[4] == pytest.approx(1.0)
    assert values[9] == pytest.approx(1 / 6)
    assert all(a > b for a, b in zip(values[4:], values[5:]))
    assert F.lr_lambda(7, 4, 10, "constant") == 1.0
    with pytest.raises(ValueError, match="warmup_steps"):
        F.lr_lambda(0, 11, 10)
    with pytest.raises(ValueError, match="total_steps"):
        F.lr_lambda(0, 0, 0)
    with pytest.raises(ValueError, match="schedule"):
        F.lr_lambda(5, 1, 10, "cosine")


def test_scheduler_matches_transformers_linear_schedule():
    from transformers import get_linear_schedule_with_warmup

    p = torch.nn.Parameter(torch.zeros(1))
    ours_opt, theirs_opt = torch.optim.SGD([p], lr=1.0), torch.optim.SGD([p], lr=1.0)
    ours = F.linear_warmup_decay(ours_opt, 3, 12)
    theirs = get_linear_schedule_with_warmup(theirs_opt, 3, 12)
    a, b = [], []
    for _ in range(12):
        a.append(ours.get_last_lr()[0]), b.append(theirs.get_last_lr()[0])
        ours_opt.step(), theirs_opt.step(), ours.step(), theirs.step()
    # identical decay; during warm-up ours starts at 1/(w+1) instead of 0 (no wasted first step)
    assert a[3:] == pytest.approx(b[3:])
    assert b[0] == 0 and a[0] > 0


def test_param_groups_exclude_layernorm_and_bias(tokenizer):
    model = tiny_model(tokenizer)
    decay, no_decay = F.param_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    decay_names = {names[id(p)] for p in decay["params"]}
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 0.01
    assert all(n.endswith("bias") or "LayerNorm" in n for n in no_decay_names)
    assert "bert.embeddings.LayerNorm.weight" in no_decay_names
    assert "classifier.weight" in decay_names and "bert.embeddings.word_embeddings.weight" in decay_names
    assert len(decay_names) + len(no_decay_names) == len(list(model.parameters()))
    assert len(F.param_groups(model, 0.01, decay_norm_and_bias=True)) == 1
    with pytest.raises(ValueError, match="weight_decay"):
        F.param_groups(model, -0.1)


# ----------------------------------------------------------------------------- data


def test_encode_and_collate(tokenizer):
    enc = F.encode(["很好", "非常差劲了"], [1, 0], tokenizer, max_length=5)
    assert [len(x) for x in enc.input_ids] == [4, 5]  # [CLS] 很 好 [SEP]; truncated to 5
    batch = F.collate(enc.input_ids, enc.labels, enc.pad_token_id)
    assert batch["input_ids"].shape == (2, 5)
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]
    assert batch["labels"].tolist() == [1, 0]


@pytest.mark.parametrize("texts, labels, kwargs, err, match", [
    (["a", "b"], [0], {}, ValueError, "differ in length"),
    ([], [], {}, ValueError, "empty"),
    (["a"], [0], {"max_length": 1}, ValueError, "max_length"),
    ([3], [0], {}, TypeError, "text #0"),
    (["a"], [2], {"num_labels": 2}, ValueError, "label #0"),
    (["a"], [-1], {}, ValueError, "label #0"),
])
def test_encode_rejects_bad_input(tokenizer, texts, labels, kwargs, err, match):
    kwargs = {"max_length": 8, **kwargs}
    with pytest.raises(err, match=match):
        F.encode(texts, labels, tokenizer, **kwargs)


def test_collate_rejects_empty_batch():
    with pytest.raises(ValueError, match="empty batch"):
        F.collate([], None)


# ----------------------------------------------------------------------------- the loop


def test_train_learns_and_records_history(tokenizer, data):
    model = tiny_model(tokenizer)
    before = F.evaluate(model, data)["accuracy"]
    cfg = F.TrainConfig(lr=3e-3, epochs=6, batch_size=16, eval_every=4, patience=None, progress=False)
    result = F.train(model, data, data, cfg)
    after = F.evaluate(model, data)
    assert after["accuracy"] >= 0.95 > before or before < 0.9
    assert result.steps == 6 * F.steps_per_epoch(len(data), cfg)
    assert [h["step"] for h in result.history][:2] == [4, 8]
    assert result.best["val_accuracy"] == max(h["val_accuracy"] for h in result.history)


def test_train_rejects_bad_arguments(tokenizer, data):
    model = tiny_model(tokenizer)
    with pytest.raises(TypeError, match="TrainConfig"):
        F.train(model, data, None, {"lr": 1e-3})
    with pytest.raises(ValueError, match="need output_dir"):
        F.train(model, data, None, F.TrainConfig(save_every=2, progress=False))
    bad = F.Encoded(data.input_ids[:4], [0, 1, 2, 3])
    with pytest.raises(ValueError, match="num_labels=2"):
        F.train(model, bad, None, F.TrainConfig(progress=False))
    with pytest.raises(ValueError, match="non-empty"):
        F.train(model, F.Encoded([], []), None, F.TrainConfig(progress=False))


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
    data = F.encode(texts, labels, tokenizer, max_length=40, num_labels=2)
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


def test_track_config_groups_chinese_reviews_by_length():
    assert F.track_config("chinese", "tiny").group_by_length is True
    assert F.track_config("english", "tiny").group_by_length is False


def test_checkpoint_is_atomic_verified_and_loadable(tokenizer, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ftbook.checkpoints import CorruptCheckpointError, verify

    model = tiny_model(tokenizer)
    path = F.save_checkpoint(tmp_path / "ck", model, tokenizer)
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
        F.predict_logits(model, F.Encoded([], []))


def test_amp_modes_need_a_gpu_when_forced():
    if torch.cuda.is_available():
        pytest.skip("GPU present")
    assert F._amp_dtype("auto", torch.device("cpu")) is None
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        F._amp_dtype("bf16", torch.device("cpu"))


# ----------------------------------------------------------------------------- cached checkpoint


def test_finetuned_checkpoint_builds_once_and_loads(tokenizer, data, tmp_path, monkeypatch):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
    from transformers import AutoModelForSequenceClassification

    texts, labels = toy_texts()
    feats = Features({"text": Value("string"), "label": ClassLabel(names=["negative", "positive"])})
    ds = DatasetDict({k: Dataset.from_dict({"text": texts, "label": labels}, features=feats)
                      for k in ("train", "validation", "test")})
    calls = []

    def fake_load(track, prof):
        calls.append(track)
        return tiny_model(tokenizer), tokenizer, ds

    monkeypatch.setenv("FTBOOK_CACHE", str(tmp_path))
    monkeypatch.setattr(F, "load_track", fake_load)
    monkeypatch.setattr(F, "base_model_path", lambda track, prof=None: str(tmp_path / "base"))
    path = F.finetuned_checkpoint("english", "tiny", log=lambda m: None)
    again = F.finetuned_checkpoint("english", "tiny", log=lambda m: None)
    assert path == again and calls == ["english"]
    model = AutoModelForSequenceClassification.from_pretrained(path)
    assert model.config.label2id == {"negative": 0, "positive": 1}
    metrics = json.loads((path / "metrics.json").read_text())
    test = F.encode_dataset(ds["test"], tokenizer, 128)
    assert metrics["steps"] > 0 and metrics["history"]
    assert metrics["test_accuracy"] == pytest.approx(F.evaluate(model, test)["accuracy"])  # honest figure
    with pytest.raises(ValueError, match="track must be one of"):
        F.finetuned_checkpoint("klingon")


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
    state = json.loads((folder / "one" / "last" / F.STATE_FILE).read_text(encoding="utf-8"))
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
        F.main(["--model", str(base)])  # no --output-dir
    capsys.readouterr()
    with pytest.raises(FileNotFoundError, match="not found"):
        F.main(["--model", str(base), "--train-file", str(tmp_path / "missing.jsonl"), "--output-dir", str(tmp_path)])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "很好"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="needs 'text' and 'label'"):
        F.main(["--model", str(base), "--train-file", str(bad), "--output-dir", str(tmp_path)])
    txt = tmp_path / "data.txt"
    txt.write_text("x", encoding="utf-8")
    with pytest.raises(ValueError, match="must end in"):
        F.main(["--model", str(base), "--train-file", str(txt), "--output-dir", str(tmp_path)])
    with pytest.raises(ValueError, match="batch_size must be a positive"):
        F.main(["--model", str(base), "--train-file", str(train_file), "--output-dir", str(tmp_path),
                "--batch-size", "0"])
