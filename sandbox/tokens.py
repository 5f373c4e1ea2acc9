"""RS256 signing key, JWKS, and issuing and checking the sandbox's JWTs.

Checking is cached by token string: a benchmark presents the same bearer token
thousands of times, and an RSA verification per request would dominate.
"""

import base64
import hashlib
import json
import threading
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

KEY_FILE = "signing-key.pem"
CACHE_LIMIT = 20000


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _int_b64(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


class TokenError(Exception):
    """A bearer token the sandbox does not accept; ``str()`` says why."""


class Signer:
    """The tenant-independent signing key, as Entra ID uses one set of keys."""

    def __init__(self, state_dir: Path):
        path = state_dir / KEY_FILE
        if path.exists():
            self.key = serialization.load_pem_private_key(path.read_bytes(), None)
        else:
            self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            path.write_bytes(
                self.key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
            path.chmod(0o600)
        self.public_key = self.key.public_key()
        der = self.public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.kid = b64url(hashlib.sha1(der, usedforsecurity=False).digest())
        self._cache = {}
        self._cache_lock = threading.Lock()

    def jwks(self) -> dict:
        numbers = self.public_key.public_numbers()
        return {
            "keys": [
                {
                    "kty": "RSA",
                    "use": "sig",
                    "alg": "RS256",
                    "kid": self.kid,
                    "x5t": self.kid,
                    "n": _int_b64(numbers.n),
                    "e": _int_b64(numbers.e),
                }
            ]
        }

    def issue(self, claims: dict) -> str:
        headers = {"typ": "JWT", "kid": self.kid, "x5t": self.kid}
        claims = dict(claims)
        claims.setdefault("uti", b64url(uuid.uuid4().bytes)[:22])
        return jwt.encode(claims, self.key, algorithm="RS256", headers=headers)

    def verify(self, token: str, *, audience: str, now: float) -> dict:
        """The claims of a token this sandbox signed for ``audience``.

        Raises TokenError with Graph's wording when the token is malformed,
        forged, expired or for another audience.
        """
        claims = self._cache.get(token)
        if claims is None:
            claims = self._decode(token)
            with self._cache_lock:
                if len(self._cache) >= CACHE_LIMIT:
                    self._cache.clear()
                self._cache[token] = claims
        if isinstance(claims, TokenError):
            raise claims
        if claims.get("aud") != audience:
            raise TokenError("Invalid audience.")
        if now >= claims.get("exp", 0):
            raise TokenError("Lifetime validation failed, the token is expired.")
        if now + 300 < claims.get("nbf", 0):
            raise TokenError("Lifetime validation failed, the token is not yet valid.")
        return claims

    def _decode(self, token: str):
        if token.count(".") != 2:
            return TokenError(
                "IDX14100: JWT is not well formed, there are no dots (.).\n"
                "The token needs to be in JWS or JWE Compact Serialization Format."
            )
        try:
            # Lifetimes are checked in verify() against the sandbox clock, which
            # tests move forward: PyJWT would compare iat, nbf and exp with the
            # wall clock and refuse every token issued after the clock moved.
            return jwt.decode(
                token,
                self.public_key,
                algorithms=["RS256"],
                options={
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                },
            )
        except jwt.InvalidSignatureError:
            return TokenError("Access token validation failure.")
        except jwt.PyJWTError:
            return TokenError("Access token validation failure.")

    def clear_cache(self) -> None:
        with self._cache_lock:
            self._cache.clear()


def peek_header(token: str) -> dict:
    """The unverified JOSE header of a compact JWT, or {}."""
    try:
        return json.loads(b64url_decode(token.split(".")[0]))
    except (ValueError, IndexError):
        return {}
