"""ftbook.lora_experiment on a tiny random BERT: Adam-state bytes against a real optimizer, one arm end to end, bad input."""

from types import SimpleNamespace

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM

from ftbook import lora_experiment as le
from ftbook.data import Encoded
from ftbook.lora import LoRALinear, count_parameters
from ftbook.training import TrainConfig, create_optimizer, optimizer_step


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=32)
    path = tmp_path_factory.mktemp("tiny-bert")
    BertForMaskedLM(cfg).save_pretrained(path)
    return path


def toy_data(n, seed):
    """Label 1 iff token 7 occurs: learnable from a few steps."""
    g = torch.Generator().manual_seed(seed)
    ids, labels = [], []
    for i in range(n):
        seq = torch.randint(10, 40, (int(torch.randint(4, 12, (1,), generator=g)),), generator=g).tolist()
        if i % 2:
            seq[len(seq) // 2] = 7
        ids.append([2] + seq + [3])
        labels.append(i % 2)
    return Encoded(ids, labels, pad_token_id=0)


def sizes(**kw):
    base = dict(max_steps=6, epochs=1, batch_size=8, eval_batch_size=16, ranks=(2,), full_lrs=(1e-4, 1e-3),
                lora_lrs=(1e-3, 1e-2), seeds=(0, 1))
    return SimpleNamespace(**{**base, **kw})


@pytest.mark.parametrize("method,r", [("full", None), ("lora", 2), ("lora", 4)])
def test_adam_state_bytes_equals_the_optimizer(folder, method, r):
    model = le.make_model(folder, method, r)
    data = toy_data(8, 0)
    config = TrainConfig(lr=1e-3, max_steps=1, batch_size=8, progress=False)
    opt, sched, scaler = create_optimizer(model, config, 1, torch.device("cpu"))
    model(**data.batch(range(8))).loss.backward()
    optimizer_step(model, opt, sched, scaler, config.max_grad_norm)
    measured = le.measured_state_bytes(opt)
    assert measured > 0
    assert le.adam_state_bytes(model) == measured
    trainable = count_parameters(model)[0]
    assert measured == 8 * trainable + 4 * sum(1 for p in model.parameters() if p.requires_grad)


def test_make_model_lora_targets_query_and_value(folder):
    model = le.make_model(folder, "lora", 2)
    wrapped = sorted(n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, LoRALinear))
    assert wrapped == ["query", "query", "value", "value"]  # 2 layers
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert all("lora_" in n or n.startswith("classifier") for n in trainable)
    assert any(n.startswith("classifier") for n in trainable)


def test_run_arm_chooses_lr_on_validation(folder):
    data = (toy_data(64, 1), toy_data(32, 2), toy_data(32, 3))
    s = sizes()
    row = le.run_arm(folder, data, s, "lora", 2, log=lambda m: None)
    assert row["lr"] in s.lora_lrs
    assert row["lr_grid"][str(row["lr"])] == max(row["lr_grid"].values())
    assert row["val_accuracies"][0] == row["lr_grid"][str(row["lr"])]
    assert len(row["test_accuracies"]) == len(s.seeds)
    assert all(0 <= a <= 1 for a in row["test_accuracies"] + row["val_accuracies"])
    model = le.make_model(folder, "lora", 2)
    assert row["trainable_params"] == count_parameters(model)[0]
    assert row["optimizer_state_bytes"] == le.adam_state_bytes(model)
    assert row["steps"] == s.max_steps and row["seconds_per_step"] > 0


def test_full_arm_trains_everything(folder):
    data = (toy_data(32, 1), toy_data(16, 2), toy_data(16, 3))
    row = le.run_arm(folder, data, sizes(max_steps=2, seeds=(0,)), "full", None, log=lambda m: None)
    assert row["trainable_params"] == row["total_params"]
    assert row["arm"] == "full" and row["lr"] in (1e-4, 1e-3)


def test_bad_input(folder):
    with pytest.raises(ValueError, match="method"):
        le.make_model(folder, "adapter")
    with pytest.raises(ValueError, match="rank"):
        le.make_model(folder, "lora", None)
    with pytest.raises(ValueError, match="ranks"):
        le._check_sizes(sizes(ranks=(0,)))
    with pytest.raises(ValueError, match="lora_lrs"):
        le._check_sizes(sizes(lora_lrs=()))
    with pytest.raises(ValueError, match="profile"):
        le.lora_vs_full("huge")


def test_sizes_registered_for_both_profiles():
    from ftbook.config import get_profile

    tiny, full = (vars(get_profile(p).sizes("lora_experiment")) for p in ("tiny", "full"))
    assert tiny.keys() == full.keys()
    assert tiny["max_length"] <= full["max_length"]


def test_lr_choice_uses_validation_only_and_reads_test_once_per_run(folder, monkeypatch):
    """With a fake train/evaluate: the lr of the best validation score wins; test is read after the choice."""
    import ftbook.training as training

    data = (toy_data(16, 1), toy_data(8, 2), toy_data(8, 3))
    val_score = {1e-3: 0.6, 1e-2: 0.9, 3e-2: 0.7}
    calls, lr_of = [], {}  # id(model) -> the lr it was trained with
    real_train = training.train

    def fake_train(model, train_data, eval_data, config, **kw):
        lr_of[id(model)] = config.lr
        return real_train(model, train_data, eval_data, config, **kw)

    def fake_evaluate(model, data_, batch_size=64):
        split = "val" if data_ is data[1] else "test"
        lr = lr_of[id(model)]
        calls.append((split, lr))
        return {"accuracy": val_score[lr] if split == "val" else 0.5}

    monkeypatch.setattr(training, "train", fake_train)
    monkeypatch.setattr(training, "evaluate", fake_evaluate)
    row = le.run_arm(folder, data, sizes(max_steps=1, lora_lrs=(1e-3, 1e-2, 3e-2), seeds=(0, 1)), "lora", 2,
                     log=lambda m: None)
    assert row["lr"] == 1e-2 and row["val_accuracies"] == [0.9, 0.9]
    assert [c for c in calls if c[0] == "test"] == [("test", 1e-2), ("test", 1e-2)]
    first_test = calls.index(("test", 1e-2))
    assert calls[:first_test] == [("val", 1e-3), ("val", 1e-2), ("val", 3e-2)]  # the whole grid before any test read
