"""Retries for the reminder scans: the EHR throttles (429 + Retry-After) and has bad minutes (5xx).

    policy = RetryPolicy(attempts=4, max_wait=30.0)
    token = retrying(lambda: tokens.token(endpoint, token_url, SCOPES), policy=policy, what="token")

    fhir = RetryingFhir(container.fhir)     # pages go through container.fhir's SafeHttp and loopback rule
    for page in fhir.search_pages(base_url, lambda: tokens.token(...), "Appointment",
                                  [("location", "32216101"), ("date", "ge2026-01-15T00:00:00-06:00"),
                                   ("date", "lt2026-01-18T00:00:00-06:00"), ("_count", "100")]):
        for appointment in page.resources: ...   # R4B models; page.skipped: ids of bad entries

Only ``UpstreamUnavailable`` is retried: the FHIR and token clients raise it for 429 and 5xx
(with the server's Retry-After) and the SSRF-safe client for timeouts. Everything else (401,
403, 404, a refused address, a body that is not FHIR) fails at once: trying again cannot help.

How long to wait before attempt *n + 1*:

- the server said Retry-After: exactly that (it knows best), unless it is more than
  ``max_wait`` or would pass the ``deadline``: then the error is raised at once, with its
  ``retry_after``, so the caller (a timer) comes back later instead of sooner than asked;
- otherwise exponential backoff with jitter: ``min(cap, base * 2**(n-1))``, of which a random
  half (so that a stamp's scans, throttled together, do not retry together), never past the
  deadline.

Why the scans walk pages themselves (:meth:`RetryingFhir.search_pages`) rather than retry
``FhirRestClient.search``: a failure on page 7 of 10 then repeats one GET of page 7's ``next``
URL (Cerner's ``-pageContext`` stays valid), not the whole search; a location's pages stream
to the caller one by one; and a scan may walk more than ``rest.MAX_PAGES`` (10) pages (a busy
department over a three-day window, at Cerner's ``_count`` cap of 100, is more than 1000
appointments). Each page goes through the same SSRF-safe client, bearer token, Accept header
and status mapping as ``rest.FhirRestClient``; ``next`` links are followed on the base URL's
origin only; an entry that does not parse is skipped and logged by its id, never its content.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlencode

from fhir.resources.R4B.resource import Resource
from pydantic import BaseModel, ValidationError

from connector.adapters.fhir.parsing import FhirParseError, parse_resource
from connector.adapters.fhir.rest import SYSTEM, check_status, next_link, origin_of
from connector.errors import InvalidUpstreamData, UpstreamUnavailable
from connector.services.ports import FhirReader, SafeHttp

T = TypeVar("T")

FHIR_JSON = "application/fhir+json"
MAX_SCAN_PAGES = 200
_RESOURCE_TYPE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
_FHIR_ID = re.compile(r"^[A-Za-z0-9.-]{1,64}$")

log = logging.getLogger("connector.fhir.retry")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4  # in all, the first one included
    max_wait: float = 30.0  # the longest single wait, Retry-After included
    base: float = 0.5  # first backoff step (seconds) without Retry-After
    cap: float = 8.0  # the largest backoff step

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.max_wait < 0 or self.base < 0 or self.cap < 0:
            raise ValueError("attempts must be at least 1 and the waits not negative")

    def backoff(self, attempt: int, jitter: float) -> float:
        """The wait after failed attempt ``attempt`` (1-based) without Retry-After; ``jitter`` in [0, 1)."""
        step = min(self.cap, self.base * 2 ** (attempt - 1))
        return min(self.max_wait, step / 2 + jitter * step / 2)


def retrying(call: Callable[[], T], *, policy: RetryPolicy = RetryPolicy(), sleep: Callable[[float], None] = time.sleep,
             clock: Callable[[], float] = time.monotonic, deadline: float | None = None,
             jitter: Callable[[], float] = random.random, what: str = "call") -> T:
    """``call()``, tried up to ``policy.attempts`` times while it raises ``UpstreamUnavailable``.

    ``deadline`` is a ``clock()`` time no wait may pass (a timer's remaining budget). ``what``
    names the call in log lines (ids and words only, never URLs or tokens)."""
    attempt = 1
    while True:
        try:
            return call()
        except UpstreamUnavailable as error:
            wait = _wait(error, attempt, policy, clock, deadline, jitter)
            if wait is None:
                raise
            log.warning("%s unavailable (%s, attempt %d of %d); retrying in %.2f s", what, type(error).__name__,
                        attempt, policy.attempts, wait)
            sleep(wait)
            attempt += 1


def _wait(error: UpstreamUnavailable, attempt: int, policy: RetryPolicy, clock: Callable[[], float],
          deadline: float | None, jitter: Callable[[], float]) -> float | None:
    """How long to wait before trying again, or None to give up now."""
    if attempt >= policy.attempts:
        return None
    left = None if deadline is None else deadline - clock()
    if error.retry_after is not None:
        asked = max(float(error.retry_after), 0.0)
        if asked > policy.max_wait or (left is not None and asked > left):
            return None  # never come back sooner than the server asked
        return asked
    wait = policy.backoff(attempt, min(max(jitter(), 0.0), 1.0))
    if left is not None:
        if left <= 0:
            return None
        wait = min(wait, left)
    return wait


@dataclass(frozen=True)
class SearchPage:
    number: int  # 1 for the first page
    resources: list[Resource]
    skipped: list[str] = field(default_factory=list)  # ids (or "#index") of entries that did not parse
    total_entries: int = 0  # entries of the searched type on the page, parsed or not


class RetryingFhir:
    """A ``FhirReader`` whose reads and searches are retried; plus :meth:`search_pages` for scans.

    ``patch`` is passed through untried again: a retried PATCH whose first attempt did reach
    the EHR would only meet a 409 (If-Match), and scans do not patch."""

    def __init__(self, inner: FhirReader, http: SafeHttp | None = None, *, allow_loopback: bool | None = None,
                 policy: RetryPolicy = RetryPolicy(), sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic, jitter: Callable[[], float] = random.random,
                 max_pages: int = MAX_SCAN_PAGES):
        """``http`` / ``allow_loopback``: what the pages are fetched with; left out, those of
        ``inner`` (a ``FhirRestClient``), so ``RetryingFhir(container.fhir)`` pages through the
        same SSRF-safe client with the same loopback rule as every other FHIR call."""
        self._inner = inner
        self._http = http if http is not None else getattr(inner, "_http", None)
        if self._http is None:
            raise TypeError("RetryingFhir needs the SafeHttp its pages go through (or a FhirRestClient to take it from)")
        self._allow_loopback = (allow_loopback if allow_loopback is not None
                                else bool(getattr(inner, "_allow_loopback", False)))
        self._policy = policy
        self._sleep = sleep
        self._clock = clock
        self._jitter = jitter
        self._max_pages = max_pages

    def _retry(self, call: Callable[[], T], what: str, deadline: float | None = None) -> T:
        return retrying(call, policy=self._policy, sleep=self._sleep, clock=self._clock, deadline=deadline,
                        jitter=self._jitter, what=what)

    # -- FhirReader ------------------------------------------------------------------------------

    def read(self, base_url: str, access_token: str, resource_type: str, resource_id: str) -> Any:
        return self._retry(lambda: self._inner.read(base_url, access_token, resource_type, resource_id),
                           f"{resource_type} read")

    def read_versioned(self, base_url: str, access_token: str, resource_type: str,
                       resource_id: str) -> tuple[Any, str | None]:
        return self._retry(lambda: self._inner.read_versioned(base_url, access_token, resource_type, resource_id),
                           f"{resource_type} read")

    def search(self, base_url: str, access_token: str, resource_type: str,
               params: list[tuple[str, str]]) -> list[Any]:
        return [r for page in self.search_pages(base_url, access_token, resource_type, params) for r in page.resources]

    def patch(self, base_url: str, access_token: str, resource_type: str, resource_id: str,
              operations: list[dict], *, if_match: str) -> str | None:
        return self._inner.patch(base_url, access_token, resource_type, resource_id, operations, if_match=if_match)

    # -- scans -----------------------------------------------------------------------------------

    def search_pages(self, base_url: str, access_token: str | Callable[[], str], resource_type: str,
                     params: list[tuple[str, str]], *, deadline: float | None = None,
                     select: Callable[[dict], bool] | None = None,
                     model: type[BaseModel] | None = None) -> Iterator[SearchPage]:
        """The search's pages, one GET each (retried alone), following ``next`` links.

        ``access_token``: the token, or a function returning it, called before every page (a
        cached backend services token stays fresh across a long walk). Raises like
        ``FhirRestClient.search``; ``InvalidUpstreamData`` after ``max_pages`` pages (a scan
        must not silently miss appointments). ``select``: only entries whose JSON it accepts are
        parsed and returned (parsing is the costly part of a scan). ``model``: a pydantic model
        the entries are validated as instead of their full R4B model (a projection of the few
        fields a caller reads)."""
        if not _RESOURCE_TYPE.fullmatch(resource_type):
            raise ValueError("not a FHIR resource type")
        what = f"{resource_type} search"
        url: str | None = f"{base_url}/{resource_type}?{urlencode(params)}"
        origin = origin_of(base_url)
        number = 0
        while url is not None:
            number += 1
            if number > self._max_pages:
                raise InvalidUpstreamData(f"the EHR's {what} had more than {self._max_pages} pages")
            page_url = url
            bundle = self._retry(lambda: self._get_bundle(page_url, access_token, what), f"{what} page {number}",
                                 deadline)
            yield _page(bundle, resource_type, number, select, model)
            url = next_link(bundle)
            if url is not None and origin_of(url) != origin:
                raise InvalidUpstreamData(f"the EHR's {what} linked to another host")

    def _get_bundle(self, url: str, access_token: str | Callable[[], str], what: str) -> dict:
        token = access_token() if callable(access_token) else access_token
        response = self._http.get(url, accept=FHIR_JSON, headers={"Authorization": f"Bearer {token}"},
                                  allow_loopback=self._allow_loopback)
        check_status(response, what, SYSTEM)
        try:
            bundle = response.json()
        except ValueError:
            raise InvalidUpstreamData(f"the EHR's {what} answer is not JSON") from None
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            raise InvalidUpstreamData(f"the EHR's {what} did not answer with a Bundle")
        return bundle


def _page(bundle: dict, resource_type: str, number: int, select: Callable[[dict], bool] | None = None,
          model: type[BaseModel] | None = None) -> SearchPage:
    resources: list[Resource] = []
    skipped: list[str] = []
    total = 0
    for index, entry in enumerate(bundle.get("entry") or []):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or resource.get("resourceType") != resource_type:
            continue  # OperationOutcome warnings, included resources
        total += 1
        if select is not None and not select(resource):
            continue
        try:
            resources.append(model.model_validate(resource) if model is not None
                             else parse_resource(resource, expected=resource_type).resource)
        except (FhirParseError, ValidationError) as exc:
            label = _label(resource, index)
            skipped.append(label)
            # The id and where it failed only: never a value from the resource.
            why = exc.message if isinstance(exc, FhirParseError) else _where(exc)
            log.warning("skipped %s %s on search page %d: %s", resource_type, label, number, why)
    return SearchPage(number, resources, skipped, total)


def _where(exc: ValidationError) -> str:
    """A projection's validation error as paths and kinds (pydantic's messages quote input)."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['type']}" for e in exc.errors()[:3])


def _label(resource: dict, index: int) -> str:
    rid = resource.get("id")
    return rid if isinstance(rid, str) and _FHIR_ID.fullmatch(rid) else f"#{index}"
