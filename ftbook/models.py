"""Which pre-trained model each track starts from, and what identifies it in a cache key.

Used by every chapter that loads a base model (8, 9, 10, 11, 13, 14). It sits above the ground
floor on purpose: the Chinese model of the ``tiny`` profile is the one the book pre-trained and
ships (chapter 9, :func:`ftbook.pretrain.pretrained_chinese_bert`, verified against its manifest),
while :mod:`ftbook.resources` (data and packaged files) never imports training code.
"""

from __future__ import annotations

from pathlib import Path

from .config import Profile, get_profile
from .resources import minilm_path

KINDS = ("english", "chinese")


def model_source(kind: str = "english", profile: str | Profile | None = None) -> str:
    """Path or hub id of the pretrained model the profile uses for ``kind`` ('english'/'chinese').

    The Chinese model of the ``tiny`` profile is the book's own, pre-trained once and shipped: see
    :func:`ftbook.pretrain.pretrained_chinese_bert`.
    """
    profile = get_profile(profile)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    name = profile.english_model if kind == "english" else profile.chinese_model
    if name == "minilm":
        return str(minilm_path())
    if name == "ftbook-zh":
        from . import pretrain  # the shipped model of chapter 9, checked against its manifest

        return str(pretrain.pretrained_chinese_bert(profile=profile))
    return name


def source_fingerprint(path: str) -> str:
    """What identifies a base model in a cache fingerprint: the hash of its cache manifest (a model
    ``ftbook`` built), else its weights' names and sizes (a packaged model), else the hub id."""
    p = Path(path)
    if (p / "MANIFEST.json").is_file():
        from .checkpoints import sha256_file

        return sha256_file(p / "MANIFEST.json")[:16]
    if p.is_dir():
        return ",".join(f"{f.name}:{f.stat().st_size}" for f in sorted(p.glob("*.safetensors")))
    return path
