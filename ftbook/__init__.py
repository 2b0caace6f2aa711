"""ftbook: the companion package of 《从零开始大模型开发与微调：ticks 和 Layer Normalization》.

One module per concept; each module's docstring names the chapter that teaches it.
"""

__version__ = "0.1.0"

from .config import Profile, get_profile  # noqa: E402
from .environment import setup_chapter  # noqa: E402
from .show import show_source  # noqa: E402
from . import exercises  # noqa: E402,F401  (ftbook.exercises.check in every chapter)

__all__ = ["Profile", "get_profile", "setup_chapter", "show_source", "__version__"]
