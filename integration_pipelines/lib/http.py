"""Shared HTTP plumbing for the Moodle and Zoho clients.

One concept lives in one place here:

- :class:`ClientError`, the root of both clients' exception hierarchies, with the
  ``retryable`` / ``retry_after`` flags the retry loop reads, and :class:`TransportFailure`
  for network errors and timeouts;
- :class:`RetryPolicy` and :func:`call_with_retries`: tenacity with exponential backoff
  and jitter, honouring ``Retry-After`` (capped), with an injectable ``sleep`` so tests
  run without waiting;
- :class:`RequestCounter`: every HTTP request actually sent (retries included), in total
  and per endpoint, so pipelines can report "requests made" and benchmarks can compare;
- :class:`ConcurrencyLimiter`: a resizable semaphore (Zoho caps concurrent calls per
  edition);
- :class:`Redactor`: scrubs secrets (token values and ``token=``-style parameters) from
  any text that may end up in an exception, a log record or a repr;
- :class:`HttpSession`: an ``httpx.Client`` (pooled, with timeouts, or injected) that
  counts, limits concurrency and turns httpx exceptions into :class:`TransportFailure`
  whose message is redacted and whose ``__context__`` does not keep the httpx exception
  (which holds the request, headers and URL) alive.

No Dagster imports; nothing here knows about Moodle or Zoho.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any, TypeVar

import httpx
import orjson
import tenacity
from pydantic import SecretStr

T = TypeVar("T")

USER_AGENT = "integration-pipelines/0.1 (+httpx)"

DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=60.0, write=60.0, pool=30.0)


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


class ClientError(Exception):
    """Root of every error raised by the Moodle and Zoho clients.

    ``retryable`` tells the retry loop whether another attempt may succeed; ``retry_after``
    (seconds) is the server's own hint (``Retry-After``), honoured before the backoff.
    Messages are built by the clients from redacted text only.
    """

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        endpoint: str | None = None,
        status_code: int | None = None,
        retry_after: float | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.endpoint = endpoint
        self.status_code = status_code
        self.retry_after = retry_after
        if retryable is not None:
            self.retryable = retryable

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class TransportFailure(ClientError):
    """The request did not get an HTTP answer: connection refused or reset, timeout, protocol error."""

    retryable = True


# --------------------------------------------------------------------------------------
# Secrets
# --------------------------------------------------------------------------------------

_SECRET_PARAM_RE = re.compile(
    r"(?i)\b(wstoken|token|access_token|refresh_token|client_secret|code|password)=([^&\s\"']+)"
)
_AUTH_HEADER_RE = re.compile(r"(?i)(Zoho-oauthtoken|Bearer)\s+[^\s\"',]+")
_JSON_SECRET_RE = re.compile(
    r"(?i)(\"(?:wstoken|token|access_token|refresh_token|client_secret)\"\s*:\s*\")([^\"]*)(\")"
)


def secret_value(value: str | SecretStr | None) -> str:
    """The plain value of a secret (for building a request, never for text)."""
    if value is None:
        return ""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return str(value)


class Redactor:
    """Removes secret values and ``token=``-style parameters from text.

    Thread-safe: clients add new secrets (a freshly refreshed access token) while other
    threads may be formatting errors.
    """

    MASK = "***"

    def __init__(self, secrets: Iterable[str | SecretStr | None] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        for s in secrets:
            self.add(s)

    def add(self, secret: str | SecretStr | None) -> None:
        value = secret_value(secret)
        # Very short values would redact ordinary words; real tokens are long.
        if len(value) >= 4:
            with self._lock:
                self._secrets.add(value)

    def __call__(self, text: object) -> str:
        out = str(text)
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for s in secrets:
            if s in out:
                out = out.replace(s, self.MASK)
        out = _SECRET_PARAM_RE.sub(lambda m: f"{m.group(1)}={self.MASK}", out)
        out = _AUTH_HEADER_RE.sub(lambda m: f"{m.group(1)} {self.MASK}", out)
        out = _JSON_SECRET_RE.sub(lambda m: f"{m.group(1)}{self.MASK}{m.group(3)}", out)
        return out

    def __repr__(self) -> str:
        return f"Redactor(<{len(self._secrets)} secrets>)"


# --------------------------------------------------------------------------------------
# Counting and concurrency
# --------------------------------------------------------------------------------------


class RequestCounter:
    """Counts HTTP requests actually sent (each retry and each token refresh is one request).

    ``total`` is the number of requests, ``by_endpoint`` splits it by a stable endpoint
    name (the Moodle ``wsfunction``; for Zoho e.g. ``GET /crm/v8/{module}``), ``by_status``
    by HTTP status (``"transport"`` when no answer came), ``by_scope`` by what the sending
    thread was doing (:meth:`scope`), and ``retries`` counts attempts that were retried.
    Thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()
        self.total = 0
        self.retries = 0
        self.by_endpoint: Counter[str] = Counter()
        self.by_status: Counter[str] = Counter()
        self.by_scope: Counter[str] = Counter()

    def record(self, endpoint: str) -> None:
        scope = getattr(self._local, "scope", None)
        with self._lock:
            self.total += 1
            self.by_endpoint[endpoint] += 1
            if scope is not None:
                self.by_scope[scope] += 1

    @contextmanager
    def scope(self, name: str) -> Iterator[None]:
        """Count the requests this thread sends inside the block under ``by_scope[name]`` too
        (for example one Zoho module's, while other threads read other modules)."""
        outer = getattr(self._local, "scope", None)
        self._local.scope = name
        try:
            yield
        finally:
            self._local.scope = outer

    def record_status(self, status: int | str) -> None:
        with self._lock:
            self.by_status[str(status)] += 1

    def record_retry(self) -> None:
        with self._lock:
            self.retries += 1

    def __getitem__(self, endpoint: str) -> int:
        with self._lock:
            return self.by_endpoint[endpoint]

    def __repr__(self) -> str:
        return f"RequestCounter(total={self.total}, retries={self.retries})"


class ConcurrencyLimiter:
    """A semaphore whose limit can change at run time (e.g. once the Zoho edition is known)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("concurrency limit must be at least 1")
        self._cond = threading.Condition()
        self._limit = limit
        self._in_use = 0
        self.peak = 0

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def in_use(self) -> int:
        return self._in_use

    def set_limit(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("concurrency limit must be at least 1")
        with self._cond:
            self._limit = limit
            self._cond.notify_all()

    @contextmanager
    def slot(self) -> Iterator[None]:
        with self._cond:
            while self._in_use >= self._limit:
                self._cond.wait()
            self._in_use += 1
            self.peak = max(self.peak, self._in_use)
        try:
            yield
        finally:
            with self._cond:
                self._in_use -= 1
                self._cond.notify()


# --------------------------------------------------------------------------------------
# Retries
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry.

    ``max_attempts`` counts the first try. Waits grow exponentially from ``initial_wait``
    up to ``max_wait`` with up to ``jitter`` seconds of random jitter. A server
    ``Retry-After`` wins over the backoff when ``honour_retry_after`` is set, capped at
    ``max_retry_after`` so a silly header cannot park a run for hours.
    """

    max_attempts: int = 5
    initial_wait: float = 0.5
    max_wait: float = 30.0
    jitter: float = 0.5
    honour_retry_after: bool = True
    max_retry_after: float = 120.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    @classmethod
    def fast(cls, max_attempts: int = 5) -> RetryPolicy:
        """Tiny waits: for tests and the local sandbox."""
        return cls(max_attempts=max_attempts, initial_wait=0.001, max_wait=0.01, jitter=0.001, max_retry_after=0.05)


class _WaitRetryAfterOrBackoff(tenacity.wait.wait_base):
    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if self.policy.honour_retry_after and retry_after is not None:
            return float(min(max(retry_after, 0.0), self.policy.max_retry_after))
        # Exponential backoff with jitter (written out: tenacity renamed its jitter-wait
        # arguments between 8.x and 9.x, and the pyproject allows both).
        p = self.policy
        exponent = max(retry_state.attempt_number - 1, 0)
        base = min(p.max_wait, p.initial_wait * (2.0**exponent)) if exponent < 64 else p.max_wait
        return float(base + (random.uniform(0, p.jitter) if p.jitter > 0 else 0.0))


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, ClientError) and exc.retryable


def call_with_retries(
    fn: Callable[[], T],
    *,
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
    retry_if: Callable[[BaseException], bool] = is_retryable,
    logger: logging.Logger | None = None,
    counter: RequestCounter | None = None,
    what: str = "request",
) -> T:
    """Run ``fn`` with tenacity; re-raise the last (typed, redacted) error when attempts run out.

    The first attempt runs before tenacity is set up: nearly every call succeeds at once, and
    tenacity's per-call state costs ~0.1 ms, a fifth of a local request's own client work on a
    crawl of tens of thousands of calls. A first failure is handed to tenacity as its first
    attempt, so waits, logging and the attempt count are exactly as if tenacity had run it.
    """
    try:
        return fn()
    except BaseException as error:  # noqa: BLE001 - tenacity decides what is retried, as before
        first_failure: BaseException | None = error

    def attempt() -> T:
        nonlocal first_failure
        if first_failure is not None:
            error, first_failure = first_failure, None
            raise error
        return fn()

    def before_sleep(state: tenacity.RetryCallState) -> None:
        if counter is not None:
            counter.record_retry()
        if logger is not None and state.outcome is not None:
            exc = state.outcome.exception()
            wait = state.next_action.sleep if state.next_action else 0.0
            logger.warning(
                "%s failed (attempt %d/%d): %s; retrying in %.3fs",
                what,
                state.attempt_number,
                policy.max_attempts,
                exc,
                wait,
            )

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(policy.max_attempts),
        wait=_WaitRetryAfterOrBackoff(policy),
        retry=tenacity.retry_if_exception(retry_if),
        sleep=sleep,
        reraise=True,
        before_sleep=before_sleep,
    )
    return retrying(attempt)


def parse_retry_after(value: str | None, *, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now())


# --------------------------------------------------------------------------------------
# The session: pooled httpx client + counting + concurrency + clean transport errors
# --------------------------------------------------------------------------------------


# Twenty digits in a row: the shortest run that can be an integer beyond 64 bits (2**64 has 20).
_LONG_DIGITS = re.compile(rb"\d{20}")


def decode_json(response: httpx.Response) -> Any:
    """The response body decoded as JSON (UTF-8, as both APIs answer); ``ValueError`` when it is not.

    orjson, not ``response.json()``: decoding answers is most of a client's own work on a large
    crawl, and orjson does it several times faster. But orjson turns an integer beyond 64 bits
    into a float, silently (``18446744073709551616`` -> ``1.8446744073709552e+19``), which would
    lose an id. So a body holding a run of 20 digits or more (rare: record ids are 19-digit
    strings) is decoded by the standard library instead, which keeps every integer exact.
    """
    return decode_json_bytes(response.content)


def decode_json_bytes(content: bytes) -> Any:
    """:func:`decode_json` for a body already read."""
    if _LONG_DIGITS.search(content) is None:
        return orjson.loads(content)
    try:
        return json.loads(content)
    except RecursionError:  # orjson's own limit is lower, and it says so as a ValueError
        raise ValueError("JSON nested too deeply") from None


def make_timeout(timeout: float | httpx.Timeout | None) -> httpx.Timeout:
    if timeout is None:
        return DEFAULT_TIMEOUT
    if isinstance(timeout, httpx.Timeout):
        return timeout
    return httpx.Timeout(timeout, connect=min(10.0, float(timeout)))


@dataclass
class HttpSession:
    """An httpx client with request counting, a concurrency cap and redacted transport errors.

    Pass ``client`` to inject an ``httpx.Client`` (it is then not closed by :meth:`close`),
    or ``transport`` (e.g. ``httpx.MockTransport``) to build a pooled client around it.
    """

    redactor: Redactor
    counter: RequestCounter = field(default_factory=RequestCounter)
    timeout: float | httpx.Timeout | None = None
    client: httpx.Client | None = None
    transport: httpx.BaseTransport | None = None
    limiter: ConcurrencyLimiter | None = None
    transport_error: type[TransportFailure] = TransportFailure
    max_connections: int = 20
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger(__name__))

    def __post_init__(self) -> None:
        self._owns_client = self.client is None
        if self.client is None:
            self.client = httpx.Client(
                timeout=make_timeout(self.timeout),
                transport=self.transport,
                limits=httpx.Limits(
                    max_connections=self.max_connections,
                    max_keepalive_connections=self.max_connections,
                    keepalive_expiry=30.0,
                ),
                headers={"User-Agent": USER_AGENT},
                follow_redirects=False,
            )

    def close(self) -> None:
        if self._owns_client and self.client is not None:
            self.client.close()

    @contextmanager
    def _slot(self) -> Iterator[None]:
        if self.limiter is None:
            yield
        else:
            with self.limiter.slot():
                yield

    def _transport_failure(self, exc: httpx.HTTPError, endpoint: str) -> TransportFailure:
        kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
        detail = self.redactor(str(exc)) or type(exc).__name__
        return self.transport_error(f"{endpoint}: request {kind} ({type(exc).__name__}: {detail})", endpoint=endpoint)

    def request(self, method: str, url: str, *, endpoint: str, limited: bool = True, **kwargs: Any) -> httpx.Response:
        """Send one request (counted) and read the body. Raises ``transport_error`` on failure.

        ``limited=False`` skips the concurrency cap (e.g. an OAuth refresh, which is not an
        API call and must not wait behind the calls that need it).
        """
        assert self.client is not None
        failure: TransportFailure | None = None
        response: httpx.Response | None = None
        with self._slot() if limited else nullcontext():
            self.counter.record(endpoint)
            started = time.perf_counter()
            try:
                response = self.client.request(method, url, **kwargs)
            except httpx.HTTPError as exc:  # TransportError, TimeoutException, DecodingError...
                failure = self._transport_failure(exc, endpoint)
        if failure is not None:
            # Raised outside the except block: the httpx exception (with the request, its
            # headers and URL) is not kept as __context__, so no traceback can print it.
            self.counter.record_status("transport")
            raise failure
        assert response is not None  # the request returned, since it did not fail
        self.counter.record_status(response.status_code)
        self.logger.debug("%s %s -> %s in %.3fs", method, endpoint, response.status_code, time.perf_counter() - started)
        return response

    @contextmanager
    def stream(self, method: str, url: str, *, endpoint: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """Like :meth:`request` but leaves the body unread (for big downloads)."""
        assert self.client is not None
        failure: TransportFailure | None = None
        with self._slot():
            self.counter.record(endpoint)
            try:
                cm = self.client.stream(method, url, **kwargs)
                response = cm.__enter__()
            except httpx.HTTPError as exc:
                failure = self._transport_failure(exc, endpoint)
            else:
                self.counter.record_status(response.status_code)
                body_failure: TransportFailure | None = None
                try:
                    yield response
                except httpx.HTTPError as exc:
                    body_failure = self._transport_failure(exc, endpoint)
                finally:
                    cm.__exit__(None, None, None)
                if body_failure is not None:
                    raise body_failure
        if failure is not None:
            self.counter.record_status("transport")
            raise failure
