"""A small Transformer encoder for measuring the training tricks: Post-LN vs Pre-LN, residuals,
warm-up, gradient clipping, no weight decay on LayerNorm/bias.

Taught in chapter 7 (``chapters/07_tricks.ipynb``). The model is built from the book's own
pieces (:class:`ftbook.norms.LayerNorm`, :func:`ftbook.attention.scaled_dot_product_attention`)
and trained on a synthetic task that needs attention: **reverse a random token sequence**
(target at position i is the input token at position L-1-i). Small enough to train in seconds
on a CPU; results are deterministic for a given seed and thread count.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .attention import scaled_dot_product_attention
from .checkpoints import cached
from .config import register_sizes
from .norms import LayerNorm

__all__ = [
    "TrickConfig",
    "Block",
    "TinyEncoder",
    "reversal_batch",
    "layer_grad_norms",
    "param_groups",
    "warmup_lambda",
    "train",
    "softmax_saturation",
    "cached_runs",
]

# tiny: measured on a 2-core CPU, one thread (seed 0, 150 steps, batch 32, AdamW beta2 0.98).
# lr_high = 1e-2: 12-layer Post-LN without warm-up stays at chance (acc 0.066), with a 50-step
# warm-up it learns the task (1.000), Pre-LN learns it without warm-up (1.000).
# lr_too_high = 3e-2: Post-LN fails even with the 50-step warm-up (0.062); Pre-LN still learns.
# The full profile's learning rates are a guess for the larger model, never measured.
register_sizes(
    "tricks",
    tiny={"vocab": 16, "seq_len": 12, "d_model": 32, "n_heads": 4, "n_layers": 12, "d_ff": 64,
          "batch": 32, "steps": 150, "warmup": 50, "lrs": (1e-2, 3e-2), "lr_high": 1e-2,
          "lr_too_high": 3e-2},
    full={"vocab": 32, "seq_len": 24, "d_model": 256, "n_heads": 8, "n_layers": 12, "d_ff": 1024,
          "batch": 128, "steps": 2000, "warmup": 400, "lrs": (1e-4, 3e-4, 1e-3, 3e-3), "lr_high": 1e-3,
          "lr_too_high": 3e-3},
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

    def __post_init__(self):
        if self.norm not in ("post", "pre", "none"):
            raise ValueError(f"norm must be 'post', 'pre' or 'none', got {self.norm!r}")
        for name in ("vocab", "seq_len", "d_model", "n_heads", "n_layers", "d_ff"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")

    @classmethod
    def from_sizes(cls, sizes, **overrides) -> "TrickConfig":
        keys = {f for f in cls.__dataclass_fields__}
        kw = {k: v for k, v in vars(sizes).items() if k in keys}
        kw.update(overrides)
        return cls(**kw)


class Block(nn.Module):
    """One encoder layer: self-attention + FFN, each with a residual and a LayerNorm.

    Post-LN: ``x = LN(x + f(x))``. Pre-LN: ``x = x + f(LN(x))``. ``norm="none"`` drops the LN.
    """

    def __init__(self, cfg: TrickConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ff = nn.Sequential(nn.Linear(d, cfg.d_ff), nn.GELU(), nn.Linear(cfg.d_ff, d))
        self.ln1 = LayerNorm(d) if cfg.norm != "none" else nn.Identity()
        self.ln2 = LayerNorm(d) if cfg.norm != "none" else nn.Identity()

    def attn(self, x: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape
        h = self.cfg.n_heads
        q, k, v = self.qkv(x).view(b, s, 3, h, d // h).permute(2, 0, 3, 1, 4)  # 3 x (b, h, s, d/h)
        out = scaled_dot_product_attention(q, k, v)  # (b, h, s, d/h)
        return self.proj(out.transpose(1, 2).reshape(b, s, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = 1.0 if self.cfg.residual else 0.0
        if self.cfg.norm == "pre":
            x = r * x + self.attn(self.ln1(x))
            return r * x + self.ff(self.ln2(x))
        x = self.ln1(r * x + self.attn(x))
        return self.ln2(r * x + self.ff(x))


class TinyEncoder(nn.Module):
    """Token + position embeddings, ``n_layers`` :class:`Block`, (final LN for Pre-LN), a linear head."""

    def __init__(self, cfg: TrickConfig):
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Embedding(cfg.vocab, cfg.d_model)
        self.pos = nn.Embedding(cfg.seq_len, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.final_ln = LayerNorm(cfg.d_model) if cfg.norm == "pre" else nn.Identity()
        self.head = nn.Linear(cfg.d_model, cfg.vocab)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:  # BERT-style: N(0, 0.02), zero biases
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.dim() != 2 or ids.size(1) > self.cfg.seq_len:
            raise ValueError(f"ids must have shape (batch, seq<= {self.cfg.seq_len}), got {tuple(ids.shape)}")
        x = self.tok(ids) + self.pos(torch.arange(ids.size(1), device=ids.device))  # (b, s, d)
        for block in self.blocks:
            x = block(x)
        return self.head(self.final_ln(x))  # (b, s, vocab)


def reversal_batch(batch: int, seq_len: int, vocab: int, generator: torch.Generator | None = None):
    """Random ids ``(batch, seq_len)`` and their reversal as targets."""
    for name, v in (("batch", batch), ("seq_len", seq_len), ("vocab", vocab)):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    ids = torch.randint(0, vocab, (batch, seq_len), generator=generator)
    return ids, ids.flip(1)


def layer_grad_norms(model: TinyEncoder, ids: torch.Tensor, targets: torch.Tensor) -> list[float]:
    """Gradient norm of each block's parameters (first block first) after one backward pass."""
    if not isinstance(model, TinyEncoder):
        raise TypeError(f"model must be a TinyEncoder, got {type(model).__name__}")
    model.zero_grad(set_to_none=True)
    logits = model(ids)
    nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1)).backward()
    norms = []
    for block in model.blocks:
        sq = sum(float(p.grad.pow(2).sum()) for p in block.parameters() if p.grad is not None)
        norms.append(math.sqrt(sq))
    model.zero_grad(set_to_none=True)
    return norms


def param_groups(model: nn.Module, weight_decay: float, no_decay_norm_and_bias: bool = True) -> list[dict]:
    """AdamW parameter groups: decay on weight matrices/embeddings; none on LayerNorm and biases.

    A parameter is "no decay" when it is 1-D (LayerNorm gamma/beta, every bias).
    """
    if not isinstance(weight_decay, (int, float)) or weight_decay < 0:
        raise ValueError(f"weight_decay must be a non-negative number, got {weight_decay!r}")
    decay, no_decay = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (no_decay if (no_decay_norm_and_bias and p.dim() < 2) else decay).append(p)
    groups = [{"params": decay, "weight_decay": float(weight_decay)}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def warmup_lambda(warmup_steps: int, total_steps: int):
    """LR multiplier: linear warm-up from ~0 to 1 over ``warmup_steps``, then linear decay to 0."""
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise ValueError(f"warmup_steps must be a non-negative int, got {warmup_steps!r}")
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps <= warmup_steps:
        raise ValueError(f"total_steps must be an int > warmup_steps ({warmup_steps}), got {total_steps!r}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


@dataclass
class TrainResult:
    losses: list[float]
    accuracy: float  # token accuracy on a fixed held-out batch after training
    grad_norms: list[float]  # global gradient norm per step (before clipping)
    diverged: bool
    ln_gain: float = 1.0  # mean |gamma| over every LayerNorm after training

    def as_dict(self) -> dict:
        return asdict(self)


def train(cfg: TrickConfig, lr: float, steps: int, warmup: int = 0, batch: int = 64, clip: float | None = None,
          weight_decay: float = 0.0, no_decay_norm_and_bias: bool = True, seed: int = 0) -> TrainResult:
    """Train a fresh :class:`TinyEncoder` with AdamW on the reversal task; return its curve.

    ``warmup=0`` means a constant learning rate; otherwise linear warm-up then linear decay.
    Runs on one CPU thread (restored afterwards): for a model this small, extra threads only add
    synchronisation cost on a busy machine, and one thread makes the result reproducible.
    """
    from .workers import one_thread

    with one_thread():
        return _train(cfg, lr, steps, warmup, batch, clip, weight_decay, no_decay_norm_and_bias, seed)


def _train(cfg, lr, steps, warmup, batch, clip, weight_decay, no_decay_norm_and_bias, seed) -> TrainResult:
    if not isinstance(lr, (int, float)) or lr <= 0:
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if clip is not None and clip <= 0:
        raise ValueError(f"clip must be None or a positive number, got {clip!r}")
    torch.manual_seed(seed)
    model = TinyEncoder(cfg)
    opt = torch.optim.AdamW(param_groups(model, weight_decay, no_decay_norm_and_bias), lr=lr, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_lambda(warmup, steps) if warmup else (lambda s: 1.0))
    data_gen = torch.Generator().manual_seed(seed + 1)
    losses, gnorms, diverged = [], [], False
    for _ in range(steps):
        ids, tgt = reversal_batch(batch, cfg.seq_len, cfg.vocab, data_gen)
        logits = model(ids)
        loss = nn.functional.cross_entropy(logits.reshape(-1, cfg.vocab), tgt.reshape(-1))
        if not torch.isfinite(loss):
            diverged = True
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), clip if clip is not None else float("inf"))
        opt.step()
        sched.step()
        losses.append(round(loss.item(), 6))
        gnorms.append(round(float(gn), 6))
    eval_ids, eval_tgt = reversal_batch(512, cfg.seq_len, cfg.vocab, torch.Generator().manual_seed(10_000 + seed))
    with torch.no_grad():
        pred = model(eval_ids).argmax(-1)
    acc = float((pred == eval_tgt).float().mean()) if not diverged else 0.0
    gains = [m.weight.detach().abs().mean().item() for m in model.modules()
             if isinstance(m, LayerNorm) and m.weight is not None]
    ln_gain = round(sum(gains) / len(gains), 4) if gains else 1.0
    return TrainResult(losses=losses, accuracy=round(acc, 4), grad_norms=gnorms, diverged=diverged,
                       ln_gain=ln_gain)


def softmax_saturation(d_k: int, scaled: bool, n_keys: int = 32, n_queries: int = 256, seed: int = 0) -> dict:
    """How saturated softmax(q.k) is for random unit-variance q, k of dimension ``d_k``.

    Returns the std of the scores, the mean largest attention weight, and the mean norm of the
    gradient of a random upstream signal w.r.t. the scores (it vanishes when softmax saturates).
    """
    if isinstance(d_k, bool) or not isinstance(d_k, int) or d_k <= 0:
        raise ValueError(f"d_k must be a positive int, got {d_k!r}")
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n_queries, d_k, generator=g, dtype=torch.float64)
    k = torch.randn(n_keys, d_k, generator=g, dtype=torch.float64)
    scores = (q @ k.T) / (math.sqrt(d_k) if scaled else 1.0)  # (n_queries, n_keys)
    scores.requires_grad_()
    probs = torch.softmax(scores, dim=-1)
    upstream = torch.randn(probs.shape, generator=g, dtype=torch.float64)
    (grad,) = torch.autograd.grad(probs, scores, upstream)
    return {
        "score_std": round(float(scores.detach().std()), 4),
        "max_weight": round(float(probs.detach().max(-1).values.mean()), 4),
        "grad_norm": round(float(grad.norm(dim=-1).mean()), 6),
    }


def _train_from_kwargs(kw: dict) -> dict:
    """:func:`train` from JSON-able kwargs (``cfg`` as a dict); a worker process runs it."""
    kw = dict(kw)
    return train(TrickConfig(**kw.pop("cfg")), **kw).as_dict()


def cached_runs(name: str, runs: dict[str, dict], *, log=print, workers: int | None = None) -> dict[str, dict]:
    """Results of several :func:`train` runs (``{label: kwargs}``), cached as JSON under ``name``.

    The runs are independent, so :func:`ftbook.workers.run_all` trains them side by side
    (``workers=None``: up to 2 processes); each uses one thread, so the numbers are the same.

    The fingerprint is the kwargs themselves plus the torch version, so any change retrains.
    ``kwargs`` may hold ``cfg`` as a dict of :class:`TrickConfig` fields.
    """
    import json

    if not isinstance(runs, dict) or not runs:
        raise ValueError("runs must be a non-empty dict {label: train kwargs}")
    fingerprint = {"runs": json.loads(json.dumps(runs, sort_keys=True)), "torch": torch.__version__.split("+")[0]}

    def build(folder):
        from .workers import run_all

        log(f"[ftbook.tricks] training {', '.join(runs)} ...")
        results = run_all(_train_from_kwargs, [((dict(kw),), {}) for kw in runs.values()], workers,
                          names=list(runs))
        out = dict(zip(runs, results))
        (folder / "results.json").write_text(json.dumps(out), encoding="utf-8")

    folder = cached(name, build, fingerprint, log=log)
    return json.loads((folder / "results.json").read_text(encoding="utf-8"))
