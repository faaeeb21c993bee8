"""Unit tests of filter_plugins/app_settings.py."""

import pytest
from ansible.errors import AnsibleFilterError
from app_settings import (
    FilterModule,
    postgresql_url,
    settings_file_name,
    settings_problems,
    url_component,
)


@pytest.mark.parametrize(
    ("settings", "secret"),
    [
        (None, False),
        ({}, True),
        ({"MORPHEUS_LOG_LEVEL": "INFO", "MORPHEUS_JOB_ATTEMPTS": 3}, False),
        ({"MORPHEUS_RATE_LIMIT_ENABLED": True, "MORPHEUS_S3_REGION": ""}, False),
        ({"MORPHEUS_SECRET_KEY": "x" * 40}, True),
    ],
)
def test_good_settings_have_no_problem(settings, secret):
    assert settings_problems(settings, "s", secret) == []


@pytest.mark.parametrize(
    ("settings", "secret", "problems"),
    [
        (
            {"morpheus_log_level": "INFO"},
            False,
            [
                "s.morpheus_log_level: not a setting name (upper-case MORPHEUS_*, see"
                " app/src/morpheus/settings.py)"
            ],
        ),
        (
            {"LOG_LEVEL": "INFO", "MORPHEUS_X": "ok"},
            False,
            [
                "s.LOG_LEVEL: not a setting name (upper-case MORPHEUS_*, see"
                " app/src/morpheus/settings.py)"
            ],
        ),
        (
            {"MORPHEUS_TRUSTED_PROXIES": ["10.0.0.1"]},
            False,
            [
                "s.MORPHEUS_TRUSTED_PROXIES: is a list; give a string, number or boolean"
                " (a list as comma-separated or JSON text)"
            ],
        ),
        (
            {"MORPHEUS_S3_BUCKET": None},
            False,
            [
                "s.MORPHEUS_S3_BUCKET: is empty (null); give a string, number or boolean"
                " (a list as comma-separated or JSON text)"
            ],
        ),
        (
            {"MORPHEUS_SECRET_KEY": "line one\nline two"},
            True,
            ["s.MORPHEUS_SECRET_KEY: spans several lines; a setting holds one line"],
        ),
        (
            {"MORPHEUS_REDIS_URL": ""},
            True,
            [
                "s.MORPHEUS_REDIS_URL: is empty; set its vault_* value in the environment's"
                " vault.yml"
            ],
        ),
    ],
)
def test_bad_settings_are_named(settings, secret, problems):
    assert settings_problems(settings, "s", secret) == problems


def test_problems_never_show_a_value():
    secret = "hunter2-not-to-be-printed"
    lines = settings_problems({"MORPHEUS_SECRET_KEY": secret + "\n"}, "s", True)
    assert lines and all(secret not in line for line in lines)


def test_settings_must_be_a_mapping():
    with pytest.raises(AnsibleFilterError, match="s must be a mapping of MORPHEUS_\\* names"):
        settings_problems(["MORPHEUS_X=1"], "s")


@pytest.mark.parametrize(
    ("key", "expected"),
    [("MORPHEUS_DATABASE_URL", "morpheus_database_url"), ("MORPHEUS_S3_KEY", "morpheus_s3_key")],
)
def test_settings_file_name(key, expected):
    assert settings_file_name(key) == expected


@pytest.mark.parametrize("key", ["DATABASE_URL", "morpheus_x", 3])
def test_settings_file_name_refuses(key):
    with pytest.raises(AnsibleFilterError, match="is not a MORPHEUS_\\* setting name"):
        settings_file_name(key)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", "plain"),
        ("a/b+c=", "a%2Fb%2Bc%3D"),
        ("p@ss:w rd%", "p%40ss%3Aw%20rd%25"),
        ("~-._", "~-._"),
        (1234, "1234"),
    ],
)
def test_url_component(value, expected):
    assert url_component(value) == expected


@pytest.mark.parametrize("value", [None, True, ["a"], {"a": 1}])
def test_url_component_refuses(value):
    with pytest.raises(AnsibleFilterError, match="url_component: expected a string"):
        url_component(value)


@pytest.mark.parametrize(
    ("hosts", "arguments", "expected"),
    [
        (
            ["10.0.0.4", "10.0.0.5"],
            ("morpheus", "pw", "morpheus", 6432, 3),
            "postgresql+psycopg://morpheus:pw@/morpheus"
            "?host=10.0.0.4:6432&host=10.0.0.5:6432&connect_timeout=3",
        ),
        # One host is one host still; the order given is the order tried.
        (
            ["10.0.0.5"],
            ("morpheus", "pw", "morpheus_ro", "6432", "3"),
            "postgresql+psycopg://morpheus:pw@/morpheus_ro?host=10.0.0.5:6432&connect_timeout=3",
        ),
        (
            ("db-2.internal", "db-1.internal"),
            ("app user", "p@ss/w:rd%", "morpheus"),
            "postgresql+psycopg://app%20user:p%40ss%2Fw%3Ard%25@/morpheus"
            "?host=db-2.internal:6432&host=db-1.internal:6432",
        ),
    ],
)
def test_postgresql_url(hosts, arguments, expected):
    assert postgresql_url(hosts, *arguments) == expected


@pytest.mark.parametrize(
    ("hosts", "arguments", "message"),
    [
        ([], ("u", "pw", "db"), "expected a non-empty list of hosts"),
        ("10.0.0.4", ("u", "pw", "db"), "expected a non-empty list of hosts"),
        (["10.0.0.4:6432"], ("u", "pw", "db"), "host '10.0.0.4:6432' is not an IPv4 address"),
        (["fd00::4"], ("u", "pw", "db"), "host 'fd00::4' is not an IPv4 address"),
        (["a&host=b"], ("u", "pw", "db"), "host 'a&host=b' is not an IPv4 address"),
        ([None], ("u", "pw", "db"), "host None is not an IPv4 address"),
        (["a", "a"], ("u", "pw", "db"), "a host is named twice in ['a', 'a']"),
        (["a"], ("", "pw", "db"), "the user must be a non-empty string"),
        (["a"], ("u", None, "db"), "the password must be a string, got NoneType"),
        (["a"], ("u", "pw", "db?x=1"), "'db?x=1' is not a database name"),
        (["a"], ("u", "pw", "db", 0), "port must be 1 to 65535, got 0"),
        (["a"], ("u", "pw", "db", "pgb"), "port must be a whole number, got 'pgb'"),
        (["a"], ("u", "pw", "db", 6432, -1), "connect_timeout must be 0 to 3600, got -1"),
        (["a"], ("u", "pw", "db", 6432, True), "connect_timeout must be a whole number"),
    ],
)
def test_postgresql_url_refuses(hosts, arguments, message):
    with pytest.raises(AnsibleFilterError) as caught:
        postgresql_url(hosts, *arguments)
    assert str(caught.value).startswith(f"postgresql_url: {message}"), str(caught.value)


def test_postgresql_url_never_shows_the_password():
    secret = "hunter2-not-to-be-printed"
    for hosts, database in ((["10.0.0.4:6432"], "db"), (["a"], "no good")):
        with pytest.raises(AnsibleFilterError) as caught:
            postgresql_url(hosts, "u", secret, database)
        assert secret not in str(caught.value)


def test_filters_are_registered():
    assert set(FilterModule().filters()) == {
        "postgresql_url",
        "settings_problems",
        "settings_file_name",
        "url_component",
    }
