"""HTTP over the standard library: JSON bodies, bearer token, retries with backoff.

Retries happen only where they cannot run something twice:

* on 429 and 503 (the server refused the request without doing anything), honouring
  ``Retry-After``;
* on connection errors, for every request when the connection could not even be opened
  (refused, name resolution), and for reads (GET) otherwise (reset, timeout, closed early).

A POST or DELETE whose request may have reached the server is never sent again.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import random
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from ._version import __version__
from .errors import BridgeConnectionError, BridgeError, error_for_status

#: Longest wait a ``Retry-After`` header is honoured for, in seconds.
MAX_RETRY_AFTER = 60.0
#: Statuses answered by a server that did nothing with the request.
RETRY_STATUSES = (429, 503)
_IDEMPOTENT = ("GET", "HEAD", "OPTIONS")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are errors: following one would send the token to another address."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> Optional[urllib.request.Request]:
        return None


@dataclass
class Response:
    status: int
    headers: Mapping[str, str]
    body: Any
    request_id: Optional[str]
    attempts: int


def _parse_retry_after(value: Optional[str]) -> Optional[float]:
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - time.time()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, min(seconds, MAX_RETRY_AFTER))


def _never_sent(reason: BaseException) -> bool:
    """Whether a connection error happened before any byte of the request left."""
    return isinstance(reason, (ConnectionRefusedError, socket.gaierror))


class Transport:
    """Sends requests to one server. Holds the token; never shows it."""

    def __init__(
        self,
        base_url: str,
        token: Optional[str],
        *,
        timeout: float,
        retries: int,
        backoff: float,
        max_backoff: float,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(
                f"base_url: expected an http:// or https:// URL, got {base_url!r}"
            )
        if token is not None and (not isinstance(token, str) or not token.strip()):
            raise ValueError("token: expected a non-empty string")
        if retries < 0:
            raise ValueError("retries: must be 0 or more")
        if timeout <= 0:
            raise ValueError("timeout: must be positive")
        self.base_url = base_url.rstrip("/")
        self.__token = token.strip() if token else None
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self._sleep = sleep
        self._opener = urllib.request.build_opener(_NoRedirect())
        self._user_agent = f"sql-databricks-bridge-sdk/{__version__}"

    def __repr__(self) -> str:
        return f"Transport(base_url={self.base_url!r})"

    def _redact(self, text: str) -> str:
        if self.__token and self.__token in text:
            text = text.replace(self.__token, "***")
        return text

    def _delay(self, attempt: int) -> float:
        base = min(self.backoff * float(2**attempt), self.max_backoff)
        return base * (0.5 + random.random() / 2)

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Optional[Mapping[str, Any]] = None,
        body: Optional[Mapping[str, Any]] = None,
        auth: bool = True,
        retry_statuses: Tuple[int, ...] = RETRY_STATUSES,
        accept_statuses: Tuple[int, ...] = (),
    ) -> Response:
        """Sends a request; returns the answer if it is 2xx (or in ``accept_statuses``), raises the
        matching :class:`BridgeError` otherwise."""
        url = self.base_url + path
        if query:
            pairs = [(k, str(v)) for k, v in query.items() if v is not None]
            if pairs:
                url += "?" + urllib.parse.urlencode(pairs)
        data = None
        headers: Dict[str, str] = {
            "Accept": "application/json",
            "User-Agent": self._user_agent,
            # One id for every attempt: the server's audit log shows them together.
            "x-request-id": str(uuid.uuid4()),
        }
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if auth and self.__token:
            headers["Authorization"] = f"Bearer {self.__token}"
        idempotent = method.upper() in _IDEMPOTENT

        attempt = 0
        while True:
            req = urllib.request.Request(url, data=data, headers=headers, method=method.upper())
            try:
                with self._opener.open(req, timeout=self.timeout) as resp:
                    status, resp_headers, raw = resp.status, resp.headers, resp.read()
            except urllib.error.HTTPError as e:
                status, resp_headers = e.code, e.headers
                try:
                    raw = e.read()
                except (OSError, http.client.HTTPException):
                    raw = b""
                finally:
                    e.close()
            except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
                reason: BaseException = e.reason if isinstance(e, urllib.error.URLError) and isinstance(e.reason, BaseException) else e
                retryable = not isinstance(reason, ssl.SSLCertVerificationError) and (
                    idempotent or _never_sent(reason)
                )
                if retryable and attempt < self.retries:
                    self._sleep(self._delay(attempt))
                    attempt += 1
                    continue
                what = f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__
                raise BridgeConnectionError(
                    self._redact(
                        f"{method.upper()} {self.base_url}{path} failed after {attempt + 1} attempt(s): {what}"
                    ),
                    request_id=headers["x-request-id"],
                ) from None

            request_id = resp_headers.get("x-request-id") if resp_headers else None
            request_id = request_id or headers["x-request-id"]
            if status in retry_statuses and attempt < self.retries:
                wait = _parse_retry_after(resp_headers.get("Retry-After") if resp_headers else None)
                self._sleep(self._delay(attempt) if wait is None else wait)
                attempt += 1
                continue
            parsed = _decode(raw)
            if 200 <= status < 300 or status in accept_statuses:
                return Response(status, resp_headers, parsed, request_id, attempt + 1)
            raise self._error(status, parsed, request_id)

    def _error(self, status: int, parsed: Any, request_id: Optional[str]) -> BridgeError:
        error: Optional[str] = None
        field: Optional[str] = None
        if isinstance(parsed, dict):
            error = _opt_str(parsed.get("error"))
            field = _opt_str(parsed.get("field"))
            detail = _opt_str(parsed.get("detail")) or _opt_str(parsed.get("message")) or json.dumps(parsed)
        else:
            text = parsed if isinstance(parsed, str) else ""
            detail = text.strip()[:500] or (http.client.responses.get(status) or "HTTP error")
        if error is None:
            error = (http.client.responses.get(status) or f"http {status}").lower().replace(" ", "_")
        return error_for_status(
            status,
            error=error,
            detail=self._redact(detail),
            field=field,
            request_id=request_id,
        )


def _opt_str(value: Any) -> Optional[str]:
    return None if value is None else str(value)


def _decode(raw: bytes) -> Any:
    if not raw:
        return None
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text
