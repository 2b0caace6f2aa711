import pytest

from ftbook import config
from ftbook.config import Profile, get_profile, register_sizes


def test_default_is_tiny(monkeypatch):
    monkeypatch.delenv(config.ENV_VAR, raising=False)
    assert get_profile().name == "tiny"
    assert get_profile().offline is True


def test_env_var_selects_profile(monkeypatch):
    monkeypatch.setenv(config.ENV_VAR, "full")
    prof = get_profile()
    assert prof.name == "full" and prof.offline is False
    assert prof.english_model == "bert-base-uncased" and prof.chinese_model == "bert-base-chinese"


def test_argument_beats_env(monkeypatch):
    monkeypatch.setenv(config.ENV_VAR, "full")
    assert get_profile("tiny").name == "tiny"
    assert get_profile(" TINY ").name == "tiny"


def test_profile_instance_passes_through():
    prof = get_profile("full")
    assert get_profile(prof) is prof


def test_unknown_profile_names_choices(monkeypatch):
    with pytest.raises(ValueError, match=r"unknown profile 'huge'.*tiny, full"):
        get_profile("huge")
    monkeypatch.setenv(config.ENV_VAR, "medium")
    with pytest.raises(ValueError, match=r"\$FTBOOK_PROFILE"):
        get_profile()


def test_bad_type():
    with pytest.raises(TypeError, match="profile must be a string"):
        get_profile(3)


def test_register_and_read_sizes():
    register_sizes("unit-test", tiny={"steps": 3, "n": None}, full={"steps": 300, "n": 10})
    assert get_profile("tiny").sizes("unit-test").steps == 3
    assert get_profile("full").sizes("unit-test").n == 10


def test_sizes_must_match_between_profiles():
    with pytest.raises(ValueError, match=r"only in tiny \['a'\], only in full \['b'\]"):
        register_sizes("broken", tiny={"a": 1}, full={"b": 2})


def test_unknown_section_says_what_to_import():
    with pytest.raises(KeyError, match="no sizes registered for section 'nope'"):
        get_profile("tiny").sizes("nope")


def test_bad_section_name():
    with pytest.raises(ValueError, match="non-empty string"):
        register_sizes("", tiny={}, full={})


def test_every_registered_section_has_both_profiles():
    import ftbook.resources  # noqa: F401  (registers "background")

    for name in config._SECTIONS:
        tiny, full = get_profile("tiny").sizes(name), get_profile("full").sizes(name)
        assert set(vars(tiny)) == set(vars(full)), name


def test_profile_is_frozen():
    with pytest.raises(Exception):
        get_profile("tiny").name = "x"  # type: ignore[misc]
    assert isinstance(get_profile("tiny"), Profile)
