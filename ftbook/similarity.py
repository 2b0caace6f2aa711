"""Sentence embeddings, similarity and retrieval with the pretrained MiniLM.

Taught in chapter 13 (``chapters/13_applications.ipynb``, "语义相似度与检索").

all-MiniLM-L6-v2 was trained (contrastively, on a billion sentence pairs) so that the **mean of
its token vectors**, L2-normalised, puts texts with similar meaning close together: cosine
similarity is then a dot product. :func:`embed` is that recipe in plain ``transformers`` (its twin
is ``sentence_transformers.SentenceTransformer.encode``, checked in ``tests/test_tasks.py``).

The retrieval task (:func:`headline_retrieval`): each BBC News test article is split into its
headline (first line) and its body; for every headline, rank all bodies by cosine similarity.
Recall@k is the share of headlines whose own article is in the top k; MRR the mean of 1/rank.
A TF-IDF ranking (:func:`tfidf_scores`) is the classical baseline.
"""

from __future__ import annotations

from typing import Sequence

from .config import Profile, get_profile, register_sizes

register_sizes(
    "similarity",
    tiny=dict(articles=220, max_length=128, batch_size=32),
    full=dict(articles=100_000, max_length=256, batch_size=64),
)


def mean_pool(last_hidden_state, attention_mask):
    """Mean of the token vectors where ``attention_mask`` is 1: ``(batch, hidden)``."""
    if last_hidden_state.dim() != 3 or attention_mask.shape != last_hidden_state.shape[:2]:
        raise ValueError(f"expected hidden (batch, seq, dim) and mask (batch, seq); got "
                         f"{tuple(last_hidden_state.shape)} and {tuple(attention_mask.shape)}")
    mask = attention_mask.unsqueeze(-1).to(last_hidden_state.dtype)  # (batch, seq, 1)
    return (last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def load_encoder(path: str | None = None):
    """``(BertModel, tokenizer)`` of the packaged all-MiniLM-L6-v2 (or ``path``), eval mode."""
    from transformers import AutoModel, AutoTokenizer

    from .resources import from_pretrained, minilm_path

    path = str(path or minilm_path())
    model = from_pretrained(AutoModel, path, use_safetensors=True).eval()
    return model, from_pretrained(AutoTokenizer, path)


def embed(texts: Sequence[str], model, tokenizer, *, batch_size: int = 32, max_length: int = 128,
          normalize: bool = True):
    """Sentence embeddings ``(len(texts), hidden)``: mean pooling, then L2 normalisation."""
    import torch

    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, got one str; wrap it: [text]")
    texts = list(texts)
    if not texts:
        raise ValueError("texts is empty; expected at least one text")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] is {type(t).__name__}, expected str")
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(texts[start:start + batch_size], padding=True, truncation=True,
                            max_length=max_length, return_tensors="pt")
            hidden = model(**enc).last_hidden_state  # (batch, seq, hidden)
            out.append(mean_pool(hidden, enc["attention_mask"]))
    emb = torch.cat(out)
    return torch.nn.functional.normalize(emb, dim=-1) if normalize else emb


def retrieval_metrics(scores, ks: Sequence[int] = (1, 5)) -> dict:
    """Recall@k and MRR for a square score matrix whose correct answer for row i is column i."""
    import torch

    scores = torch.as_tensor(scores, dtype=torch.float64)
    if scores.dim() != 2 or scores.shape[0] != scores.shape[1] or scores.shape[0] == 0:
        raise ValueError(f"scores must be a non-empty square (queries, documents) matrix, got "
                         f"{tuple(scores.shape)}")
    n = scores.shape[0]
    own = scores.diagonal().unsqueeze(1)  # (n, 1)
    # rank of the right document: 1 + number of documents scored strictly higher (ties favour it)
    rank = 1 + (scores > own).sum(1)
    out = {f"recall@{k}": float((rank <= k).double().mean()) for k in ks}
    out["mrr"] = float((1.0 / rank.double()).mean())
    out["n"] = n
    return out


def split_headline(article: str) -> tuple[str, str]:
    """BBC article text -> (headline, body): the first line is the headline."""
    head, sep, body = article.strip().partition("\n")
    if not sep or not head.strip() or not body.strip():
        raise ValueError("article must have a headline line and a body after it")
    return head.strip(), body.strip()


def tfidf_scores(queries: Sequence[str], documents: Sequence[str]):
    """Cosine similarity of TF-IDF vectors (fitted on the documents), ``(queries, documents)``."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(sublinear_tf=True, stop_words="english").fit(documents)
    return (vec.transform(queries) @ vec.transform(documents).T).toarray()


def headline_retrieval(profile: str | Profile | None = None, model=None, tokenizer=None) -> dict:
    """Headline -> article retrieval on the BBC News test split: MiniLM vs TF-IDF vs chance."""
    from .resources import english_news

    sizes = get_profile(profile).sizes("similarity")
    articles = english_news(profile)["test"]["text"][: sizes.articles]
    pairs = [split_headline(a) for a in articles]
    heads, bodies = [h for h, _ in pairs], [b for _, b in pairs]
    if model is None:
        model, tokenizer = load_encoder()
    q = embed(heads, model, tokenizer, batch_size=sizes.batch_size, max_length=sizes.max_length)
    d = embed(bodies, model, tokenizer, batch_size=sizes.batch_size, max_length=sizes.max_length)
    n = len(pairs)
    scores = q @ d.T  # (headlines, bodies) cosine similarities
    return {
        "minilm": retrieval_metrics(scores),
        "tfidf": retrieval_metrics(tfidf_scores(heads, bodies)),
        "chance": {"recall@1": 1 / n, "recall@5": min(5, n) / n,
                   "mrr": sum(1 / r for r in range(1, n + 1)) / n, "n": n},
        "scores": scores,
        "headlines": heads,
        "bodies": bodies,
    }
