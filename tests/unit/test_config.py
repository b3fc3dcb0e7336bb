from pathlib import Path

import pytest

from apistream.config import hash_key, load_config, parse_duration, spark_interval
from apistream.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_default_config_is_valid():
    cfg = load_config(environ={})
    assert cfg.processing.window == 60
    assert cfg.processing.watermark == 120
    assert len(cfg.endpoints) == 12
    assert cfg.validation.max_age == 30 * 86400


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30 seconds", 30),
        ("2 minutes", 120),
        ("1h", 3600),
        ("30 days", 2592000),
        (90, 90),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["abc", "0 s", "-1 minute", "5 fortnights", True])
def test_parse_duration_rejects(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_spark_interval():
    assert spark_interval(120) == "120 seconds"
    assert spark_interval(1.5) == "1500 milliseconds"


def test_env_overrides_and_cli_overrides_win_in_order():
    env = {
        "APISTREAM_PROCESSING__WINDOW": "5 minutes",
        "APISTREAM_GENERATOR__SEED": "7",
        "APISTREAM_SOURCE__PATH": "/from/env",
    }
    cfg = load_config(environ=env, overrides={"source.path": "/from/cli"})
    assert cfg.processing.window == 300
    assert cfg.generator.seed == 7
    assert cfg.source.path == "/from/cli"


def test_env_value_that_is_no_yaml_is_taken_as_text():
    # '*.gz' alone is a YAML alias: a ScannerError before.
    cfg = load_config(environ={"APISTREAM_SOURCE__GLOB": "*.gz"})
    assert cfg.source.glob == "*.gz"


def test_bad_value_names_the_key():
    with pytest.raises(ConfigError) as err:
        load_config(environ={"APISTREAM_PROCESSING__WATERMARK": "soon"})
    assert "processing.watermark" in str(err.value)


def test_unknown_key_is_rejected_with_its_path(tmp_path):
    base = (Path(__file__).parents[2] / "config" / "config.yaml").read_text()
    path = write(tmp_path, base.replace("  window: 1 minute", "  windw: 1 minute"))
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    assert "processing.windw: unknown key" in str(err.value)


def test_invalid_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "a: [1, 2"), environ={})
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml", environ={})


def test_cross_checks():
    with pytest.raises(ConfigError, match="methods not allowed"):
        load_config(environ={"APISTREAM_VALIDATION__METHODS": "[GET]"})
    with pytest.raises(ConfigError, match="status_min must be below status_max"):
        load_config(environ={"APISTREAM_VALIDATION__STATUS_MIN": "700"})


def test_config_is_immutable():
    cfg = load_config(environ={})
    with pytest.raises(Exception, match="frozen"):
        cfg.processing.window = 5  # type: ignore[misc]


def test_output_and_input_aliases():
    cfg = load_config(environ={"APISTREAM_OUTPUT": "/runs/a", "APISTREAM_INPUT": "/logs"})
    assert (cfg.sinks.output, cfg.source.path) == ("/runs/a", "/logs")


@pytest.mark.parametrize(
    ("overrides", "hashed"),
    [
        ({"enrichment.client_ip": "hash"}, "enrichment.client_ip"),
        ({"enrichment.api_key": "hash"}, "enrichment.api_key"),
    ],
)
def test_a_hash_without_its_key_fails_naming_the_key_and_the_variable(overrides, hashed):
    with pytest.raises(ConfigError) as err:
        load_config(environ={}, overrides=overrides)
    message = str(err.value)
    assert "\n" not in message
    assert "enrichment.hash_key_env" in message
    assert "environment variable APISTREAM_HASH_KEY is not set" in message
    assert hashed in message


def test_a_short_hash_key_fails_without_showing_it():
    env = {"MY_PEPPER": "tooshort-123456"}  # 15 characters
    with pytest.raises(ConfigError) as err:
        load_config(environ=env, overrides={"enrichment.client_ip": "hash"})
    assert "environment variable APISTREAM_HASH_KEY is not set" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_config(
            environ=env,
            overrides={"enrichment.api_key": "hash", "enrichment.hash_key_env": "MY_PEPPER"},
        )
    message = str(err.value)
    assert "enrichment.hash_key_env" in message
    assert "MY_PEPPER is shorter than 16 characters" in message
    assert "tooshort-123456" not in message


def test_hash_key_comes_from_the_named_variable_and_is_no_config_override():
    key = "x" * 16
    cfg = load_config(
        environ={"APISTREAM_HASH_KEY": key},
        overrides={"enrichment.client_ip": "hash", "enrichment.api_key": "hash"},
    )
    assert (cfg.enrichment.client_ip, cfg.enrichment.api_key) == ("hash", "hash")
    assert hash_key(cfg.enrichment, {"APISTREAM_HASH_KEY": key}) == key.encode()
    assert key not in repr(cfg) and key not in str(cfg.model_dump())
    # An APISTREAM_* key variable is not read as a config key (it would be "hash_key:
    # unknown key"), also when it is not the default one and nothing is hashed.
    env = {"APISTREAM_PEPPER": key, "APISTREAM_ENRICHMENT__HASH_KEY_ENV": "APISTREAM_PEPPER"}
    assert load_config(environ=env).enrichment.hash_key_env == "APISTREAM_PEPPER"
    assert load_config(environ={"APISTREAM_HASH_KEY": key}).enrichment.client_ip == "keep"
    assert hash_key(load_config(environ={}).enrichment, {}) is None
    with pytest.raises(ConfigError, match=r"enrichment\.hash_key_env: 'A-B' is not an environment"):
        load_config(environ={}, overrides={"enrichment.hash_key_env": "A-B"})


@pytest.mark.parametrize(
    ("overrides", "keeps"),
    [
        ({}, True),
        ({"enrichment.client_ip": "truncate"}, False),
        ({"enrichment.api_key": "hash"}, False),
        ({"enrichment.client_ip": "truncate", "enrichment.quarantine_raw": "keep"}, True),
        ({"enrichment.quarantine_raw": "drop"}, False),
    ],
)
def test_quarantined_lines_are_dropped_when_callers_are_anonymized_unless_kept(overrides, keeps):
    cfg = load_config(environ={"APISTREAM_HASH_KEY": "k" * 16}, overrides=overrides)
    assert cfg.enrichment.keeps_raw is keeps


def test_an_unknown_quarantine_raw_choice_names_the_key():
    with pytest.raises(ConfigError, match=r"enrichment\.quarantine_raw"):
        load_config(environ={}, overrides={"enrichment.quarantine_raw": "mask"})


def test_a_none_override_is_null_as_in_the_yaml():
    assert load_config().validation.max_age == 30 * 86400.0
    assert load_config(overrides={"validation.max_age": None}).validation.max_age is None
