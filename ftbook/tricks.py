"""A small Transformer encoder for measuring the training tricks: Post-LN vs Pre-LN, residuals,
warm-up, gradient clipping, no weight decay on LayerNorm/bias.

Taught in chapter 7 (``chapters/07_tricks.ipynb``). The model is the book's own encoder layer
(:class:`ftbook.transformer.EncoderLayer`, with its ``norm_first`` Pre-LN switch, on
:class:`ftbook.norms.LayerNorm` and PyTorch's fused attention), and
it trains through the book's one loop, :func:`ftbook.training.train`, on a synthetic task that
needs attention: **reverse a random token sequence** (target at position i is the input token at
position L-1-i). Small enough to train in seconds on a CPU; results are deterministic for a given
seed and thread count (and CPU instruction set: AVX-512 and AVX2 round differently).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import torch
from torch import nn

from .config import register_sizes
from .data import Encoded
from .norms import LayerNorm
from .transformer import Encoder, EncoderConfig, EncoderLayer

__all__ = [
    "TrickConfig",
    "NoResidualLayer",
    "TinyEncoder",
    "reversal_batch",
    "reversal_data",
    "layer_grad_norms",
    "train",
    "softmax_saturation",
    "spike_loss",
    "cached_runs",
]

# tiny: 150 steps, batch 32, AdamW betas (0.9, 0.98), constant learning rate, or 50 warm-up steps
# from 0 and then constant. Chapter 7 sweeps `lrs` with and without the warm-up over `seeds`
# seeds (Post-LN), and compares Post-LN / Pre-LN at lr_high; lr_too_high is where 50 warm-up
# steps are not enough. The full profile's learning rates are a guess for the larger model,
# never measured.
register_sizes(
    "tricks",
    tiny={"vocab": 16, "seq_len": 12, "d_model": 32, "n_heads": 4, "n_layers": 12, "d_ff": 64,
          "batch": 32, "steps": 150, "warmup": 50, "lrs": (1e-3, 3e-3, 5e-3, 1e-2, 3e-2), "lr_high": 1e-2,
          "lr_too_high": 3e-2, "seeds": 3},
    full={"vocab": 32, "seq_len": 24, "d_model": 256, "n_heads": 8, "n_layers": 12, "d_ff": 1024,
          "batch": 128, "steps": 2000, "warmup": 400, "lrs": (1e-4, 3e-4, 1e-3, 3e-3), "lr_high": 1e-3,
          "lr_too_high": 3e-3, "seeds": 3},
)


@dataclass(frozen=True)
class TrickConfig:
    vocab: int = 16
    seq_len: int = 12
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 6
    d_ff: int = 128
    norm: str = "post"  # "post" (original Transformer / BERT), "pre" (GPT-2 and later), "none"
    residual: bool = True
    init: str = "bert"  # "bert": N(0, 0.02), zero biases; "pytorch": each layer's own default init

    def __post_init__(self):
        if self.norm not in ("post", "pre", "none"):
            raise ValueError(f"norm must be 'post', 'pre' or 'none', got {self.norm!r}")
        if self.init not in ("bert", "pytorch"):
            raise ValueError(f"init must be 'bert' or 'pytorch', got {self.init!r}")
        for name in ("vocab", "seq_len", "d_model", "n_heads", "n_layers", "d_ff"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if not isinstance(self.residual, bool):
            raise ValueError(f"residual must be True or False, got {self.residual!r}")

    @classmethod
    def from_sizes(cls, sizes, **overrides) -> "TrickConfig":
        keys = {f for f in cls.__dataclass_fields__}
        kw = {k: v for k, v in vars(sizes).items() if k in keys}
        kw.update(overrides)
        return cls(**kw)

    def encoder_config(self) -> EncoderConfig:
        """The :class:`ftbook.transformer.EncoderConfig` of one layer: no dropout (the runs are
        compared step by step), torch's LayerNorm eps, and PyTorch's fused attention (``"sdpa"``,
        tested equal to our explicit :func:`ftbook.attention.scaled_dot_product_attention`; faster)."""
        return EncoderConfig(vocab_size=self.vocab, hidden_size=self.d_model, num_hidden_layers=self.n_layers,
                             num_attention_heads=self.n_heads, intermediate_size=self.d_ff,
                             max_position_embeddings=self.seq_len, type_vocab_size=1, layer_norm_eps=1e-5,
                             hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                             norm_first=self.norm == "pre", attn_impl="sdpa")


class NoResidualLayer(EncoderLayer):
    """Section 7.3's ablation: :class:`ftbook.transformer.EncoderLayer` without its two residual
    connections. Post-LN: ``x = LN(Attn(x)); x = LN(FFN(x))``; Pre-LN: ``x = Attn(LN(x));
    x = FFN(LN(x))``."""

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.norm_first:
            x = self.drop1(self.attn(self.norm1(x), attention_mask))  # (batch, seq, hidden)
            return self.drop2(self.ffn(self.norm2(x)))
        x = self.norm1(self.drop1(self.attn(x, attention_mask)))  # (batch, seq, hidden)
        return self.norm2(self.drop2(self.ffn(x)))


class TinyEncoder(nn.Module):
    """Token + position embeddings (no embedding LayerNorm, so layer 1 sees their raw scale),
    ``n_layers`` :class:`ftbook.transformer.EncoderLayer` (Post-LN, or Pre-LN with a final
    LayerNorm as GPT-2 and :class:`ftbook.transformer.Encoder` do), a linear head per token.

    ``norm="none"`` replaces each layer's two LayerNorms by the identity; ``residual=False``
    uses :class:`NoResidualLayer`. ``init="bert"``: BERT's initialisation, N(0, 0.02) and zero
    biases; ``"pytorch"``: PyTorch's defaults (``nn.Linear``: U(-1/sqrt(fan_in), 1/sqrt(fan_in));
    ``nn.Embedding``: N(0, 1)).
    """

    def __init__(self, cfg: TrickConfig):
        super().__init__()
        self.cfg = cfg
        layer_cfg = cfg.encoder_config()
        self.tok = nn.Embedding(cfg.vocab, cfg.d_model)
        self.pos = nn.Embedding(cfg.seq_len, cfg.d_model)
        layer = EncoderLayer if cfg.residual else NoResidualLayer
        self.layers = nn.ModuleList(layer(layer_cfg) for _ in range(cfg.n_layers))
        if cfg.norm == "none":
            for block in self.layers:
                block.norm1, block.norm2 = nn.Identity(), nn.Identity()
        self.final_norm = LayerNorm(cfg.d_model, eps=layer_cfg.layer_norm_eps) if cfg.norm == "pre" else nn.Identity()
        self.head = nn.Linear(cfg.d_model, cfg.vocab)
        if cfg.init == "bert":
            self.apply(Encoder._init_weights)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``(batch, seq)`` ids (as :func:`ftbook.training.train` passes them) -> logits
        ``(batch, seq, vocab)``. A mask of all ones (no padding, as in the reversal task) masks
        nothing and is dropped, as ``transformers`` does on its SDPA path."""
        if input_ids.dim() != 2 or input_ids.size(1) > self.cfg.seq_len:
            raise ValueError(f"input_ids must have shape (batch, seq<= {self.cfg.seq_len}), "
                             f"got {tuple(input_ids.shape)}")
        if attention_mask is not None and bool(attention_mask.all()):
            attention_mask = None
        x = self.tok(input_ids) + self.pos(torch.arange(input_ids.size(1), device=input_ids.device))  # (b, s, d)
        for layer in self.layers:
            x = layer(x, attention_mask)  # (b, s, d)
        return self.head(self.final_norm(x))  # (b, s, vocab)


def reversal_batch(batch: int, seq_len: int, vocab: int, generator: torch.Generator | None = None):
    """Random ids ``(batch, seq_len)`` and their reversal as targets."""
    for name, v in (("batch", batch), ("seq_len", seq_len), ("vocab", vocab)):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    ids = torch.randint(0, vocab, (batch, seq_len), generator=generator)
    return ids, ids.flip(1)


def reversal_data(n: int, seq_len: int, vocab: int, seed: int) -> Encoded:
    """``n`` reversal examples drawn with ``seed`` as an :class:`ftbook.data.Encoded` set: fixed-length
    ids and one label per token (nothing padded, nothing ignored)."""
    ids, targets = reversal_batch(n, seq_len, vocab, torch.Generator().manual_seed(seed))
    return Encoded(ids.tolist(), targets.tolist())


def layer_grad_norms(model: TinyEncoder, ids: torch.Tensor, targets: torch.Tensor) -> list[float]:
    """Gradient norm of each layer's parameters (first layer first) after one backward pass."""
    if not isinstance(model, TinyEncoder):
        raise TypeError(f"model must be a TinyEncoder, got {type(model).__name__}")
    model.zero_grad(set_to_none=True)
    logits = model(ids)
    nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1)).backward()
    norms = []
    for layer in model.layers:
        sq = sum(float(p.grad.pow(2).sum()) for p in layer.parameters() if p.grad is not None)
        norms.append(math.sqrt(sq))
    model.zero_grad(set_to_none=True)
    return norms


def train(cfg: TrickConfig, lr: float, steps: int, warmup: int = 0, batch: int = 64, clip: float | None = None,
          weight_decay: float = 0.0, no_decay_norm_and_bias: bool = True, seed: int = 0,
          schedule: str | None = None, spike_every: int | None = None, spike_scale: float = 100.0) -> dict:
    """Train a fresh :class:`TinyEncoder` on ``steps * batch`` reversal examples (one epoch) with
    :func:`ftbook.training.train`: AdamW (betas 0.9, 0.98), ``schedule`` (default: ``"constant"``,
    or ``"constant_with_warmup"`` when ``warmup`` > 0, so a comparison changes only the warm-up),
    clipping at ``clip`` (None: none), ``weight_decay`` on everything when
    ``no_decay_norm_and_bias=False``, else by :func:`ftbook.optim.param_groups`' rule.
    ``spike_every=k`` multiplies the loss of every k-th batch by ``spike_scale``: a rare outlier
    batch whose gradient is ``spike_scale`` times larger (section 7.5's gradient spikes).

    Returns ``{"losses", "grad_norms"}`` per step (norms before clipping), ``"accuracy"`` (tokens
    of 512 held-out examples), ``"diverged"`` (a non-finite loss; accuracy is then 0) and
    ``"ln_gain"`` (mean |gamma| of every LayerNorm). One CPU thread (restored afterwards): for a
    model this small, more only add synchronisation, and one thread makes it reproducible.
    """
    from .workers import one_thread

    with one_thread():
        return _train(cfg, lr, steps, warmup, batch, clip, weight_decay, no_decay_norm_and_bias, seed, schedule,
                      spike_loss(spike_every, spike_scale))


def spike_loss(every: int | None, scale: float = 100.0):
    """A ``loss_fn`` for :func:`ftbook.training.train`: cross-entropy, times ``scale`` on every
    ``every``-th call (one call per batch without accumulation); ``None`` for no spikes."""
    from .training import cross_entropy_loss

    if every is None:
        return None
    if isinstance(every, bool) or not isinstance(every, int) or every <= 0:
        raise ValueError(f"spike_every must be None or a positive int, got {every!r}")
    if not isinstance(scale, (int, float)) or not scale > 0:
        raise ValueError(f"spike_scale must be a positive number, got {scale!r}")
    calls = [0]

    def loss_fn(model, batch):
        calls[0] += 1
        loss = cross_entropy_loss(model, batch)
        return loss * scale if calls[0] % every == 0 else loss

    return loss_fn


def _train(cfg, lr, steps, warmup, batch, clip, weight_decay, no_decay_norm_and_bias, seed, schedule,
           loss_fn=None) -> dict:
    from . import training

    if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch <= 0:
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    if clip is not None and (not isinstance(clip, (int, float)) or clip <= 0):
        raise ValueError(f"clip must be None or a positive number, got {clip!r}")
    config = training.TrainConfig(
        lr=lr, epochs=1, batch_size=batch, warmup_steps=warmup,
        schedule=schedule or ("constant_with_warmup" if warmup else "constant"), weight_decay=weight_decay,
        decay_norm_and_bias=not no_decay_norm_and_bias, betas=(0.9, 0.98), max_grad_norm=clip, amp="off",
        patience=None, load_best=False, seed=seed, progress=False)
    torch.manual_seed(seed)
    model = TinyEncoder(cfg)
    result = training.train(model, reversal_data(steps * batch, cfg.seq_len, cfg.vocab, seed + 1), config=config,
                            loss_fn=loss_fn)
    diverged = not all(math.isfinite(v) for v in result.losses)
    held_out = reversal_data(512, cfg.seq_len, cfg.vocab, 10_000 + seed)
    acc = 0.0 if diverged else training.evaluate(model, held_out, batch_size=512)["accuracy"]
    gains = [m.weight.detach().abs().mean().item() for m in model.modules()
             if isinstance(m, LayerNorm) and m.weight is not None]
    return {"losses": [round(v, 6) for v in result.losses], "grad_norms": [round(v, 6) for v in result.grad_norms],
            "accuracy": round(acc, 4), "diverged": diverged,
            "ln_gain": round(sum(gains) / len(gains), 4) if gains else 1.0}


def softmax_saturation(d_k: int, scaled: bool, n_keys: int = 32, n_queries: int = 256, seed: int = 0,
                       dead_below: float = 1e-3) -> dict:
    """How saturated softmax(q.k) is for random unit-variance q, k of dimension ``d_k``.

    A random upstream signal is pushed back through the softmax. Returns the std of the scores,
    the mean largest attention weight, the mean entropy of a query's weights (nats; ln(n_keys) is
    uniform), the mean norm of the gradient w.r.t. the scores and w.r.t. q (what reaches W_q),
    and ``dead_share``: the share of queries whose score gradient is below ``dead_below``
    (a saturated row passes almost nothing back).
    """
    if isinstance(d_k, bool) or not isinstance(d_k, int) or d_k <= 0:
        raise ValueError(f"d_k must be a positive int, got {d_k!r}")
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n_queries, d_k, generator=g, dtype=torch.float64).requires_grad_()
    k = torch.randn(n_keys, d_k, generator=g, dtype=torch.float64)
    scores = (q @ k.T) / (math.sqrt(d_k) if scaled else 1.0)  # (n_queries, n_keys)
    probs = torch.softmax(scores, dim=-1)
    upstream = torch.randn(probs.shape, generator=g, dtype=torch.float64)
    grad_scores, grad_q = torch.autograd.grad(probs, (scores, q), upstream)
    probs = probs.detach()
    row = grad_scores.norm(dim=-1)  # (n_queries,)
    return {
        "score_std": round(float(scores.detach().std()), 4),
        "max_weight": round(float(probs.max(-1).values.mean()), 4),
        "entropy": round(float(-(probs * probs.clamp_min(1e-300).log()).sum(-1).mean()), 4),
        "grad_norm": round(float(row.mean()), 6),
        "q_grad_norm": round(float(grad_q.norm(dim=-1).mean()), 6),
        "dead_share": round(float((row < dead_below).double().mean()), 4),
    }


def _train_from_kwargs(kw: dict) -> dict:
    """:func:`train` from JSON-able kwargs (``cfg`` as a dict); a worker process runs it."""
    kw = dict(kw)
    return train(TrickConfig(**kw.pop("cfg")), **kw)


def cached_runs(name: str, runs: dict[str, dict], *, log=print, workers: int | None = None) -> dict[str, dict]:
    """Results of several :func:`train` runs (``{label: kwargs}``), cached as JSON under ``name``.

    The runs are independent, so :func:`ftbook.workers.run_all` trains them side by side
    (``workers=None``: up to 2 processes); each uses one thread, so the numbers are the same.

    The fingerprint (:func:`ftbook.checkpoints.fingerprint`) is the kwargs plus the source of every
    module that builds the result and the library versions, so any change retrains.
    ``kwargs`` may hold ``cfg`` as a dict of :class:`TrickConfig` fields.
    """
    import json

    from . import attention, data, norms, optim, training, transformer
    from .checkpoints import cached, fingerprint

    if not isinstance(runs, dict) or not runs:
        raise ValueError("runs must be a non-empty dict {label: train kwargs}")
    fp = fingerprint(sys.modules[__name__], transformer, attention, norms, training, optim, data, runs=runs)

    def build(folder):
        from .workers import run_all

        log(f"[ftbook.tricks] training {', '.join(runs)} ...")
        results = run_all(_train_from_kwargs, [((dict(kw),), {}) for kw in runs.values()], workers,
                          names=list(runs))
        out = dict(zip(runs, results))
        (folder / "results.json").write_text(json.dumps(out), encoding="utf-8")

    folder = cached(name, build, fp, log=log)
    return json.loads((folder / "results.json").read_text(encoding="utf-8"))
