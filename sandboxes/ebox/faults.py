"""Fault injection: what `PUT /_sandbox/faults` sets, and the ASGI layer that applies it.

Contract calls (federation and Message Registry) can get latency, error answers (408/425/429/5xx with
an optional Retry-After), an outage of N seconds, answers that come too late, dropped connections, a
400 "Invalid access token" and configured NO_DIGITAL_USER answers; what a gateway or an operator's
misconfiguration gives: a publication answered `200` with an HTML page or `201 {}` (processed, its
answer replaced), `400 INVALID_SENDER`, a `403` for the whole application; and a token endpoint whose
clock runs behind the client's. The token endpoint has its own error and late-answer faults, so a
client's token retries are exercised too. The sandbox's `/_sandbox` routes never fail.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from starlette.responses import HTMLResponse, JSONResponse

from sandboxes.ebox.validation import TOKEN_PATH, ApiError

if TYPE_CHECKING:
    from sandboxes.ebox.state import SandboxState

ERROR_STATUSES = (408, 425, 429, 500, 502, 503, 504)
Fault = Literal["error", "timeout", "drop", "invalid_token", "outage", "html_200", "empty_201"]
# The header that marks an answer a fault put in the eBox's place (a gateway's), outside the contract.
FAULT_HEADER = "X-Sandbox-Fault"
GATEWAY_PAGE = (
    "<!DOCTYPE html><html><head><title>Service unavailable</title></head>"
    "<body><h1>Sorry</h1><p>The service is temporarily unavailable. Please try again later.</p></body></html>"
)


@dataclass
class Faults:
    """The settings. For contract calls the `*_next` counters come first, in the order fail,
    timeout, drop, invalid token; then one draw decides between error, timeout and drop by their
    rates. A timeout and a drop happen *after* the call was processed (a publication is stored): the
    answer is lost, which is what an Idempotency-Key is for."""

    error_rate: float = 0.0
    error_status: int = 503  # one of ERROR_STATUSES; the token endpoint's errors use it too
    retry_after_seconds: int | None = None
    timeout_rate: float = 0.0
    timeout_delay_seconds: float = 35.0
    fail_next: int = 0  # the next N contract calls answer error_status, whatever the rates
    timeout_next: int = 0  # then the next N contract calls answer late
    seed: int | None = None
    latency_ms: int = 0  # added to every contract call before it is handled
    drop_rate: float = 0.0  # share of contract calls whose connection is closed without an answer
    drop_next: int = 0  # then the next N contract calls are dropped that way
    # The next N contract calls answer 400 "Invalid access token" (the federation documents that
    # answer) and the token they carried is revoked, so only a new token helps.
    invalid_token_next: int = 0
    # Publications answered 201 NO_DIGITAL_USER whatever the recipient's registration (new keys only,
    # recipients never answered without it); the recipient then counts as one who never opened the
    # eBox (no lastConnectionDate from then on): the search and the answers tell the same story.
    no_digital_user_rate: float = 0.0
    no_digital_user_next: int = 0
    # The token endpoint: the next N token requests answer error_status, then a share of them.
    token_fail_next: int = 0
    token_error_rate: float = 0.0
    token_timeout_next: int = 0  # the next N token requests are answered late (a token is issued)
    # An outage: for this many seconds from the setting, every contract call and token request answers
    # error_status (with retry_after_seconds as Retry-After, when set), nothing processed.
    outage_seconds: float = 0.0
    # A gateway in front of the eBox: the next N publications are processed, and answered 200 with an
    # HTML page, or 201 with `{}`.
    html_200_next: int = 0
    empty_201_next: int = 0
    # Misconfiguration: every publication answered 400 INVALID_SENDER; every contract call answered
    # 403 (the application may not use the service). Nothing is processed.
    invalid_sender: bool = False
    forbidden: bool = False
    # The token endpoint's clock runs this many seconds behind the client's: an assertion's `iat`
    # looks issued in the future to it.
    clock_skew_seconds: int = 0

    def validate(self) -> Faults:
        rates = (self.error_rate, self.timeout_rate, self.drop_rate)
        if not (all(0 <= r <= 1 for r in rates) and sum(rates) <= 1):
            raise ValueError(
                "error_rate, timeout_rate and drop_rate must be within 0..1 and add up to at most 1"
            )
        for name in ("no_digital_user_rate", "token_error_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be within 0..1")
        if self.error_status not in ERROR_STATUSES:
            raise ValueError("error_status must be 429, 500 or 503")
        for name in (
            "latency_ms",
            "fail_next",
            "timeout_next",
            "drop_next",
            "invalid_token_next",
            "no_digital_user_next",
            "token_fail_next",
            "token_timeout_next",
            "outage_seconds",
            "html_200_next",
            "empty_201_next",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        return self


class FaultInjector:
    """The current Faults and the random draws over them; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults = Faults()
        self._rng = random.Random()
        self._outage_until = 0.0
        # Calls answered by the outage since it was set, and all contract calls and token requests.
        self.outage_answers = 0
        self.calls = 0

    def set(self, **settings) -> Faults:
        """Replace the settings (unnamed ones go back to their defaults)."""
        faults = Faults(**settings).validate()
        with self._lock:
            self._faults = faults
            self._rng = random.Random(faults.seed)
            self._outage_until = time.monotonic() + faults.outage_seconds if faults.outage_seconds else 0.0
            self.outage_answers = 0
        return dataclasses.replace(faults)

    def in_outage(self) -> bool:
        """Whether this call falls in the outage (and counts it when it does)."""
        with self._lock:
            self.calls += 1
            if self._outage_until and time.monotonic() < self._outage_until:
                self.outage_answers += 1
                return True
            return False

    def stats(self) -> dict:
        with self._lock:
            left = max(0.0, self._outage_until - time.monotonic()) if self._outage_until else 0.0
            return {"calls": self.calls, "outage_answers": self.outage_answers, "outage_left_seconds": left}

    def roll_publication(self) -> Fault | None:
        """A gateway's replacement of the next publication's answer, if any."""
        with self._lock:
            for counter, fault in (("html_200_next", "html_200"), ("empty_201_next", "empty_201")):
                if getattr(self._faults, counter) > 0:
                    setattr(self._faults, counter, getattr(self._faults, counter) - 1)
                    return fault
            return None

    def get(self) -> Faults:
        with self._lock:
            return dataclasses.replace(self._faults)

    def reset(self) -> None:
        self.set()

    def roll(self) -> Fault | None:
        """The fault of the next contract call, if any."""
        with self._lock:
            faults = self._faults
            for counter, fault in (
                ("fail_next", "error"),
                ("timeout_next", "timeout"),
                ("drop_next", "drop"),
                ("invalid_token_next", "invalid_token"),
            ):
                if getattr(faults, counter) > 0:
                    setattr(faults, counter, getattr(faults, counter) - 1)
                    return fault
            if not faults.error_rate and not faults.timeout_rate and not faults.drop_rate:
                return None
            draw = self._rng.random()
            if draw < faults.error_rate:
                return "error"
            if draw < faults.error_rate + faults.timeout_rate:
                return "timeout"
            if draw < faults.error_rate + faults.timeout_rate + faults.drop_rate:
                return "drop"
            return None

    def roll_token(self) -> Literal["error", "timeout"] | None:
        """The fault of the next token request, if any."""
        with self._lock:
            faults = self._faults
            if faults.token_fail_next > 0:
                faults.token_fail_next -= 1
                return "error"
            if faults.token_timeout_next > 0:
                faults.token_timeout_next -= 1
                return "timeout"
            if faults.token_error_rate and self._rng.random() < faults.token_error_rate:
                return "error"
            return None

    def take_no_digital_user(self) -> bool:
        """Whether the next new publication (of a recipient who may get one) answers NO_DIGITAL_USER."""
        with self._lock:
            faults = self._faults
            if faults.no_digital_user_next > 0:
                faults.no_digital_user_next -= 1
                return True
            return bool(faults.no_digital_user_rate) and self._rng.random() < faults.no_digital_user_rate

    def wants_no_digital_user(self) -> bool:
        with self._lock:
            return bool(self._faults.no_digital_user_next or self._faults.no_digital_user_rate)


class FaultLayer:
    """Outermost ASGI layer: applies the injected faults to the token endpoint and the eBox API calls.

    A dropped call is processed; its answer is swallowed and the connection aborted (TCP reset, no TLS
    close_notify, no HTTP answer). Reaching the connection needs the server's own `send` (uvicorn's
    request-response cycle holds the transport); when it cannot be found the call fails instead of
    silently answering. Plain ASGI rather than a Starlette `BaseHTTPMiddleware`, which costs a task
    group and a memory stream per call: in the scale benchmark the sandbox shares the cores with
    the pipeline it serves."""

    def __init__(self, app, state: SandboxState):
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/REST/"):
            return await self.app(scope, receive, send)
        faults = self.state.faults()
        injector = self.state.fault_injector
        if injector.in_outage():
            response = ApiError(faults.error_status, "SERVICE_UNAVAILABLE", "injected outage").response(path)
            if path == TOKEN_PATH:
                response = JSONResponse(
                    {"error": "temporarily_unavailable", "error_description": "injected outage"},
                    status_code=faults.error_status,
                )
            return await self._answer(response, faults, scope, receive, send)
        if path == TOKEN_PATH:
            fault = self.state.fault_injector.roll_token()
            if fault == "error":
                response = JSONResponse(
                    {"error": "temporarily_unavailable", "error_description": "injected fault"},
                    status_code=faults.error_status,
                )
                return await self._answer(response, faults, scope, receive, send)
            if fault == "timeout":
                return await self._late(faults, scope, receive, send)
            return await self.app(scope, receive, send)
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        if faults.forbidden:
            response = ApiError(
                403, "FORBIDDEN", "the application is not allowed to use this service (injected)"
            ).response(path)
            return await response(scope, receive, send)
        publication = path.endswith("/publishMessage") and scope.get("method") == "POST"
        if publication and faults.invalid_sender:
            response = ApiError(
                400, "INVALID_SENDER", "the sender organisation or application is not known for this client"
            ).response(path)
            return await response(scope, receive, send)
        if publication and (replaced := injector.roll_publication()):
            return await self._replaced(replaced, scope, receive, send)
        fault = self.state.fault_injector.roll()
        if fault == "error":
            response = ApiError(faults.error_status, "INJECTED_FAULT", "injected fault").response(path)
            return await self._answer(response, faults, scope, receive, send)
        if fault == "invalid_token":
            for name, value in scope.get("headers", []):
                if name == b"authorization" and value.startswith(b"Bearer "):
                    self.state.revoke_token(value[len(b"Bearer ") :].decode("latin-1").strip())
            response = ApiError(400, "INVALID_TOKEN", "Invalid access token").response(path)
            return await response(scope, receive, send)
        if fault == "drop":

            async def swallow(message):
                pass

            await self.app(scope, receive, swallow)
            cycle = getattr(send, "__self__", None)
            transport = getattr(cycle, "transport", None)
            if transport is None:
                raise RuntimeError("cannot reach the connection to drop it")
            cycle.disconnected = True  # uvicorn: do not answer 500 for a response never started
            transport.abort()
            return
        if fault == "timeout":
            return await self._late(faults, scope, receive, send)
        await self.app(scope, receive, send)

    async def _replaced(self, fault: Fault, scope, receive, send):
        # The eBox processes the call; a gateway answers in its place.
        async def swallow(message):
            pass

        await self.app(scope, receive, swallow)
        # Marked, so that the tests' contract check knows the answer breaks the contract on purpose.
        marker = {FAULT_HEADER: fault}
        if fault == "html_200":
            response = HTMLResponse(GATEWAY_PAGE, status_code=200, headers=marker)
        else:
            response = JSONResponse({}, status_code=201, headers=marker)
        await response(scope, receive, send)

    @staticmethod
    async def _answer(response, faults: Faults, scope, receive, send):
        if faults.retry_after_seconds is not None:
            response.headers["Retry-After"] = str(faults.retry_after_seconds)
        await response(scope, receive, send)

    async def _late(self, faults: Faults, scope, receive, send):
        # The work is done but the answer comes too late: the case an Idempotency-Key is for.
        held: list[dict] = []

        async def hold(message):
            held.append(message)

        await self.app(scope, receive, hold)
        await asyncio.sleep(faults.timeout_delay_seconds)
        for message in held:
            await send(message)
