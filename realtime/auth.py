"""JWT validation for the gateway, following the reference's guard (docs/protocol.md).

HS256 with `JWT_SECRET`, or RS256/ES256 with `JWT_PUBLIC_KEY`. The accepted algorithms
are pinned by the configured key, so `alg: none` and algorithm confusion (an HS256
token signed with the public key) are refused. `exp` and `nbf` are checked; `aud` and
`iss` when configured. A token carrying `aud` is refused when no audience is set.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

from indexer.errors import ConfigError
from realtime.config import RealtimeSettings

MIN_HS_KEY_BYTES = 32  # RFC 7518 §3.2; PyJWT warns below this


@dataclass(frozen=True)
class Identity:
    sub: str
    exp: float | None  # seconds since the epoch


class InvalidToken(Exception):
    """The token failed validation; str() says why (never for clients, and it may quote
    the token's own text); `kind` names the failure in a word of ours (for logs)."""

    def __init__(self, reason: str, kind: str) -> None:
        super().__init__(reason)
        self.kind = kind


class TokenValidator:
    def __init__(self, settings: RealtimeSettings) -> None:
        self.audience = settings.jwt_audience
        self.issuer = settings.jwt_issuer
        self.key: str | None
        if settings.jwt_public_key:
            self.key = settings.jwt_public_key
            self.algorithms = [_public_key_algorithm(settings.jwt_public_key)]
        elif settings.jwt_secret:
            if len(settings.jwt_secret.encode()) < MIN_HS_KEY_BYTES:
                raise ConfigError(f"JWT_SECRET must be at least {MIN_HS_KEY_BYTES} bytes (HS256)")
            self.key = settings.jwt_secret
            self.algorithms = ["HS256"]
        else:
            self.key = None  # no key: every presented token is invalid
            self.algorithms = []

    def validate(self, token: object) -> Identity:
        if not isinstance(token, str) or not token or self.key is None:
            if self.key is None:
                raise InvalidToken("no key configured", "no key configured")
            raise InvalidToken("not a string", "not a string")
        try:
            claims = jwt.decode(
                token,
                self.key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["sub"], "verify_aud": self.audience is not None},
            )
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise InvalidToken(str(exc), type(exc).__name__) from None
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise InvalidToken("sub must be a non-empty string", "bad sub")
        if self.audience is None and "aud" in claims:
            raise InvalidToken("token has an audience but none is configured", "unexpected aud")
        exp = claims.get("exp")
        return Identity(sub=sub, exp=float(exp) if exp is not None else None)


def _public_key_algorithm(pem: str) -> str:
    """The one algorithm a PEM public key may verify: RS256 for RSA, ES256 for P-256."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(pem.encode())
    except ValueError as exc:
        raise ConfigError(f"JWT_PUBLIC_KEY is not a PEM public key: {exc}") from None
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1":
        return "ES256"
    raise ConfigError("JWT_PUBLIC_KEY must be an RSA or a P-256 EC public key")


def issue_token(settings: RealtimeSettings, sub: str, ttl: int) -> str:
    """A development HS256 token for `sub`, valid for `ttl` seconds."""
    if not settings.jwt_secret:
        raise ConfigError("JWT_SECRET is not set: `chainpulse token` signs with it")
    if len(settings.jwt_secret.encode()) < MIN_HS_KEY_BYTES:
        raise ConfigError(f"JWT_SECRET must be at least {MIN_HS_KEY_BYTES} bytes for HS256")
    now = int(time.time())
    claims: dict[str, object] = {"sub": sub, "iat": now, "nbf": now, "exp": now + ttl}
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")
