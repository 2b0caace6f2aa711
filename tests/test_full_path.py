"""The ``full`` profile's code path, executed offline against a stand-in hub (tests/standin_hub.py).

The stand-in models are small and random and the datasets are slices of the bundled data, so the
sizes are overridden (a few steps); what runs is the ``full`` code path itself: hub resolution with
``HF_HUB_OFFLINE=1``, ``from_pretrained`` of the hub ids, ``load_dataset`` of the hub datasets and
their schemas, tokenisation, fine-tuning through the one loop, serving, and the instruct model.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import standin_hub  # noqa: E402

SCRIPT = textwrap.dedent('''
    import json, sys
    from types import MappingProxyType
    from ftbook import config, finetune, models, resources, serve
    from ftbook.pretrain import pretrained_chinese_bert

    def shrink(section, **sizes):  # the smoke run's sizes; the code path is the full profile's
        config._SECTIONS[section]["full"] = MappingProxyType({**config._SECTIONS[section]["full"], **sizes})

    shrink("finetune", english_max_steps=3, chinese_max_steps=3, batch_size=8, eval_batch_size=16, max_length=64)
    prof = config.get_profile()
    out = {"profile": prof.name}
    zh, en = resources.chinese_reviews(), resources.english_news()
    out["zh_splits"] = {k: len(v) for k, v in zh.items()}
    out["en_splits"] = {k: len(v) for k, v in en.items()}
    out["en_names"] = en["train"].features["label"].names
    out["en_columns"] = en["train"].column_names
    out["sources"] = [models.model_source("english"), models.model_source("chinese"), str(pretrained_chinese_bert())]
    for track, ds in (("english", en), ("chinese", zh)):
        ckpt = finetune.finetuned_checkpoint(track, log=lambda m: None)
        metrics = json.loads((ckpt / "metrics.json").read_text())
        clf = serve.load_classifier(ckpt, max_length=64)
        out[track] = {"steps": metrics["steps"], "labels": clf.labels, "test_n": metrics["test_n"],
                      "predicted": [p["label"] for p in clf.predict(ds["test"]["text"][:2])]}
    llm, tok = resources.small_llm()
    out["llm"] = [type(llm).__name__, "<|im_start|>assistant" in tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)]
    print("RESULT " + json.dumps(out, ensure_ascii=False))
''')


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    return standin_hub.build(tmp_path_factory.mktemp("standin"), n=120)


def test_full_profile_runs_offline_against_the_standin_hub(standin, tmp_path):
    env = {**os.environ, **standin, "FTBOOK_CACHE": str(tmp_path / "cache"), "FTBOOK_WORKERS": "1"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=900)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert proc.returncode == 0 and line, proc.stderr[-3000:]
    out = json.loads(line[len("RESULT "):])
    assert out["profile"] == "full"
    assert out["zh_splits"] == {"train": 120, "validation": 30, "test": 30}
    # SetFit/bbc-news has no validation split: carved out of train by hash; ids named by label_text
    assert out["en_splits"]["validation"] > 0 and sum(out["en_splits"].values()) == 150
    assert out["en_names"] == standin_hub.BBC_ORDER and out["en_columns"] == ["text", "label"]
    assert out["sources"][:2] == ["bert-base-uncased", "bert-base-chinese"]
    assert "models--bert-base-chinese" in out["sources"][2]
    for track, n_labels in (("english", 5), ("chinese", 2)):
        assert out[track]["steps"] == 3 and len(out[track]["labels"]) == n_labels and out[track]["test_n"] == 30
        assert set(out[track]["predicted"]) <= set(out[track]["labels"])
    assert out["english"]["labels"] == standin_hub.BBC_ORDER
    assert out["llm"] == ["Qwen2ForCausalLM", True]


def test_hub_label_text_defines_the_names_and_bad_ids_are_refused():
    from datasets import ClassLabel, Dataset, DatasetDict

    from ftbook.resources import _with_class_labels

    ds = DatasetDict({"train": Dataset.from_dict({"text": ["a", "b"], "label": [1, 0], "label_text": ["y", "x"]})})
    out = _with_class_labels(ds, ["ignored", "names"])
    assert isinstance(out["train"].features["label"], ClassLabel)
    assert out["train"].features["label"].names == ["x", "y"] and out["train"].column_names == ["text", "label"]
    bad = DatasetDict({"train": Dataset.from_dict({"text": ["a", "b"], "label": [0, 0], "label_text": ["x", "y"]})})
    with pytest.raises(ValueError, match="one-to-one"):
        _with_class_labels(bad, ["x", "y"])
    with pytest.raises(ValueError, match="no name"):
        _with_class_labels(DatasetDict({"train": Dataset.from_dict({"text": ["a"], "label": [2]})}), ["x", "y"])
