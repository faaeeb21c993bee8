"""Filters that build SCRAM-SHA-256 secrets exactly as PostgreSQL stores them."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import stringprep
import unicodedata

from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
filters:
  scram_sha256_secret:
    description: >-
      The SCRAM-SHA-256 secret of a password, in the form PostgreSQL keeps in
      pg_authid.rolpassword and PgBouncer reads from its auth_file:
      C(SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>). The salt is given
      (base64), so the result is deterministic and a role that writes it is idempotent.
      The password is normalised with SASLprep as PostgreSQL does (a password that
      SASLprep refuses is used as raw bytes, as PostgreSQL does too).
    positional: salt, iterations, name
    options:
      _input: {description: The password., type: str, required: true}
      salt: {description: Base64 salt (PostgreSQL uses 16 random bytes)., type: str, required: true}
      iterations: {description: PBKDF2 iterations (PostgreSQL's default is 4096)., type: int}
      name: {description: Variable name quoted in error messages., type: str}
  scram_salt:
    description: >-
      A deterministic 16-byte salt (base64) for one user, derived from a seed with
      HMAC-SHA-256(seed, user). The same seed and user always give the same salt, so the
      secret only changes when the password does; a different seed per environment gives
      different secrets for the same password.
    positional: user, name
"""

EXAMPLES = r"""
# SCRAM-SHA-256$4096:<salt>$<StoredKey>:<ServerKey>
secret: "{{ app_password | scram_sha256_secret(postgresql_scram_salt_seed | scram_salt('app')) }}"
"""

DEFAULT_ITERATIONS = 4096


def _saslprep(password: str) -> bytes:
    """RFC 4013 SASLprep as PostgreSQL applies it (src/common/saslprep.c).

    PostgreSQL falls back to the raw password bytes when the string is not valid for
    SASLprep (prohibited or unassigned code points, bad bidirectional text), so does this.
    """
    raw = password.encode("utf-8")
    if password.isascii():
        return raw
    mapped = "".join(
        " " if stringprep.in_table_c12(ch) else ch
        for ch in password
        if not stringprep.in_table_b1(ch)
    )
    normalised = unicodedata.normalize("NFKC", mapped)
    if not normalised:
        return raw
    prohibited = (
        stringprep.in_table_c12,
        stringprep.in_table_c21,
        stringprep.in_table_c22,
        stringprep.in_table_c3,
        stringprep.in_table_c4,
        stringprep.in_table_c5,
        stringprep.in_table_c6,
        stringprep.in_table_c7,
        stringprep.in_table_c8,
        stringprep.in_table_c9,
        stringprep.in_table_a1,
    )
    if any(check(ch) for ch in normalised for check in prohibited):
        return raw
    if any(stringprep.in_table_d1(ch) for ch in normalised):
        has_l = any(stringprep.in_table_d2(ch) for ch in normalised)
        ends_ral = stringprep.in_table_d1(normalised[0]) and stringprep.in_table_d1(normalised[-1])
        if has_l or not ends_ral:
            return raw
    return normalised.encode("utf-8")


def scram_sha256_secret(
    password: object,
    salt: object,
    iterations: object = DEFAULT_ITERATIONS,
    name: str = "password",
) -> str:
    if not isinstance(password, str) or password == "":
        raise AnsibleFilterError(f"{name}: a non-empty password string is required")
    if not isinstance(salt, str) or salt == "":
        raise AnsibleFilterError(f"{name}: the SCRAM salt must be a non-empty base64 string")
    try:
        salt_bytes = base64.b64decode(salt, validate=True)
    except (binascii.Error, ValueError):
        raise AnsibleFilterError(f"{name}: the SCRAM salt {salt!r} is not valid base64") from None
    if isinstance(iterations, bool) or not str(iterations).isdigit() or int(str(iterations)) < 1:
        raise AnsibleFilterError(f"{name}: SCRAM iterations must be a positive integer")
    rounds = int(str(iterations))
    salted = hashlib.pbkdf2_hmac("sha256", _saslprep(password), salt_bytes, rounds)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    return f"SCRAM-SHA-256${rounds}:{b64(salt_bytes)}${b64(stored_key)}:{b64(server_key)}"


def scram_salt(seed: object, user: object, name: str = "seed") -> str:
    if not isinstance(seed, str) or seed == "":
        raise AnsibleFilterError(f"{name}: a non-empty seed string is required")
    if not isinstance(user, str) or user == "":
        raise AnsibleFilterError(f"{name}: a non-empty user name is required")
    digest = hmac.new(seed.encode("utf-8"), user.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest[:16]).decode("ascii")


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {"scram_sha256_secret": scram_sha256_secret, "scram_salt": scram_salt}
