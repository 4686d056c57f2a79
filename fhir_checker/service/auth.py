"""CDS client authentication: the JWT a CDS client sends as ``Authorization: Bearer``.

Checked, in order: header ``alg`` is ES384 or RS384 (never ``none``, never HMAC: an HMAC
"verified" with a public key is the classic forgery); a ``kid``; ``iss`` on the allowlist;
``jku``, when given, on that issuer's allowlist (the key set is fetched only from there);
the signature with the key named by ``kid``; ``aud`` = this service's URL; ``exp``,
``iat`` (not in the future, lifetime capped); ``jti`` not seen before within the token's
lifetime. Key sets are fetched with httpx and cached.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Collection
from typing import Any, Protocol

import httpx
import jwt

from .config import ServiceConfig, TrustedIssuer
from .errors import ServiceError

log = logging.getLogger("fhir_checker.service.auth")

ALLOWED_ALGS = frozenset({"ES384", "RS384"})
_KTY = {"ES384": "EC", "RS384": "RSA"}
#: An unknown kid refetches a key set (keys rotate), but at most this often per URL.
MIN_REFRESH_SECONDS = 60.0
MAX_REPLAY_ENTRIES = 200_000


class AuthError(ServiceError):
    def __init__(self, text: str) -> None:
        super().__init__(401, text, code="login", headers={"WWW-Authenticate": "Bearer"})


class JwksCache:
    """JWK Sets by URL, kept ``ttl`` seconds."""

    def __init__(self, ttl: float, timeout: float = 5.0) -> None:
        self.ttl = ttl
        self.timeout = timeout
        self._sets: dict[str, tuple[float, dict[str, dict[str, Any]]]] = {}
        self._http: httpx.AsyncClient | None = None

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def _fetch(self, url: str) -> dict[str, dict[str, Any]]:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.timeout, follow_redirects=False)
        try:
            resp = await self._http.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise AuthError(f"cannot fetch the issuer's key set ({type(exc).__name__})") from None
        if resp.status_code != 200:
            raise AuthError(f"cannot fetch the issuer's key set (HTTP {resp.status_code})")
        try:
            body = resp.json()
        except ValueError:
            raise AuthError("the issuer's key set is not JSON") from None
        return index_jwks(body)

    async def key(self, url: str, kid: str) -> dict[str, Any] | None:
        now = time.monotonic()
        hit = self._sets.get(url)
        if (
            hit is None
            or now - hit[0] > self.ttl
            or (kid not in hit[1] and now - hit[0] > MIN_REFRESH_SECONDS)
        ):
            keys = await self._fetch(url)
            self._sets[url] = (now, keys)
            hit = self._sets[url]
        return hit[1].get(kid)


def index_jwks(body: Any) -> dict[str, dict[str, Any]]:
    keys = body.get("keys") if isinstance(body, dict) else None
    if not isinstance(keys, list):
        raise AuthError("the issuer's key set has no keys")
    return {k["kid"]: k for k in keys if isinstance(k, dict) and isinstance(k.get("kid"), str)}


class ReplayCache:
    """``(iss, jti)`` pairs seen, each kept until its token expires."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], float] = {}
        self._expiry: list[tuple[float, tuple[str, str]]] = []

    def _prune(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] < now:
            _, key = heapq.heappop(self._expiry)
            if self._seen.get(key, now + 1) < now:
                del self._seen[key]

    def seen_before(self, iss: str, jti: str, exp: float, now: float) -> bool:
        """Record the pair; True when it was already there (a replay)."""
        self._prune(now)
        key = (iss, jti)
        if key in self._seen:
            return True
        if len(self._seen) >= MAX_REPLAY_ENTRIES:
            raise AuthError("too many tokens in flight; try again shortly")
        self._seen[key] = exp
        heapq.heappush(self._expiry, (exp, key))
        return False


class ReplayGuard(Protocol):
    """A jti replay cache: :class:`ReplayCache`, or one shared by worker processes."""

    def seen_before(self, iss: str, jti: str, exp: float, now: float) -> bool: ...


class JwtVerifier:
    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.jwks = JwksCache(config.jwks_cache_seconds)
        self.replay: ReplayGuard = ReplayCache()

    async def aclose(self) -> None:
        await self.jwks.aclose()

    async def verify(self, authorization: str | None, audiences: Collection[str]) -> dict[str, Any]:
        """The token's claims; :class:`AuthError` (401) for anything wrong with it."""
        if not authorization or not authorization.lower().startswith("bearer "):
            raise AuthError("a CDS client JWT is required: Authorization: Bearer <jwt>")
        token = authorization[7:].strip()
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise AuthError("the bearer token is not a JWT") from None
        alg = header.get("alg")
        if alg not in ALLOWED_ALGS:
            raise AuthError(f"JWT alg {str(alg)[:20]!r} is not accepted (ES384 or RS384 only)")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthError("the JWT header has no kid")
        iss = unverified.get("iss")
        issuer = self.config.issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None or not isinstance(iss, str):
            raise AuthError("the JWT issuer is not trusted by this service")
        jwk = await self._key(issuer, header.get("jku"), kid)
        if jwk.get("alg") not in (None, alg) or jwk.get("kty") != _KTY[alg]:
            raise AuthError("the key named by kid is not a key for " + alg)
        try:
            key = jwt.PyJWK(jwk, algorithm=alg)
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.key,
                algorithms=[alg],
                audience=list(audiences),
                issuer=iss,
                leeway=self.config.jwt_leeway_seconds,
                options={"require": ["exp", "iat", "iss", "aud", "jti"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("the JWT has expired") from None
        except jwt.InvalidAudienceError:
            raise AuthError("the JWT aud is not this service's URL") from None
        except jwt.ImmatureSignatureError:
            raise AuthError("the JWT iat is in the future") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(f"the JWT has no {exc.claim} claim") from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"the JWT is not valid ({type(exc).__name__})") from None
        exp, iat = float(claims["exp"]), float(claims["iat"])
        if exp - iat > self.config.jwt_max_lifetime_seconds:
            raise AuthError("the JWT lives too long (exp - iat over the allowed lifetime)")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise AuthError("the JWT jti must be a non-empty string")
        if self.replay.seen_before(iss, jti, exp + self.config.jwt_leeway_seconds, time.time()):
            raise AuthError("the JWT jti was already used (replay)")
        return claims

    async def _key(self, issuer: TrustedIssuer, jku: Any, kid: str) -> dict[str, Any]:
        if jku is not None:
            if not isinstance(jku, str) or jku not in issuer.jku:
                raise AuthError("the JWT jku is not on this issuer's allowlist")
            found = await self.jwks.key(jku, kid)
        elif issuer.jwks is not None:
            found = index_jwks(issuer.jwks).get(kid)
        elif issuer.jwks_url is not None:
            found = await self.jwks.key(issuer.jwks_url, kid)
        else:
            raise AuthError("the JWT has no jku and no key set is configured for its issuer")
        if found is None:
            raise AuthError("no key with the JWT's kid in the issuer's key set")
        return found
