import math

from ftbook.causal_lm import causal_lm_labels
from ftbook.decoder import Decoder, DecoderConfig
from ftbook.exercises import check


def test_q1_accepts_the_shift_and_refuses_the_usual_mistakes():
    assert check("ch14.q1", lambda ids: ids[1:] + [-100], quiet=True)
    assert check("ch14.q1", causal_lm_labels, quiet=True)
    assert not check("ch14.q1", lambda ids: list(ids), quiet=True)  # HF's unshifted convention
    assert not check("ch14.q1", lambda ids: ids[:-1] + [-100], quiet=True)
    assert not check("ch14.q1", lambda ids: [-100] + ids[:-1], quiet=True)
    assert not check("ch14.q1", lambda ids: None, quiet=True)
    assert not check("ch14.q1", [1, 2], quiet=True)


def test_q2_perplexity_is_e_to_the_loss():
    assert check("ch14.q2", math.exp(3.0), quiet=True)
    assert check("ch14.q2", 20.09, quiet=True)
    assert not check("ch14.q2", 8.0, quiet=True)
    assert not check("ch14.q2", 3.0, quiet=True)


def test_q3_matches_the_decoder_we_build():
    config = DecoderConfig(vocab_size=10, hidden_size=256, intermediate_size=8, num_hidden_layers=1,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8)
    k = Decoder(config).layers[0].self_attn.k_proj.weight.numel()
    assert check("ch14.q3", k, quiet=True)
    assert not check("ch14.q3", 256 * 256, quiet=True)
    assert not check("ch14.q3", float(k), quiet=True)
