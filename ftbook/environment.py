"""``setup_chapter()``: the first code cell of every chapter.

Taught in the preface (``chapters/intro.md``, "如何运行") and called at the top of every chapter.
It seeds everything, picks the device, gives matplotlib a Chinese font that ships in a PyPI
package (``mplfonts``: Noto Sans CJK SC, SIL OFL) so plots have no missing glyphs here or in
Colab, and prints one short line of versions and the profile.
"""

from __future__ import annotations

import os
import random
import sys
from dataclasses import dataclass

from .config import ENV_VAR, Profile, get_profile
from .resources import ResourceUnavailableError, package_dir

CJK_FONT_FILE = "NotoSansCJKsc-Regular.otf"
CJK_FONT_NAME = "Noto Sans CJK SC"


def in_colab() -> bool:
    """True inside Google Colab."""
    return "google.colab" in sys.modules


def set_seed(seed: int = 0) -> None:
    """Seed Python, NumPy and PyTorch (CPU and all GPUs)."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    os.environ["PYTHONHASHSEED"] = str(seed)


def pick_device(prefer: str | None = None):
    """``torch.device``: ``prefer`` if given, else CUDA when present, else CPU."""
    import torch

    if prefer is not None:
        dev = torch.device(prefer)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {prefer!r} asked for, but no CUDA GPU is available")
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def set_cjk_font() -> str:
    """Register the packaged Noto Sans CJK SC with matplotlib and make it the default font."""
    import matplotlib
    from matplotlib import font_manager

    path = package_dir("mplfonts") / "fonts" / CJK_FONT_FILE
    if not path.is_file():
        raise ResourceUnavailableError(
            f"Chinese font {path} is missing; reinstall with `pip install --force-reinstall mplfonts`"
        )
    if CJK_FONT_NAME not in {f.name for f in font_manager.fontManager.ttflist}:
        font_manager.fontManager.addfont(str(path))
    matplotlib.rcParams["font.family"] = "sans-serif"
    matplotlib.rcParams["font.sans-serif"] = [CJK_FONT_NAME, "DejaVu Sans"]
    matplotlib.rcParams["axes.unicode_minus"] = False
    matplotlib.rcParams["figure.figsize"] = (6.4, 3.6)
    matplotlib.rcParams["figure.dpi"] = 100
    return CJK_FONT_NAME


def quiet_libraries() -> None:
    """No download/loading progress bars from transformers and datasets: outputs stay stable."""
    import datasets
    import transformers

    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()


def default_profile_name() -> str:
    """``$FTBOOK_PROFILE`` if set; else ``full`` in Colab with a GPU; else ``tiny``."""
    if os.environ.get(ENV_VAR):
        return os.environ[ENV_VAR]
    import torch

    return "full" if in_colab() and torch.cuda.is_available() else "tiny"


@dataclass(frozen=True)
class ChapterContext:
    profile: Profile
    device: object
    seed: int


def setup_chapter(seed: int = 0, profile: str | Profile | None = None, device: str | None = None,
                  quiet: bool = False) -> ChapterContext:
    """Seed, pick the device and profile, set the Chinese font; print one line of versions."""
    import torch
    import transformers

    from . import __version__

    set_seed(seed)
    quiet_libraries()
    prof = get_profile(profile if profile is not None else default_profile_name())
    dev = pick_device(device)
    set_cjk_font()
    if not quiet:
        print(
            f"ftbook {__version__} | 配置 {prof.name} | 设备 {dev.type} | "
            f"torch {torch.__version__.split('+')[0]} | transformers {transformers.__version__} | 随机种子 {seed}"
        )
        if in_colab() and dev.type == "cpu":
            print("提示：当前 Colab 没有 GPU（运行时 → 更改运行时类型 → GPU）；将使用 tiny 配置。")
    return ChapterContext(profile=prof, device=dev, seed=seed)
