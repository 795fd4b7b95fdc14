from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from exchange import config
from exchange.errors import ConfigError


@config.section("testrole")
@dataclass(frozen=True)
class Settings:
    organisation: str
    listen: str = "127.0.0.1:1"
    workers: int = 4
    verbose: bool = False
    key_file: Path = Path("k.key")
    regions: tuple[str, ...] = ()
    limit: float | None = None


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "samenloop.toml"
    path.write_text(text)
    return path


def test_precedence_defaults_file_env_flags(tmp_path: Path) -> None:
    path = _file(tmp_path, '[testrole]\norganisation = "from-file"\nworkers = 8\n')
    env = {"SAMENLOOP_TESTROLE_WORKERS": "16", "SAMENLOOP_TESTROLE_VERBOSE": "yes"}
    s = config.load(Settings, path=path, env=env, overrides={"organisation": "from-flag",
                                                             "listen": None})
    assert s == Settings(organisation="from-flag", workers=16, verbose=True)


def test_types_are_coerced_from_env(tmp_path: Path) -> None:
    env = {"SAMENLOOP_TESTROLE_ORGANISATION": "org", "SAMENLOOP_TESTROLE_KEY_FILE": "/x/y.key",
           "SAMENLOOP_TESTROLE_REGIONS": "GM0014, GM0363", "SAMENLOOP_TESTROLE_LIMIT": "2.5"}
    s = config.load(Settings, env=env)
    assert s.key_file == Path("/x/y.key")
    assert s.regions == ("GM0014", "GM0363")
    assert s.limit == 2.5


def test_config_file_from_environment(tmp_path: Path) -> None:
    path = _file(tmp_path, '[testrole]\norganisation = "env-file"\n')
    assert config.load(Settings, env={"SAMENLOOP_CONFIG": str(path)}).organisation == "env-file"


def test_settings_are_frozen() -> None:
    s = config.load(Settings, env={}, overrides={"organisation": "x"})
    with pytest.raises(AttributeError):
        s.workers = 2  # type: ignore[misc]


@pytest.mark.parametrize(("text", "env", "message"), [
    ('[testrole]\norganisation = "x"\nworkrs = 2\n', {}, "unknown key 'workrs' in [testrole]"),
    ('[testrol]\norganisation = "x"\n', {}, "unknown section [testrol]"),
    ('[testrole]\norganisation = "x"\n', {"SAMENLOOP_TESTROLE_LISTN": "y"},
     "unknown environment variable SAMENLOOP_TESTROLE_LISTN"),
    ('[testrole]\norganisation = "x"\nworkers = "many"\n', {}, "must be an integer"),
    ('[testrole]\norganisation = 5\n', {}, "must be a string"),
    ('[testrole]\norganisation = "x"\nverbose = "perhaps"\n', {}, "true or false"),
    ('[testrole]\nlisten = "x"\n', {}, "missing setting 'organisation'"),
    ("[testrole\n", {}, "config file"),
])
def test_bad_settings_are_errors(tmp_path: Path, text: str, env: dict[str, str],
                                 message: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.load(Settings, path=_file(tmp_path, text), env=env)
    assert message in str(info.value)


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(Settings, path=tmp_path / "nope.toml", env={})


def test_real_roles_load_from_one_file(tmp_path: Path) -> None:
    from agent import AgentSettings
    from hub import HubSettings

    path = _file(tmp_path, '[hub]\nlisten = "127.0.0.1:9"\n\n[agent]\norganisation = "org-a"\n')
    assert config.load(HubSettings, path=path, env={}).listen == "127.0.0.1:9"
    assert config.load(AgentSettings, path=path, env={}).organisation == "org-a"


def test_the_example_config_loads_for_every_role() -> None:
    from agent import AdminSettings, AgentSettings, AuditSettings, CoordinatorSettings
    from hub import HubSettings, KeyServiceSettings

    example = Path(__file__).resolve().parents[3] / "deploy" / "samenloop.example.toml"
    for cls in (HubSettings, KeyServiceSettings, AgentSettings, CoordinatorSettings,
                AuditSettings, AdminSettings):
        settings = config.load(cls, path=example, env={})
        assert isinstance(settings, cls)
