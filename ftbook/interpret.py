"""Looking inside a classifier: attention maps, an attention viewer, gradient × input saliency.

Taught in chapter 17 (``chapters/17_tools_summary_faq.ipynb``, "FAQ 4：模型为什么这样判断").

* :func:`attention_maps`: every layer's and head's attention weights for one text.
* :func:`attention_viewer`: an ``ipywidgets`` viewer (layer and head sliders) over those maps; it
  also renders in the static book because the figure is drawn into an Output widget.
* :func:`token_saliency`: gradient × input, the dot product of each input token's embedding with
  the gradient of the class logit with respect to it (Shrikumar et al. 2017; Denil et al. 2014).
  Positive scores push towards the class, negative away. Attention weights say where a head looks,
  not why the model decides; saliency is closer to "why" but is only a first-order estimate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass
class AttentionMaps:
    tokens: list  # the tokens, [CLS] ... [SEP]
    weights: object  # tensor (layers, heads, seq, seq); rows sum to 1

    @property
    def num_layers(self) -> int:
        return int(self.weights.shape[0])

    @property
    def num_heads(self) -> int:
        return int(self.weights.shape[1])


def _check_text(text) -> None:
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if not text.strip():
        raise ValueError("text is empty: give the sentence to explain")


def _encoder_outputs(model, **inputs):
    """Run the model asking for attentions; works for bare encoders and task models."""
    return model(**inputs, output_attentions=True)


def attention_maps(model, tokenizer, text: str, max_length: int = 64) -> AttentionMaps:
    """Attention weights of every layer and head for ``text`` (eager attention, eval mode)."""
    import torch

    _check_text(text)
    if hasattr(model, "set_attn_implementation"):
        try:
            model.set_attn_implementation("eager")  # sdpa does not return attention weights
        except Exception:  # pragma: no cover - older/other models
            pass
    enc = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")
    model.eval()
    with torch.no_grad():
        out = _encoder_outputs(model, **enc)
    if not out.attentions or out.attentions[0] is None:
        raise RuntimeError(
            "the model returned no attention weights; load it with attn_implementation='eager'"
        )
    weights = torch.stack([a[0] for a in out.attentions])  # (layers, heads, seq, seq)
    tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"][0].tolist())
    return AttentionMaps(tokens=tokens, weights=weights)


def plot_attention(maps: AttentionMaps, layer: int, head: int, ax=None, title: str | None = None):
    """Heat map of one head: row = the token that looks, column = the token looked at."""
    import matplotlib.pyplot as plt

    if not 0 <= layer < maps.num_layers:
        raise ValueError(f"layer must be in 0..{maps.num_layers - 1}, got {layer}")
    if not 0 <= head < maps.num_heads:
        raise ValueError(f"head must be in 0..{maps.num_heads - 1}, got {head}")
    if ax is None:
        n = len(maps.tokens)
        _, ax = plt.subplots(figsize=(min(2 + 0.32 * n, 9), min(1.6 + 0.3 * n, 8)))
    ax.imshow(maps.weights[layer, head].numpy(), cmap="viridis", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(maps.tokens)), maps.tokens, rotation=90, fontsize=8)
    ax.set_yticks(range(len(maps.tokens)), maps.tokens, fontsize=8)
    ax.set_xlabel("被关注的词元（key）")
    ax.set_ylabel("发出关注的词元（query）")
    ax.set_title(title or f"第 {layer + 1} 层 第 {head + 1} 个注意力头")
    return ax


def attention_viewer(model, tokenizer, texts: Sequence[str], max_length: int = 64):
    """An interactive viewer: pick a text, a layer and a head; returns an ``ipywidgets.VBox``."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    if isinstance(texts, str) or not texts:
        raise ValueError("texts must be a non-empty list of strings")
    maps = [attention_maps(model, tokenizer, t, max_length) for t in texts]
    text_box = widgets.Dropdown(options=[(t[:40], i) for i, t in enumerate(texts)], value=0,
                                description="句子")
    layer = widgets.IntSlider(value=maps[0].num_layers - 1, min=1, max=maps[0].num_layers,
                              description="层")
    layer.value = 1
    head = widgets.IntSlider(value=1, min=1, max=maps[0].num_heads, description="头")
    out = widgets.Output()

    def draw(*_):
        with out:
            out.clear_output(wait=True)
            _, ax = plt.subplots(figsize=(6.4, 5.2))
            plot_attention(maps[text_box.value], layer.value - 1, head.value - 1, ax=ax)
            plt.tight_layout()
            plt.show()

    for w in (text_box, layer, head):
        w.observe(draw, names="value")
    draw()
    return widgets.VBox([widgets.HBox([text_box]), widgets.HBox([layer, head]), out])


@dataclass
class Saliency:
    tokens: list
    scores: list  # gradient x input per token (summed over the embedding dimension)
    target: int  # the class explained
    probability: float  # the model's probability of that class


def token_saliency(model, tokenizer, text: str, target: int | None = None, max_length: int = 128) -> Saliency:
    """Gradient × input for each token of ``text``, explaining class ``target`` (default: predicted).

    The model must be a sequence classifier (``logits`` of shape (1, num_labels)) that accepts
    ``inputs_embeds``.
    """
    import torch

    _check_text(text)
    enc = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")
    model.eval()
    embed = model.get_input_embeddings()
    inputs_embeds = embed(enc["input_ids"]).detach().requires_grad_(True)  # (1, seq, hidden)
    extra = {k: v for k, v in enc.items() if k in ("attention_mask", "token_type_ids")}
    logits = model(inputs_embeds=inputs_embeds, **extra).logits  # (1, num_labels)
    if logits.dim() != 2 or logits.shape[0] != 1:
        raise ValueError(f"expected logits of shape (1, num_labels), got {tuple(logits.shape)}")
    num_labels = logits.shape[1]
    if target is None:
        target = int(logits.argmax(-1))
    if isinstance(target, bool) or not isinstance(target, int) or not 0 <= target < num_labels:
        raise ValueError(f"target must be a class index in 0..{num_labels - 1}, got {target!r}")
    model.zero_grad(set_to_none=True)
    logits[0, target].backward()
    scores = (inputs_embeds.grad * inputs_embeds).detach().sum(-1)[0]  # (seq,)
    prob = torch.softmax(logits.detach(), -1)[0, target].item()
    tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"][0].tolist())
    return Saliency(tokens=tokens, scores=[round(float(s), 6) for s in scores], target=target,
                    probability=prob)


def top_tokens(sal: Saliency, k: int = 5, skip_special: bool = True) -> list[tuple[str, float]]:
    """The ``k`` tokens with the largest positive saliency (special tokens left out)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    pairs = [(t, s) for t, s in zip(sal.tokens, sal.scores)
             if not (skip_special and t.startswith("[") and t.endswith("]"))]
    return sorted(pairs, key=lambda p: -p[1])[:k]


def saliency_html(sal: Saliency, skip_special: bool = True) -> str:
    """The tokens as HTML spans, red for positive and blue for negative evidence."""
    import html

    shown = [(t, s) for t, s in zip(sal.tokens, sal.scores)
             if not (skip_special and t.startswith("[") and t.endswith("]"))]
    peak = max((abs(s) for _, s in shown), default=0.0) or 1.0
    spans = []
    for tok, s in shown:
        alpha = min(1.0, abs(s) / peak)
        color = f"rgba(220,50,47,{alpha:.2f})" if s > 0 else f"rgba(38,139,210,{alpha:.2f})"
        text = html.escape(tok[2:] if tok.startswith("##") else " " + tok)
        spans.append(f'<span style="background:{color};padding:1px 0" title="{s:.3f}">{text}</span>')
    return '<div style="line-height:2;font-size:14px">' + "".join(spans) + "</div>"
