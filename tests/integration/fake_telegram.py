"""A local fake of the Telegram Bot API on 127.0.0.1 (aiohttp), for the Telegram observer's tests.

Implements what the observer calls, with the Bot API's JSON shapes (``{"ok": true, "result": …}``):
``getMe``, ``getUpdates`` (a long-poll: returns the queued updates from ``offset`` as soon as there
are any, else after ``timeout`` seconds, capped at :attr:`FakeBotApi.max_wait_s`) and
``sendMessage`` (recorded in :attr:`FakeBotApi.sent`). A wrong token gets the API's 401. Parameters
are read from the query, a form or a JSON body, as the real server accepts them. No test reaches
Telegram.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web


class FakeBotApi:
    """``async with FakeBotApi(token) as api``: serve on a free port; :attr:`base_url` for the settings."""

    def __init__(self, token: str, *, max_wait_s: float = 2.0) -> None:
        self.token = token
        self.max_wait_s = max_wait_s
        #: (chat_id, text) of every sendMessage, in order.
        self.sent: list[tuple[int, str]] = []
        #: method name of every call, in order.
        self.calls: list[str] = []
        self.base_url = ""
        self._updates: list[dict[str, Any]] = []
        self._next_update = 1
        self._next_message = 1
        self._new = asyncio.Event()
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> FakeBotApi:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # ------------------------------------------------------------------ the test's side
    def push_text(self, chat_id: int, text: str, *, date: int | None = None) -> int:
        """Queue a text message of ``chat_id`` (a private chat) as the next update; return its id."""
        update_id = self._next_update
        self._next_update += 1
        command = text.split()[0] if text.startswith("/") else ""
        entities = (
            {"entities": [{"type": "bot_command", "offset": 0, "length": len(command)}]} if command else {}
        )
        self._updates.append(
            {
                "update_id": update_id,
                "message": {
                    "message_id": self._message_id(),
                    "date": int(time.time()) if date is None else date,
                    "chat": {"id": chat_id, "type": "private", "first_name": f"user{chat_id}"},
                    "from": {"id": chat_id, "is_bot": False, "first_name": f"user{chat_id}"},
                    "text": text,
                    **entities,
                },
            }
        )
        self._new.set()
        return update_id

    def texts(self, chat_id: int | None = None) -> list[str]:
        """Texts sent (to ``chat_id``, or to any chat)."""
        return [t for c, t in self.sent if chat_id is None or c == chat_id]

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 30.0) -> None:
        """Wait until ``predicate()`` is true (checked every 10 ms); fail after ``timeout_s``."""
        async with asyncio.timeout(timeout_s):
            while not predicate():  # noqa: ASYNC110 - the predicates read plain lists
                await asyncio.sleep(0.01)

    # ------------------------------------------------------------------ the server
    def _message_id(self) -> int:
        n = self._next_message
        self._next_message += 1
        return n

    async def _params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            if request.content_type == "application/json":
                params.update(await request.json())
            else:
                params.update(dict(await request.post()))
        return params

    @staticmethod
    def _ok(result: Any) -> web.Response:
        return web.json_response({"ok": True, "result": result})

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        self.calls.append(method)
        if request.match_info["token"] != self.token:
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        params = await self._params(request)
        if method == "getMe":
            return self._ok(
                {"id": 4242, "is_bot": True, "first_name": "tradebot", "username": "tradebot_test_bot"}
            )
        if method == "getUpdates":
            return self._ok(await self._get_updates(params))
        if method == "sendMessage":
            chat_id, text = int(params["chat_id"]), str(params["text"])
            self.sent.append((chat_id, text))
            return self._ok(
                {
                    "message_id": self._message_id(),
                    "date": int(time.time()),
                    "chat": {"id": chat_id, "type": "private"},
                    "from": {"id": 4242, "is_bot": True, "first_name": "tradebot"},
                    "text": text,
                }
            )
        if method in ("deleteWebhook", "close", "logOut"):
            return self._ok(True)
        return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(params.get("offset") or 0)
        self._updates = [u for u in self._updates if u["update_id"] >= offset]  # confirmed ones are gone
        wait_s = min(float(params.get("timeout") or 0), self.max_wait_s)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while not self._updates and (left := deadline - loop.time()) > 0:
            self._new.clear()
            try:
                async with asyncio.timeout(left):
                    await self._new.wait()
            except TimeoutError:
                break
        return json.loads(json.dumps(self._updates))
