"""Unit tests of filter_plugins/scram.py.

The vectors were produced by PostgreSQL 15 itself (SET password_encryption =
'scram-sha-256'; CREATE ROLE ... PASSWORD '...'; then pg_authid.rolpassword): the
filter must reproduce them byte for byte from the same salt and iteration count.
"""

import pytest
from ansible.errors import AnsibleFilterError
from scram import FilterModule, scram_salt, scram_sha256_secret

POSTGRESQL_VECTORS = [
    (
        "correct horse battery staple",
        "SCRAM-SHA-256$4096:3DxC7O6IO3o5hXaSltnf4g==$"
        "I2qlM4j3OD4qROLi8yZUQ4VwgWmmOvnfRUjHfwTKsyE=:oWVm2FMYmhtAIYgnsDH/fJez+a40AU8janFjCEQIgqk=",
    ),
    (
        "pässwörd-ü",
        "SCRAM-SHA-256$4096:0F8sOWjYpZWaoCyb5s57gQ==$"
        "DJ0b+Gra8VF45dihEQAtUWWEQytgfhhP0vkXKzeYPQg=:QVTw/SQrHOaCAkJhmUqchnKZfkQRbbFEKX2SyCgob40=",
    ),
    (
        # The ligature is folded by SASLprep (NFKC) before hashing.
        "\ufb01l\u00e9",
        "SCRAM-SHA-256$4096:1g0KWptYjVs9ctYYovsKNg==$"
        "eZDJmaCmH+GFno9OdTSePN3t4dMIscXzSO8MFJ3TkVU=:D0NNy4z9p2Qf7xlIHWHdcLdlD94/y879WOLvEo2lJPw=",
    ),
]


@pytest.mark.parametrize(("password", "stored"), POSTGRESQL_VECTORS)
def test_secret_matches_postgresql(password, stored):
    iterations, salt = stored.split("$")[1].split(":")
    assert scram_sha256_secret(password, salt, int(iterations)) == stored


def test_secret_is_deterministic_and_salt_dependent():
    first = scram_sha256_secret("pw", "AAAAAAAAAAAAAAAAAAAAAA==")
    assert first == scram_sha256_secret("pw", "AAAAAAAAAAAAAAAAAAAAAA==")
    assert first != scram_sha256_secret("pw", "AQAAAAAAAAAAAAAAAAAAAA==")
    assert first.startswith("SCRAM-SHA-256$4096:AAAAAAAAAAAAAAAAAAAAAA==$")


def test_nfkc_equivalent_passwords_give_one_secret():
    # SASLprep folds the ligature "ﬁ" to "fi", as PostgreSQL does.
    salt = "3DxC7O6IO3o5hXaSltnf4g=="
    assert scram_sha256_secret("ﬁlé", salt) == scram_sha256_secret("filé", salt)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("", "AAAA"), "pw: a non-empty password string is required"),
        ((None, "AAAA"), "pw: a non-empty password string is required"),
        (("x", ""), "pw: the SCRAM salt must be a non-empty base64 string"),
        (("x", "not base64!"), "pw: the SCRAM salt 'not base64!' is not valid base64"),
        (("x", "AAAA", 0), "pw: SCRAM iterations must be a positive integer"),
        (("x", "AAAA", "many"), "pw: SCRAM iterations must be a positive integer"),
        (("x", "AAAA", True), "pw: SCRAM iterations must be a positive integer"),
    ],
)
def test_secret_refuses(args, message):
    with pytest.raises(AnsibleFilterError) as error:
        scram_sha256_secret(*args, name="pw")
    assert str(error.value) == message


def test_salt_is_deterministic_per_seed_and_user():
    salt = scram_salt("seed-1", "app")
    assert salt == scram_salt("seed-1", "app")
    assert salt != scram_salt("seed-1", "exporter")
    assert salt != scram_salt("seed-2", "app")
    assert len(salt) == 24  # 16 bytes in base64


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("", "app"), "s: a non-empty seed string is required"),
        (("seed", ""), "s: a non-empty user name is required"),
        ((None, "app"), "s: a non-empty seed string is required"),
    ],
)
def test_salt_refuses(args, message):
    with pytest.raises(AnsibleFilterError) as error:
        scram_salt(*args, name="s")
    assert str(error.value) == message


def test_filters_are_registered():
    assert set(FilterModule().filters()) == {"scram_sha256_secret", "scram_salt"}
