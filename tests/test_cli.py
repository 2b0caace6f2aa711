import subprocess
import sys

from ftbook import cli


def test_help_lists_commands(capsys):
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name in out


def test_unknown_command(capsys):
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_module_entry_point():
    proc = subprocess.run([sys.executable, "-m", "ftbook", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "finetune" in proc.stdout


def test_every_command_names_a_function():
    import importlib

    for target, _ in cli.COMMANDS.values():
        module, function = target.split(":")
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:  # a chapter not landed yet is reported, not hidden
            raise AssertionError(f"{module} is listed in ftbook.cli.COMMANDS but missing: {exc}")
        assert callable(getattr(mod, function, None)), f"{target} is missing"
