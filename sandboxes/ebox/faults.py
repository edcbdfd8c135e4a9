"""Fault injection: what `PUT /_sandbox/faults` sets, and the ASGI layer that applies it.

Contract calls (federation and Message Registry) can get latency, error answers (429/500/503 with an
optional Retry-After), answers that come too late, dropped connections, a 400 "Invalid access token"
and configured NO_DIGITAL_USER answers. The token endpoint has its own error and late-answer faults,
so a client's token retries are exercised too. The sandbox's `/_sandbox` routes never fail.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from starlette.responses import JSONResponse

from sandboxes.ebox.validation import TOKEN_PATH, ApiError

if TYPE_CHECKING:
    from sandboxes.ebox.state import SandboxState

ERROR_STATUSES = (429, 500, 503)
Fault = Literal["error", "timeout", "drop", "invalid_token"]


@dataclass
class Faults:
    """The settings. For contract calls the `*_next` counters come first, in the order fail,
    timeout, drop, invalid token; then one draw decides between error, timeout and drop by their
    rates. A timeout and a drop happen *after* the call was processed (a publication is stored): the
    answer is lost, which is what an Idempotency-Key is for."""

    error_rate: float = 0.0
    error_status: int = 503  # 429, 500 or 503; the token endpoint's errors use it too
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

    def set(self, **settings) -> Faults:
        """Replace the settings (unnamed ones go back to their defaults)."""
        faults = Faults(**settings).validate()
        with self._lock:
            self._faults = faults
            self._rng = random.Random(faults.seed)
        return dataclasses.replace(faults)

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
