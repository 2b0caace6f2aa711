"""ftbook.instruct: instructions from the book's data, the chat template and answer-only labels, the
loss against LlamaForCausalLM, greedy answers against transformers' generate, scores, adapters."""

import json
import shutil

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from ftbook import instruct
from ftbook.data import IGNORE_INDEX
from ftbook.lora import apply_lora, lora_state_dict
from ftbook.resources import small_llm
from ftbook.training import cross_entropy_loss


@pytest.fixture(scope="module")
def smollm2():
    return small_llm("tiny")


@pytest.fixture(scope="module")
def tok(smollm2):
    return smollm2[1]


def _tiny_llama(vocab_size: int, seed: int = 0):
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab_size, hidden_size=16, intermediate_size=32,
                                        num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                                        max_position_embeddings=512, tie_word_embeddings=True)).eval()


def test_prompt_tokens_get_no_label_and_the_answer_is_the_chat_templates(tok):
    ex = instruct.sft_example(tok, "判断情感：很好用", "正面")
    prompt = tok(instruct.chat_prompt(tok, "判断情感：很好用"), add_special_tokens=False)["input_ids"]
    assert all(label == IGNORE_INDEX for label in ex["labels"][: len(prompt)])
    answer = ex["labels"][len(prompt):]
    assert answer == ex["input_ids"][len(prompt):] and IGNORE_INDEX not in answer
    assert tok.decode(answer) == "正面<|im_end|>"
    # the same tokens as the chat template's rendering of the whole conversation
    full = tok.apply_chat_template([{"role": "user", "content": "判断情感：很好用"},
                                    {"role": "assistant", "content": "正面"}], tokenize=False)
    ids = tok(full, add_special_tokens=False)["input_ids"]
    assert ids[: len(ex["input_ids"])] == ex["input_ids"]
    assert instruct.end_of_turn(tok) == "<|im_end|>"


def test_too_long_or_empty_answers_are_refused(tok):
    with pytest.raises(ValueError, match="exceeds max_length=10"):
        instruct.sft_example(tok, "a question that is long enough", "yes", max_length=10)
    with pytest.raises(ValueError, match="non-empty answer"):
        instruct.sft_example(tok, "q", "")


def test_loss_equals_llama_with_transformers_labels(tok):
    items = [instruct.Instruction("topic", "0", "What is this about? Rates rise.", "business", "Rates rise."),
             instruct.Instruction("sentiment", "1", "评论：太差了", "负面", "太差了")]
    model = _tiny_llama(len(tok))
    data = instruct.sft_dataset(tok, items)
    batch = data.batch([0, 1])  # right-padded, labels shifted by us
    unshifted = [instruct.sft_example(tok, x.prompt, x.answer)["labels"] for x in items]
    width = batch["input_ids"].size(1)
    hf_labels = torch.tensor([u + [IGNORE_INDEX] * (width - len(u)) for u in unshifted])
    n = int((batch["labels"] != IGNORE_INDEX).sum())
    assert n == sum(sum(v != IGNORE_INDEX for v in u) for u in unshifted)
    with torch.no_grad():
        ref = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=hf_labels).loss
        got = cross_entropy_loss(model, batch) / n
    assert torch.allclose(got, ref, atol=1e-6), (got, ref)


def test_instructions_follow_the_splits_and_hold_out_a_template():
    train = instruct.build_instructions("train", n=30)
    test = instruct.build_instructions("test", n=10, held_out=True)
    assert [x.task for x in train].count("persons") == 30 and len(test) == 30
    held = {t.name: t.held_out.split("{text}")[0] for t in instruct.TASKS}
    assert not any(x.prompt.startswith(held[x.task]) for x in train)
    assert all(x.prompt.startswith(held[x.task]) and x.template == "held_out" for x in test)
    assert not {x.text for x in train} & {x.text for x in test}
    assert {x.answer for x in train if x.task == "sentiment"} == {"正面", "负面"}
    assert instruct.build_instructions("train", n=30) == train  # seeded
    with pytest.raises(ValueError, match="split must be"):
        instruct.build_instructions("dev")
    with pytest.raises(ValueError, match="fewer than"):
        instruct.build_instructions("validation", n=10**6)


def test_person_names_and_exact_match():
    chars = list("江泽民会见李鹏和江泽民")
    tags = ["B-PER", "I-PER", "I-PER", "O", "O", "B-PER", "I-PER", "O", "B-PER", "I-PER", "I-PER"]
    assert instruct.person_names(chars, tags) == ["江泽民", "李鹏"]
    items = [instruct.Instruction("persons", "0", "p", "江泽民、李鹏", "t"),
             instruct.Instruction("topic", "0", "p", "sport", "t"),
             instruct.Instruction("sentiment", "0", "p", "正面", "t")]
    assert instruct.exact_match(["李鹏、江泽民。", "Sport.", "“正面”"], items) == \
        {"persons": 1.0, "topic": 1.0, "sentiment": 1.0, "all": 1.0}
    assert instruct.exact_match(["江泽民", "The topic is sport.", "负面"], items)["all"] == 0.0
    assert instruct.label_mentioned(["", "The topic is sport, not tech.", "这是负面评价"], items) == \
        {"topic": 1.0, "sentiment": 0.0}
    with pytest.raises(ValueError, match="2 predictions for 3"):
        instruct.exact_match(["a", "b"], items)


def test_greedy_answers_equal_transformers_generate(smollm2):
    model, tok = smollm2
    prompts = ["What is the capital of France?", "Name a colour."]
    got = instruct.answer(model, tok, prompts, max_new_tokens=8, batch_size=2)
    eot = tok.convert_tokens_to_ids("<|im_end|>")
    for prompt, ours in zip(prompts, got):
        ids = torch.tensor([tok(instruct.chat_prompt(tok, prompt), add_special_tokens=False)["input_ids"]])
        ref = model.generate(ids, max_new_tokens=8, do_sample=False, eos_token_id=eot, pad_token_id=eot)
        new = ref[0, ids.size(1):].tolist()
        new = new[: new.index(eot)] if eot in new else new
        assert ours == tok.decode(new, skip_special_tokens=True).strip()


def test_an_adapter_saved_and_loaded_gives_the_same_logits(tmp_path):
    from safetensors.torch import save_file

    model = apply_lora(_tiny_llama(100), 4, 8, ["q_proj", "v_proj"])
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_()
    save_file(lora_state_dict(model), str(tmp_path / "adapter.safetensors"))
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}))
    fresh = instruct.load_adapter(_tiny_llama(100), tmp_path)
    x = torch.tensor([[1, 5, 9, 2]])
    with torch.no_grad():
        assert torch.equal(fresh(x).logits, model(x).logits)
        assert not torch.allclose(_tiny_llama(100)(x).logits, model(x).logits)


def test_the_shipped_adapter_is_verified(tmp_path):
    instruct.check_shipped()
    log = instruct.training_log()
    assert log["command"].startswith("python -m ftbook sft") and len(log["data_sha256"]) == 64
    copy = tmp_path / "copy"
    shutil.copytree(instruct.SHIPPED_DIR, copy)
    (copy / "adapter.safetensors").write_bytes(b"partial")
    with pytest.raises(Exception, match="adapter.safetensors"):
        instruct.check_shipped(copy)
    (copy / "train_log.json").unlink()
    with pytest.raises(FileNotFoundError, match="train_log.json is missing"):
        instruct.check_shipped(copy)


def test_unknown_sizes_are_refused():
    with pytest.raises(ValueError, match="unknown SFT sizes"):
        instruct.train_sft("/nonexistent", steps=1, rank=4)
