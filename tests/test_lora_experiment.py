"""ftbook.lora_experiment: Adam-state bytes against a real optimizer, trainable counts against peft's,
one run and the two-phase experiment end to end (tiny random BERTs, and the two real tracks), bad input."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, BertModel

from ftbook import lora_experiment as le
from ftbook.data import Encoded
from ftbook.lora import LoRALinear, count_parameters
from ftbook.training import TrainConfig, create_optimizer, optimizer_step

CFG = dict(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
           max_position_embeddings=32)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """An MLM checkpoint: no pooler (like the book's Chinese BERT)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-mlm")
    BertForMaskedLM(BertConfig(**CFG)).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def folder_with_pooler(tmp_path_factory):
    """A BertModel checkpoint with its pooler (like MiniLM)."""
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("tiny-bertmodel")
    BertModel(BertConfig(**CFG)).save_pretrained(path)
    return str(path)


def toy_data(n, seed, num_labels=2):
    """Label y iff token 5 + y occurs: learnable from a few steps."""
    g = torch.Generator().manual_seed(seed)
    ids, labels = [], []
    for i in range(n):
        y = i % num_labels
        seq = torch.randint(10, 40, (int(torch.randint(4, 12, (1,), generator=g)),), generator=g).tolist()
        seq[len(seq) // 2] = 5 + y
        ids.append([2] + seq + [3])
        labels.append(y)
    return Encoded(ids, labels, pad_token_id=0)


def sizes(**kw):
    base = dict(tracks=("chinese", "english"), train_samples=None, val_samples=None, test_samples=None,
                max_length=16, max_steps=4, eval_every=2, epochs=2, batch_size=8, eval_batch_size=16, ranks=(2,),
                full_lrs=(1e-4, 1e-3), lora_lrs=(1e-3, 1e-2), seeds=(0, 1))
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


def peft_trainable(folder, r, num_labels, saved):
    from peft import LoraConfig, get_peft_model
    from transformers import BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(folder, num_labels=num_labels)
    peft = get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, target_modules=list(le.TARGETS),
                                            lora_dropout=0.0, modules_to_save=saved))
    return peft.get_nb_trainable_parameters()[0]


def test_make_model_lora_targets_and_new_modules(folder, folder_with_pooler):
    model = le.make_model(folder, "lora", 2)
    wrapped = sorted(n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, LoRALinear))
    assert wrapped == ["query", "query", "value", "value"]  # 2 layers
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert all("lora_" in n or n.startswith(("classifier", "bert.pooler")) for n in trainable)
    assert any(n.startswith("bert.pooler") for n in trainable)  # the MLM checkpoint had no pooler
    assert count_parameters(model)[0] == peft_trainable(folder, 2, 2, ["classifier", "pooler"])
    model = le.make_model(folder_with_pooler, "lora", 2, num_labels=5)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert not any(n.startswith("bert.pooler") for n in trainable)  # pre-trained pooler: frozen
    assert model.classifier.out_features == 5
    assert count_parameters(model)[0] == peft_trainable(folder_with_pooler, 2, 5, ["classifier"])


def test_new_modules():
    assert le.new_modules(["classifier.weight", "classifier.bias"]) == ["classifier"]
    assert le.new_modules(["bert.pooler.dense.weight", "classifier.bias"]) == ["classifier", "pooler"]


def test_train_run_measures_and_the_saved_state_scores_the_same(folder, tmp_path):
    data = {"train": toy_data(32, 1, 3), "val": toy_data(16, 2, 3), "test": toy_data(16, 3, 3)}
    s = sizes(max_steps=6, eval_every=2)
    state = tmp_path / "state.pt"
    run = le.train_run(folder, 3, data, s, "lora", 2, 1e-2, 0, state_path=str(state))
    assert run["steps"] == 6 and run["seconds_per_step"] > 0
    assert [step for step, _ in run["val_curve"]] == [2, 4, 6]
    assert run["val_curve"][-1][1] == run["val_accuracy"]  # the last point is the final model
    assert "test_accuracy" not in run  # not asked for: not read
    assert run["optimizer_state_bytes"] == run["optimizer_state_formula_bytes"] > 0
    assert run["trainable_params"] == count_parameters(le.make_model(folder, "lora", 2, num_labels=3))[0]
    if Path("/proc/self/clear_refs").exists():
        assert run["rss_method"] == "VmHWM" and run["peak_rss_bytes"] >= run["rss_start_bytes"] > 0
    scored = le.train_run(folder, 3, data, s, "lora", 2, 1e-2, 0, test=True, init_state=str(state))
    assert scored["val_accuracy"] == run["val_accuracy"] and scored["steps"] == 0
    assert 0 <= scored["test_accuracy"] <= 1


def toy_inputs(folder, folder_with_pooler):
    return {"chinese": {"folder": folder, "num_labels": 2, "train": toy_data(32, 1), "val": toy_data(16, 2),
                        "test": toy_data(16, 3)},
            "english": {"folder": folder_with_pooler, "num_labels": 5, "train": toy_data(40, 4, 5),
                        "val": toy_data(20, 5, 5), "test": toy_data(20, 6, 5)}}


def test_run_experiment_on_two_tracks(folder, folder_with_pooler, tmp_path):
    s = sizes(ranks=(1, 4))
    rows = le.run_experiment(toy_inputs(folder, folder_with_pooler), s, tmp_path, workers=1, log=lambda m: None)
    assert not (tmp_path / "states").exists()  # the phase-1 weights are not left in the cache entry
    for track, num_labels in (("chinese", 2), ("english", 5)):
        assert [row["arm"] for row in rows[track]] == ["full", "lora r=1", "lora r=4"]
        for row in rows[track]:
            grid = s.full_lrs if row["method"] == "full" else s.lora_lrs
            assert row["lr"] in grid and list(row["lr_grid"]) == [str(lr) for lr in grid]
            assert row["lr_grid"][str(row["lr"])] == max(row["lr_grid"].values())
            assert row["seeds"] == list(s.seeds) and len(row["test_accuracies"]) == len(s.seeds)
            assert row["val_accuracies"][0] == row["lr_grid"][str(row["lr"])]
            assert row["test_accuracy"] == pytest.approx(sum(row["test_accuracies"]) / len(s.seeds))
            assert row["test_std"] >= 0 and row["steps"] == s.max_steps
            model = le.make_model(folder if track == "chinese" else folder_with_pooler, row["method"], row["r"],
                                  num_labels=num_labels)
            assert row["trainable_params"] == count_parameters(model)[0]
            assert row["optimizer_state_bytes"] == le.adam_state_bytes(model)
        full, lora1, lora4 = rows[track]
        assert full["trainable_params"] == full["total_params"]
        assert lora4["trainable_params"] - lora1["trainable_params"] == 3 * 2 * 2 * (16 + 16)  # 3 ranks x 2 targets x 2 layers


def test_test_split_is_read_once_per_chosen_run_after_the_grid(folder, folder_with_pooler, tmp_path, monkeypatch):
    """With a fake evaluate: the lr of the best validation score wins; test is read only after every grid run."""
    import ftbook.training as training

    inputs = toy_inputs(folder, folder_with_pooler)
    del inputs["english"]
    val_score = {1e-3: 0.6, 1e-2: 0.9, 3e-2: 0.7}
    calls, lr_of = [], {}
    real_train = training.train

    def fake_train(model, train_data, eval_data, config, **kw):
        lr_of[id(model)] = config.lr
        return real_train(model, train_data, eval_data, config, **kw)

    def fake_evaluate(model, data_, batch_size=64):
        split = "val" if data_ is inputs["chinese"]["val"] else "test" if data_ is inputs["chinese"]["test"] else "?"
        lr = lr_of.get(id(model), "scored")
        calls.append((split, lr))
        return {"accuracy": val_score.get(lr, 0.9) if split == "val" else 0.5}

    monkeypatch.setattr(training, "train", fake_train)
    monkeypatch.setattr(training, "evaluate", fake_evaluate)
    s = sizes(tracks=("chinese",), max_steps=1, eval_every=None, ranks=(2,), full_lrs=(1e-3,),
              lora_lrs=(1e-3, 1e-2, 3e-2), seeds=(0, 1))
    rows = le.run_experiment(inputs, s, tmp_path, workers=1, log=lambda m: None)
    lora = rows["chinese"][1]
    assert lora["lr"] == 1e-2 and lora["lr_grid"] == {"0.001": 0.6, "0.01": 0.9, "0.03": 0.7}
    tests = [c for c in calls if c[0] == "test"]
    assert len(tests) == 2 * len(s.seeds)  # full and LoRA, once per seed of the chosen lr
    assert "?" not in {c[0] for c in calls}
    grid_calls = [("val", 1e-3), ("val", 1e-3), ("val", 1e-2), ("val", 3e-2)]  # full, then LoRA's grid
    assert calls[:4] == grid_calls and calls.index(tests[0]) > 4  # every grid run before any test read


@pytest.mark.parametrize("track,num_labels,pooler_trained", [("chinese", 2, True), ("english", 5, False)])
def test_real_tracks_tiny_run(track, num_labels, pooler_trained):
    """The two real base models and data: encoded shapes, one short LoRA run, counts against peft's."""
    from ftbook.config import get_profile

    s = sizes(train_samples=24, val_samples=8, test_samples=8, max_length=16, max_steps=2, eval_every=1)
    d = le.load_data(track, get_profile("tiny"), s)
    assert d["num_labels"] == num_labels
    assert (len(d["train"]), len(d["val"]), len(d["test"])) == (24, 8, 8)
    assert max(map(len, d["train"].input_ids)) <= 16 and set(d["train"].labels) <= set(range(num_labels))
    run = le.train_run(d["folder"], num_labels, d, s, "lora", 2, 1e-3, 0, test=True, state_path=None)
    saved = ["classifier", "pooler"] if pooler_trained else ["classifier"]
    assert run["trainable_params"] == peft_trainable(d["folder"], 2, num_labels, saved)
    assert len(run["val_curve"]) == 2 and 0 <= run["test_accuracy"] <= 1
    model = le.make_model(d["folder"], "lora", 2, num_labels=num_labels)
    assert any(p.requires_grad for n, p in model.named_parameters() if "pooler" in n) == pooler_trained


def test_bad_input(folder):
    with pytest.raises(ValueError, match="method"):
        le.make_model(folder, "adapter")
    with pytest.raises(ValueError, match="rank"):
        le.make_model(folder, "lora", None)
    with pytest.raises(ValueError, match="num_labels"):
        le.make_model(folder, "full", num_labels=1)
    with pytest.raises(ValueError, match="ranks"):
        le._check_sizes(sizes(ranks=(0,)))
    with pytest.raises(ValueError, match="lora_lrs"):
        le._check_sizes(sizes(lora_lrs=()))
    with pytest.raises(ValueError, match="tracks"):
        le._check_sizes(sizes(tracks=("french",)))
    with pytest.raises(ValueError, match="seeds"):
        le._check_sizes(sizes(seeds=(0, 0)))
    with pytest.raises(ValueError, match="eval_every"):
        le._check_sizes(sizes(eval_every=0))
    with pytest.raises(ValueError, match="track"):
        le.track_source("french", None)
    with pytest.raises(KeyError, match="track"):
        le.results_table({"tracks": {"chinese": {"rows": []}}}, "english")
    with pytest.raises(ValueError, match="profile"):
        le.lora_vs_full("huge")


def test_for_track_resolves_per_track_sizes():
    s = sizes(max_length={"chinese": 64, "english": 32}, max_steps=7)
    assert (le.for_track(s, "english").max_length, le.for_track(s, "english").max_steps) == (32, 7)
    assert le.for_track(s, "chinese").max_length == 64 and s.max_length == {"chinese": 64, "english": 32}
    with pytest.raises(KeyError, match="english"):
        le.for_track(sizes(eval_every={"chinese": 5}), "english")


def test_sizes_registered_for_both_profiles():
    from ftbook.config import get_profile

    tiny, full = (vars(get_profile(p).sizes("lora_experiment")) for p in ("tiny", "full"))
    assert tiny.keys() == full.keys()
    for track in tiny["tracks"]:
        small, large = (le.for_track(SimpleNamespace(**x), track) for x in (tiny, full))
        assert small.max_length <= large.max_length
    le._check_sizes(get_profile("tiny").sizes("lora_experiment"))
    assert len(tiny["seeds"]) >= 3 and min(tiny["lora_lrs"]) > max(tiny["full_lrs"])


def test_shipped_result_loads_and_matches_the_models(tmp_path, monkeypatch):
    """The tiny result loads from ftbook/prebuilt on an empty cache (current code), and its counts are the models'."""
    from ftbook import checkpoints
    from ftbook.config import get_profile

    monkeypatch.setenv("FTBOOK_CACHE", str(tmp_path))
    monkeypatch.delenv(checkpoints.NO_PREBUILT_VAR, raising=False)
    monkeypatch.setattr(checkpoints, "STALE_PREBUILT_IS_ERROR", True)
    result = le.lora_vs_full("tiny", log=lambda m: None)
    assert checkpoints.SOURCES["lora-vs-full-tiny"] == "prebuilt"
    s = get_profile("tiny").sizes("lora_experiment")
    assert list(result["tracks"]) == list(s.tracks)
    for track, t in result["tracks"].items():
        rows = t["rows"]
        assert [row["arm"] for row in rows] == ["full"] + [f"lora r={r}" for r in s.ranks] + ["tfidf_lr"]
        folder = le.track_source(track, get_profile("tiny"))[0]
        for row in rows[:-1]:
            assert len(row["test_accuracies"]) == len(s.seeds) and row["steps"] == le.for_track(s, track).max_steps
            model = le.make_model(folder, row["method"], row["r"], num_labels=t["data"]["num_labels"])
            assert row["trainable_params"] == count_parameters(model)[0]
            assert row["optimizer_state_bytes"] == row["optimizer_state_formula_bytes"] == le.adam_state_bytes(model)
            assert row["peak_rss_bytes"] >= row["rss_start_bytes"] > 0
        assert 0 < rows[-1]["test_accuracy"] <= 1 and rows[-1]["val_accuracy"] is None
