"""The one FHIR client (async, httpx) every door uses to talk to a FHIR server.

- ``Accept`` / ``Content-Type``: ``application/fhir+json``; a timeout on every request and
  one retry on connect errors (a refused or reset connection, a connect timeout).
- The bearer token goes ONLY to URLs under ``base_url``: a ``next`` link or a reference
  that points elsewhere is refused with :class:`FhirError`, never followed with the token.
  Redirects are not followed either (a redirect could lead the token off the server).
- Logs name the method and the ``Type/id`` path only, never a body or a query string.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from .values import as_list

log = logging.getLogger("fhir_checker.fhirclient")

FHIR_JSON = "application/fhir+json"
_TYPE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
#: Reads run in parallel, but not unboundedly: a claim with 400 lines must not open 400 sockets.
MAX_PARALLEL = 8
#: A search that keeps paging past this is a server bug or a hostile server.
MAX_PAGES = 100
#: Status codes after which a server plainly does not do batch (try reads one by one).
_BATCH_UNSUPPORTED = frozenset({400, 404, 405, 406, 415, 422, 501})


class FhirError(Exception):
    """A FHIR call that failed.

    ``status`` is the HTTP status, ``None`` for a network error or timeout; ``url`` the
    request URL without its query string; ``outcome`` the server's OperationOutcome, if it
    sent one. ``str()`` carries no PHI: the method, the path and the status only.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        url: str = "",
        outcome: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.url = url
        self.outcome = outcome

    @property
    def reason(self) -> str:
        """Short, for lists of what was missing: ``404``, ``timeout``, ``server unreachable``,
        ``malformed JSON``, ``not a FHIR resource``."""
        if self.status is not None and self.status < 300:  # a 2xx whose body we could not use
            return "malformed JSON" if "not JSON" in self.message else "not a FHIR resource"
        if self.status is not None:
            return str(self.status)
        if "timed out" in self.message:
            return "timeout"
        if "cannot connect" in self.message:
            return "server unreachable"
        return "network error" if self.url else "refused"

    @property
    def gone(self) -> bool:
        """The resource is not there (404) or was deleted (410): asking again will not help."""
        return self.status in (404, 410)

    @property
    def transient(self) -> bool:
        """A fault that may pass: no answer, a timeout, 5xx, 408/429, or a body we could not read."""
        return self.status is None or self.status >= 500 or self.status in (408, 429) or self.status < 300


def _strip_query(url: str) -> str:
    return url.split("?", 1)[0]


def _outcome_of(resp: httpx.Response) -> dict[str, Any] | None:
    try:
        body = orjson.loads(resp.content) if resp.content else None
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome" else None


def parse_reference(reference: str) -> tuple[str, str, str | None] | None:
    """``Type/id`` or ``Type/id/_history/v`` -> (type, id, version); None if not that shape."""
    parts = reference.strip("/").split("/")
    if len(parts) == 2:
        rtype, rid, version = parts[0], parts[1], None
    elif len(parts) == 4 and parts[2] == "_history":
        rtype, rid, version = parts[0], parts[1], parts[3]
    else:
        return None
    if not _TYPE.match(rtype) or not _ID.match(rid) or (version is not None and not _ID.match(version)):
        return None
    return rtype, rid, version


class FhirClient:
    """An async FHIR REST client for one server (``base_url``)."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"FHIR base URL must be an absolute http(s) URL, not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._origin = (parts.scheme, parts.netloc.lower())
        self._base_path = parts.path.rstrip("/")
        self._token = token
        self._timeout = timeout
        self._batch_ok: bool | None = None  # learnt on the first batch attempt
        self._http = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            headers={"Accept": FHIR_JSON},
        )
        self._limit = asyncio.Semaphore(MAX_PARALLEL)

    async def __aenter__(self) -> FhirClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # ------------------------------------------------------------------ plumbing

    def is_on_server(self, url: str) -> bool:
        """True when ``url`` is ``base_url`` or under it (same scheme, host, port, path prefix)."""
        parts = urlsplit(url)
        if (parts.scheme, parts.netloc.lower()) != self._origin:
            return False
        path = parts.path.rstrip("/")
        return path == self._base_path or path.startswith(self._base_path + "/")

    def _url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}" if path else self.base_url

    async def _send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        body: dict[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        if not self.is_on_server(url):
            # Never send the token off the server (and never be steered to another host).
            raise FhirError(f"{method} refused: URL is not on the FHIR server {self.base_url}", url="")
        hdrs: dict[str, str] = dict(headers or {})
        if self._token:
            hdrs["Authorization"] = f"Bearer {self._token}"
        content = None
        if body is not None:
            hdrs["Content-Type"] = FHIR_JSON
            content = orjson.dumps(body)
        where = _strip_query(url)
        for attempt in (1, 2):
            try:
                async with self._limit:
                    resp = await self._http.request(method, url, params=params, content=content, headers=hdrs)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if attempt == 1:
                    log.info("FHIR %s %s: connect failed, retrying once", method, where)
                    continue
                raise FhirError(
                    f"{method} {where}: cannot connect ({type(exc).__name__})", url=where
                ) from None
            except httpx.TimeoutException:
                raise FhirError(f"{method} {where}: timed out after {self._timeout:g} s", url=where) from None
            except httpx.HTTPError as exc:
                raise FhirError(f"{method} {where}: {type(exc).__name__}", url=where) from None
            log.debug("FHIR %s %s -> %s", method, where, resp.status_code)
            if resp.status_code >= 400:
                raise FhirError(
                    f"{method} {where}: HTTP {resp.status_code}",
                    status=resp.status_code,
                    url=where,
                    outcome=_outcome_of(resp),
                )
            return resp
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _json(resp: httpx.Response, url: str) -> dict[str, Any]:
        try:
            body = orjson.loads(resp.content)
        except orjson.JSONDecodeError:
            raise FhirError(
                f"{_strip_query(url)}: the server's answer is not JSON", status=resp.status_code, url=url
            ) from None
        if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
            raise FhirError(
                f"{_strip_query(url)}: the server's answer is not a FHIR resource",
                status=resp.status_code,
                url=url,
            )
        return body

    # ------------------------------------------------------------------ reads

    async def read(self, resource_type: str, id: str) -> dict[str, Any]:
        if not _TYPE.match(resource_type) or not _ID.match(id):
            raise FhirError(f"not a FHIR read: {resource_type[:64]}/{id[:64]}")
        url = self._url(f"{resource_type}/{id}")
        return self._json(await self._send("GET", url), url)

    def relative(self, reference: str) -> str:
        """``Type/id[/_history/v]`` for a relative reference or an absolute URL on this server.

        Raises :class:`FhirError` for anything else: another server's URL, ``urn:uuid:``,
        ``#contained``, or a malformed reference.
        """
        ref = reference.strip()
        if "://" in ref:
            if not self.is_on_server(ref):
                raise FhirError("reference refused: it points at another server, not " + self.base_url)
            path = urlsplit(ref).path.rstrip("/")
            ref = path[len(self._base_path) :].lstrip("/")
        if parse_reference(ref) is None:
            raise FhirError(f"not a readable reference: {reference[:80]!r}")
        return ref

    async def read_reference(self, reference: str) -> dict[str, Any]:
        """Read ``Type/id``, ``Type/id/_history/v``, or an absolute URL on this server."""
        rel = self.relative(reference)
        url = self._url(rel)
        return self._json(await self._send("GET", url), url)

    async def read_many(self, references: Sequence[str]) -> dict[str, dict[str, Any] | FhirError]:
        """Read every reference: one batch Bundle where the server does batch, else in parallel.

        Keys are the references as given; values the resource, or the :class:`FhirError`.
        """
        out: dict[str, dict[str, Any] | FhirError] = {}
        todo: dict[str, str] = {}  # reference as given -> Type/id
        for ref in dict.fromkeys(references):
            try:
                todo[ref] = self.relative(ref)
            except FhirError as exc:
                out[ref] = exc
        if not todo:
            return out
        if len(set(todo.values())) > 1 and self._batch_ok is not False:
            batch = await self._read_batch(sorted(set(todo.values())))
            if batch is not None:
                for ref, rel in todo.items():
                    out[ref] = batch[rel]
                return out
        rels = sorted(set(todo.values()))
        results = await asyncio.gather(*(self._read_one(rel) for rel in rels))
        by_rel = dict(zip(rels, results, strict=True))
        for ref, rel in todo.items():
            out[ref] = by_rel[rel]
        return out

    async def _read_one(self, rel: str) -> dict[str, Any] | FhirError:
        try:
            return await self.read_reference(rel)
        except FhirError as exc:
            return exc

    async def _read_batch(self, rels: list[str]) -> dict[str, dict[str, Any] | FhirError] | None:
        """None when the server does not do batch (the caller reads one by one)."""
        request = {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [{"request": {"method": "GET", "url": rel}} for rel in rels],
        }
        try:
            resp = await self._send("POST", self.base_url, body=request)
            answer = self._json(resp, self.base_url)
        except FhirError as exc:
            if exc.status is None or exc.status in (401, 403) or exc.status >= 500:
                # The reads would fail the same way: report it for each, do not retry them.
                return dict.fromkeys(rels, exc)
            if exc.status in _BATCH_UNSUPPORTED:
                self._batch_ok = False
            return None
        entries = answer.get("entry")
        if (
            answer.get("type") != "batch-response"
            or not isinstance(entries, list)
            or len(entries) != len(rels)
        ):
            self._batch_ok = False
            return None
        self._batch_ok = True
        out: dict[str, dict[str, Any] | FhirError] = {}
        for rel, entry in zip(rels, entries, strict=True):
            out[rel] = self._batch_entry(rel, entry)
        return out

    def _batch_entry(self, rel: str, entry: Any) -> dict[str, Any] | FhirError:
        url = self._url(rel)
        entry = entry if isinstance(entry, dict) else {}
        response = entry.get("response") if isinstance(entry.get("response"), dict) else {}
        status_text = str(response.get("status", "")).strip()
        try:
            status = int(status_text.split()[0]) if status_text else 200
        except ValueError:
            status = 500
        resource = entry.get("resource")
        if status < 300 and isinstance(resource, dict) and isinstance(resource.get("resourceType"), str):
            return resource
        outcome = response.get("outcome")
        return FhirError(
            f"GET {url}: HTTP {status} (in batch)",
            status=status if status >= 300 else 502,
            url=url,
            outcome=outcome if isinstance(outcome, dict) else None,
        )

    # ------------------------------------------------------------------ search

    async def search(self, resource_type: str, params: Mapping[str, str]) -> AsyncIterator[dict[str, Any]]:
        """Every resource of every page (``search.mode`` outcome entries skipped)."""
        if not _TYPE.match(resource_type):
            raise FhirError(f"not a FHIR resource type: {resource_type[:64]!r}")
        url: str | None = self._url(resource_type)
        query: Mapping[str, str] | None = params
        seen: set[str] = set()
        pages = 0
        while url is not None:
            if url in seen or pages >= MAX_PAGES:
                raise FhirError(f"search {resource_type}: paging does not end (stopped at {pages} pages)")
            seen.add(url)
            pages += 1
            page = self._json(await self._send("GET", url, params=query), url)
            query = None  # next links carry their own query
            for entry in as_list(page.get("entry")):
                if not isinstance(entry, dict):
                    continue
                res = entry.get("resource")
                mode = (
                    (entry.get("search") or {}).get("mode") if isinstance(entry.get("search"), dict) else None
                )
                if isinstance(res, dict) and mode != "outcome":
                    yield res
            url = next(
                (
                    link.get("url")
                    for link in as_list(page.get("link"))
                    if isinstance(link, dict) and link.get("relation") == "next" and link.get("url")
                ),
                None,
            )
            if url is not None and not self.is_on_server(url):
                raise FhirError(f"search {resource_type}: next link points off the server; not followed")

    # ------------------------------------------------------------------ writes

    async def create(self, resource: dict[str, Any], *, if_none_exist: str | None = None) -> dict[str, Any]:
        rtype = str(resource.get("resourceType", ""))
        if not _TYPE.match(rtype):
            raise FhirError(f"create: not a FHIR resource type: {rtype[:64]!r}")
        url = self._url(rtype)
        headers = {"Prefer": "return=representation"}
        if if_none_exist:
            headers["If-None-Exist"] = if_none_exist
        resp = await self._send("POST", url, body=resource, headers=headers)
        return await self._written(resp, url)

    async def update(self, resource: dict[str, Any]) -> dict[str, Any]:
        rtype, rid = str(resource.get("resourceType", "")), str(resource.get("id", ""))
        if not _TYPE.match(rtype) or not _ID.match(rid):
            raise FhirError(f"update: needs resourceType and id, not {rtype[:64]}/{rid[:64]}")
        url = self._url(f"{rtype}/{rid}")
        resp = await self._send("PUT", url, body=resource, headers={"Prefer": "return=representation"})
        return await self._written(resp, url)

    async def _written(self, resp: httpx.Response, url: str) -> dict[str, Any]:
        """The stored resource: the body, else read back from ``Location``, else ``{}``."""
        if resp.content:
            try:
                return self._json(resp, url)
            except FhirError:
                pass
        location = resp.headers.get("location") or resp.headers.get("content-location")
        if location:
            absolute = location if "://" in location else self._url(location)
            if self.is_on_server(absolute):
                return await self.read_reference(absolute)
        return {}


# ---------------------------------------------------------------------------------------
# Added by the HAPI integration (fhir_checker/hapi): calls the class above does not make.
# Module functions, so the class and its interface stay as agreed.
# ---------------------------------------------------------------------------------------


async def invoke_operation(client: FhirClient, path: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """``POST [base]/{path}`` (e.g. ``Claim/c1/$meta-add``) with a Parameters body."""
    head, _, op = path.rpartition("/$")
    if not op or not re.fullmatch(r"[a-z][a-z\-]{0,63}", op) or (head and parse_reference(head) is None):
        raise FhirError(f"not a FHIR operation path: {path[:80]!r}")
    url = client._url(path)
    resp = await client._send("POST", url, body=parameters)
    return await client._written(resp, url)


async def update_if_match(
    client: FhirClient, resource: dict[str, Any], version_id: str | None
) -> dict[str, Any]:
    """PUT ``Type/id``; with ``If-Match: W/"<version_id>"`` when given (412 if it changed)."""
    if version_id is None:
        return await client.update(resource)
    rtype, rid = str(resource.get("resourceType", "")), str(resource.get("id", ""))
    if not _TYPE.match(rtype) or not _ID.match(rid) or not _ID.match(version_id):
        raise FhirError(f"update: needs resourceType, id and version, not {rtype[:64]}/{rid[:64]}")
    url = client._url(f"{rtype}/{rid}")
    headers = {"Prefer": "return=representation", "If-Match": f'W/"{version_id}"'}
    resp = await client._send("PUT", url, body=resource, headers=headers)
    return await client._written(resp, url)
