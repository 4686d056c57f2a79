"""CDS client JWT verification: keys made here with `cryptography`, key sets served by respx."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import jwt
import pytest
import respx
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient

from fhir_checker.service import ServiceConfig, TrustedIssuer, create_app
from fhir_checker.service.auth import AuthError, JwtVerifier

ISS = "https://ehr.example.org"
JKU = "https://ehr.example.org/.well-known/jwks.json"
RSA_JWKS = "https://other-ehr.example.org/keys"
SERVICE = "https://precheck.example.org"
AUD = f"{SERVICE}/cds-services/claim-precheck"

EC_KEY = ec.generate_private_key(ec.SECP384R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwk(public: Any, kid: str, alg: str) -> dict[str, Any]:
    algo = jwt.algorithms.ECAlgorithm if alg.startswith("ES") else jwt.algorithms.RSAAlgorithm
    out: dict[str, Any] = json.loads(algo.to_jwk(public))
    return {**out, "kid": kid, "alg": alg, "use": "sig"}


EC_JWKS = {"keys": [jwk(EC_KEY.public_key(), "ec-1", "ES384")]}
RS_JWKS = {"keys": [jwk(RSA_KEY.public_key(), "rsa-1", "RS384")]}

CONFIG = ServiceConfig(
    public_url=SERVICE,
    issuers={
        ISS: TrustedIssuer(jku=(JKU,)),
        "https://other-ehr.example.org": TrustedIssuer(jwks_url=RSA_JWKS),
    },
)


def claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"iss": ISS, "aud": AUD, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4()), "sub": "client-1"}
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def es384(payload: dict[str, Any], **headers: Any) -> str:
    hdr = {"kid": "ec-1", "jku": JKU, "typ": "JWT", **headers}
    return jwt.encode(
        payload, EC_KEY, algorithm="ES384", headers={k: v for k, v in hdr.items() if v is not None}
    )


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def verify(token: str, verifier: JwtVerifier | None = None) -> dict[str, Any]:
    v = verifier or JwtVerifier(CONFIG)

    async def go() -> dict[str, Any]:
        try:
            return await v.verify(f"Bearer {token}", {SERVICE, AUD})
        finally:
            await v.aclose()

    return asyncio.run(go())


@pytest.fixture
def keys() -> Any:
    with respx.mock(assert_all_called=False) as mock:
        mock.get(JKU).respond(json=EC_JWKS)
        mock.get(RSA_JWKS).respond(json=RS_JWKS)
        yield mock


def test_good_es384_token_and_key_set_cached(keys: Any) -> None:
    v = JwtVerifier(CONFIG)

    async def go() -> None:
        for _ in range(3):
            got = await v.verify(f"Bearer {es384(claims())}", {AUD})
            assert got["iss"] == ISS
        await v.aclose()

    asyncio.run(go())
    assert keys.routes[0].call_count == 1  # fetched once, then cached


def test_good_rs384_token_via_configured_jwks_url(keys: Any) -> None:
    token = jwt.encode(
        claims(iss="https://other-ehr.example.org"), RSA_KEY, algorithm="RS384", headers={"kid": "rsa-1"}
    )
    assert verify(token)["sub"] == "client-1"


def test_wrong_aud(keys: Any) -> None:
    with pytest.raises(AuthError, match="aud"):
        verify(es384(claims(aud="https://someone-else.example.org")))


def test_expired(keys: Any) -> None:
    now = int(time.time())
    with pytest.raises(AuthError, match="expired"):
        verify(es384(claims(iat=now - 600, exp=now - 300)))


def test_iat_in_the_future_and_too_long_lived(keys: Any) -> None:
    now = int(time.time())
    with pytest.raises(AuthError, match="future"):
        verify(es384(claims(iat=now + 600, exp=now + 900)))
    with pytest.raises(AuthError, match="too long"):
        verify(es384(claims(exp=now + 86_400)))


def test_replayed_jti(keys: Any) -> None:
    v = JwtVerifier(CONFIG)
    token = es384(claims(jti="same-jti"))

    async def go() -> None:
        await v.verify(f"Bearer {token}", {AUD})
        with pytest.raises(AuthError, match="replay"):
            await v.verify(f"Bearer {token}", {AUD})
        with pytest.raises(AuthError, match="replay"):  # a new token, same jti
            await v.verify(f"Bearer {es384(claims(jti='same-jti'))}", {AUD})
        await v.aclose()

    asyncio.run(go())


def test_required_claims(keys: Any) -> None:
    with pytest.raises(AuthError, match="jti"):
        verify(es384(claims(jti=None)))
    with pytest.raises(AuthError, match="exp"):
        verify(es384(claims(exp=None)))


def test_alg_none_is_refused(keys: Any) -> None:
    header = b64(json.dumps({"alg": "none", "kid": "ec-1", "jku": JKU}).encode())
    token = f"{header}.{b64(json.dumps(claims()).encode())}."
    with pytest.raises(AuthError, match="not accepted"):
        verify(token)
    assert not keys.routes[0].called


def test_hmac_with_the_public_key_is_refused(keys: Any) -> None:
    """The classic forgery: HS384 'signed' with the issuer's public key as the secret."""
    secret = json.dumps(EC_JWKS["keys"][0]).encode()
    signing = f"{b64(json.dumps({'alg': 'HS384', 'kid': 'ec-1', 'jku': JKU}).encode())}.{b64(json.dumps(claims()).encode())}"
    sig = b64(hmac.new(secret, signing.encode(), hashlib.sha384).digest())
    with pytest.raises(AuthError, match="not accepted"):
        verify(f"{signing}.{sig}")


def test_jku_off_the_allowlist_is_never_fetched(keys: Any) -> None:
    evil = keys.get("https://evil.example.com/jwks.json").respond(json=EC_JWKS)
    with pytest.raises(AuthError, match="jku"):
        verify(es384(claims(), jku="https://evil.example.com/jwks.json"))
    assert not evil.called


def test_unknown_kid(keys: Any) -> None:
    with pytest.raises(AuthError, match="kid"):
        verify(es384(claims(), kid="ec-unknown"))
    with pytest.raises(AuthError, match="no kid"):
        verify(es384(claims(), kid=None))


def test_untrusted_issuer(keys: Any) -> None:
    with pytest.raises(AuthError, match="not trusted"):
        verify(es384(claims(iss="https://stranger.example.org")))


def test_signature_by_another_key(keys: Any) -> None:
    other = ec.generate_private_key(ec.SECP384R1())
    token = jwt.encode(claims(), other, algorithm="ES384", headers={"kid": "ec-1", "jku": JKU})
    with pytest.raises(AuthError, match="not valid"):
        verify(token)


def test_key_of_the_wrong_type_for_alg(keys: Any) -> None:
    keys.get("https://ehr.example.org/rsa.json").respond(
        json={"keys": [{**RS_JWKS["keys"][0], "kid": "ec-1", "alg": None}]}
    )
    cfg = ServiceConfig(
        public_url=SERVICE, issuers={ISS: TrustedIssuer(jku=("https://ehr.example.org/rsa.json",))}
    )
    with pytest.raises(AuthError, match="not a key for ES384"):
        verify(es384(claims(), jku="https://ehr.example.org/rsa.json"), JwtVerifier(cfg))


def test_not_a_jwt_and_no_header() -> None:
    with pytest.raises(AuthError, match="not a JWT"):
        verify("garbage")
    v = JwtVerifier(CONFIG)
    with pytest.raises(AuthError, match="required"):
        asyncio.run(v.verify(None, {AUD}))


def test_the_hook_requires_a_valid_token(keys: Any) -> None:
    with TestClient(create_app(CONFIG)) as client:
        body = {"hook": "org.fhir-checker.claim-create", "hookInstance": "i", "context": {}}
        none = client.post("/cds-services/claim-precheck", json=body)
        assert none.status_code == 401 and none.json()["resourceType"] == "OperationOutcome"
        assert none.headers["www-authenticate"] == "Bearer"
        good = client.post(
            "/cds-services/claim-precheck", json=body, headers={"authorization": f"Bearer {es384(claims())}"}
        )
        assert good.status_code == 400  # past auth: the empty context is what is wrong now
        assert "patientId" in good.json()["issue"][0]["details"]["text"]
        feedback = client.post("/cds-services/claim-precheck/feedback", json={"feedback": []})
        assert feedback.status_code == 401
        assert client.get("/cds-services").status_code == 200  # discovery stays open
