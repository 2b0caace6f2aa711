import random
import subprocess
import sys

import matplotlib
import pytest
import torch

import ftbook
from ftbook import environment


def test_setup_chapter_seeds_and_prints_one_line(capsys, monkeypatch):
    monkeypatch.delenv("FTBOOK_PROFILE", raising=False)
    ctx = ftbook.setup_chapter(seed=123)
    a = (random.random(), torch.rand(1).item())
    ftbook.setup_chapter(seed=123, quiet=True)
    b = (random.random(), torch.rand(1).item())
    assert a == b
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "配置 tiny" in out[0] and "随机种子 123" in out[0]
    assert ctx.profile.name == "tiny" and ctx.device.type == "cpu"


def test_profile_argument(monkeypatch):
    monkeypatch.setenv("FTBOOK_PROFILE", "full")
    assert ftbook.setup_chapter(quiet=True).profile.name == "full"
    assert ftbook.setup_chapter(quiet=True, profile="tiny").profile.name == "tiny"


def test_cjk_font_renders_without_missing_glyphs():
    # A fresh interpreter: any "Glyph ... missing" warning goes to stderr and fails this test.
    code = (
        "import warnings; warnings.simplefilter('error');"
        "import matplotlib; matplotlib.use('Agg');"
        "from ftbook.environment import set_cjk_font; set_cjk_font();"
        "import matplotlib.pyplot as plt; fig, ax = plt.subplots();"
        "ax.set_title('层归一化的输出分布 −1'); ax.set_xlabel('数值'); fig.savefig('/dev/null', format='png')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "missing" not in proc.stderr.lower()
    environment.set_cjk_font()
    assert matplotlib.rcParams["font.sans-serif"][0] == environment.CJK_FONT_NAME


def test_bad_seed():
    with pytest.raises(ValueError, match="non-negative int"):
        environment.set_seed(-1)
    with pytest.raises(ValueError, match="non-negative int"):
        environment.set_seed(1.5)  # type: ignore[arg-type]


def test_pick_device():
    assert environment.pick_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert environment.pick_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            environment.pick_device("cuda")


def test_not_colab_locally(monkeypatch):
    monkeypatch.delenv("FTBOOK_PROFILE", raising=False)
    assert environment.in_colab() is False
    assert environment.default_profile_name() == "tiny"


def test_colab_with_gpu_defaults_to_full(monkeypatch):
    monkeypatch.delenv("FTBOOK_PROFILE", raising=False)
    monkeypatch.setitem(sys.modules, "google.colab", object())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert environment.default_profile_name() == "full"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert environment.default_profile_name() == "tiny"
