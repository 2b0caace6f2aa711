"""Command line: ``python -m ftbook <command> ...``.

Commands (each lives in the module that teaches it):

* ``finetune``  - chapter 10, :mod:`ftbook.finetune`
* ``serve``     - chapter 12, :mod:`ftbook.serve`
* ``course``    - the course kit, :mod:`ftbook.course`
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "finetune": ("ftbook.finetune", "fine-tune a BERT classifier (chapter 10)"),
    "serve": ("ftbook.serve", "serve a fine-tuned checkpoint over HTTP (chapter 12)"),
    "course": ("ftbook.course", "export student / instructor notebooks (course kit)"),
}


def _usage() -> str:
    lines = ["usage: python -m ftbook <command> [options]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)
