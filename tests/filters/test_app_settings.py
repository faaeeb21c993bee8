"""Unit tests of filter_plugins/app_settings.py."""

import pytest
from ansible.errors import AnsibleFilterError
from app_settings import FilterModule, settings_file_name, settings_problems, url_component


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


def test_filters_are_registered():
    assert set(FilterModule().filters()) == {
        "settings_problems",
        "settings_file_name",
        "url_component",
    }
