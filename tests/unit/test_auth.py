"""Token validation (pure: no server)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from chainpulse.settings import Settings
from indexer.errors import ConfigError
from realtime.auth import InvalidToken, TokenValidator, issue_token

SECRET = "s" * 32


def hs(claims: dict[str, object], key: str = SECRET) -> str:
    return jwt.encode(claims, key, algorithm="HS256")


def later(seconds: int = 60) -> int:
    return int(time.time()) + seconds


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_valid_hs256_token() -> None:
    identity = TokenValidator(Settings(jwt_secret=SECRET)).validate(
        hs({"sub": "alice", "exp": later()})
    )
    assert identity.sub == "alice" and identity.exp is not None


@pytest.mark.parametrize(
    "token",
    [
        hs({"sub": "alice"}, key="x" * 32),  # wrong key
        hs({"sub": "alice", "exp": int(time.time()) - 10}),  # expired
        hs({"sub": "alice", "nbf": later(86_400)}),  # not yet valid (built at collection)
        hs({"exp": later()}),  # no subject
        hs({"sub": "alice", "aud": "other"}),  # an audience nobody configured
        jwt.encode({"sub": "alice"}, None, algorithm="none"),  # alg: none
        "not.a.token",
        "",
    ],
)
def test_refused_tokens(token: str) -> None:
    with pytest.raises(InvalidToken):
        TokenValidator(Settings(jwt_secret=SECRET)).validate(token)


def test_audience_and_issuer_when_configured() -> None:
    validator = TokenValidator(Settings(jwt_secret=SECRET, jwt_audience="app", jwt_issuer="me"))
    assert validator.validate(hs({"sub": "a", "aud": "app", "iss": "me"})).sub == "a"
    for claims in (
        {"sub": "a", "aud": "app"},
        {"sub": "a", "aud": "x", "iss": "me"},
        {"sub": "a", "iss": "me"},
        {"sub": "a", "aud": "app", "iss": "you"},
    ):
        with pytest.raises(InvalidToken):
            validator.validate(hs(claims))


def test_rs256_public_key_and_algorithm_confusion() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    validator = TokenValidator(Settings(jwt_public_key=public_pem))
    good = jwt.encode({"sub": "bob", "exp": later()}, private, algorithm="RS256")
    assert validator.validate(good).sub == "bob"
    # HS256 signed with the public key as the HMAC secret: the classic confusion attack
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"sub": "mallory"}).encode())
    signature = hmac.new(public_pem.encode(), f"{header}.{body}".encode(), hashlib.sha256)
    with pytest.raises(InvalidToken):
        validator.validate(f"{header}.{body}.{b64(signature.digest())}")
    with pytest.raises(InvalidToken):
        validator.validate(hs({"sub": "bob"}))


def test_es256_public_key() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    token = jwt.encode({"sub": "carol"}, private, algorithm="ES256")
    assert TokenValidator(Settings(jwt_public_key=public_pem)).validate(token).sub == "carol"


def test_configuration_mistakes_fail_loudly() -> None:
    with pytest.raises(ConfigError):
        TokenValidator(Settings(jwt_secret="short"))
    with pytest.raises(ConfigError):
        TokenValidator(Settings(jwt_public_key="-----BEGIN PUBLIC KEY-----\nnope\n"))
    with pytest.raises(InvalidToken):
        TokenValidator(Settings()).validate(hs({"sub": "a"}))  # no key: nothing is valid


def test_issue_token_round_trip() -> None:
    settings = Settings(jwt_secret=SECRET, jwt_audience="app", jwt_issuer="chainpulse")
    token = issue_token(settings, "dave", 60)
    identity = TokenValidator(settings).validate(token)
    assert identity.sub == "dave"
    assert identity.exp is not None and 55 <= identity.exp - time.time() <= 61
    with pytest.raises(ConfigError):
        issue_token(Settings(), "dave", 60)
