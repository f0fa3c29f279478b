"""load_or_refuse: the one "load the config or refuse" every entry point calls."""

import pytest

from virtvlan.errors import InputError
from virtvlan.parse import config


def test_load_or_refuse_returns_the_loaded_config(tmp_path):
    path = tmp_path / "virt-vlan.conf"
    path.write_text("[uplink eth0]\nallowed-vlans = 5\n", encoding="utf-8")
    loaded = config.load_or_refuse(str(path), "domain vm1")
    assert [u.name for u in loaded.uplinks] == ["eth0"]
    assert loaded.path == str(path)


def test_load_or_refuse_names_who_and_the_path_when_the_file_is_missing(tmp_path):
    path = str(tmp_path / "absent.conf")
    with pytest.raises(InputError) as err:
        config.load_or_refuse(path, "domain vm1")
    assert str(err.value) == str(config.missing_config_error(path, "domain vm1"))
    assert "domain vm1" in str(err.value) and path in str(err.value)


def test_load_or_refuse_follows_the_environment_when_no_path_is_given(tmp_path, monkeypatch):
    path = tmp_path / "env.conf"
    monkeypatch.setenv(config.ENV_PATH, str(path))
    with pytest.raises(InputError, match="network lan asks for VLANs but %s" % path):
        config.load_or_refuse(None, "network lan")
    path.write_text("[uplink eth1]\nallowed-vlans = 7\n", encoding="utf-8")
    assert config.load_or_refuse(None, "network lan").path == str(path)


def test_load_or_refuse_passes_a_broken_config_on(tmp_path):
    path = tmp_path / "broken.conf"
    path.write_text("[uplink eth0]\nnot-a-key = 1\n", encoding="utf-8")
    with pytest.raises(InputError, match="broken.conf"):
        config.load_or_refuse(str(path), "check-config")


def test_a_file_is_parsed_again_only_when_its_text_changes(tmp_path, monkeypatch):
    """The agent loads the config at every call it serves: the same text
    gives the same (frozen) Config without a second parse; new text is
    parsed, and refused, at once."""
    import pytest

    from virtvlan.errors import InputError
    from virtvlan.parse import config

    path = tmp_path / "vv.conf"
    path.write_text("[uplink eth0]\nallowed-vlans = 1-4094\n")
    parsed = []
    real = config.parse
    monkeypatch.setattr(config, "parse", lambda text, where: parsed.append(where) or real(text, where))
    first = config.load(str(path))
    assert config.load(str(path)) is first and len(parsed) == 1
    path.write_text("[uplink eth0]\nallowed-vlans = 5\n")
    assert config.load(str(path)).uplinks[0].allowed_vlans == frozenset({5})
    path.write_text("[uplink eth0]\nallowed-vlans = 5000\n")
    with pytest.raises(InputError):
        config.load(str(path))
    with pytest.raises(InputError):
        config.load(str(path))  # refusals are never remembered
    assert len(parsed) == 4
