"""Calling a Gradio handler by its index over raw HTTP, the way an attacker reaches a "private" one.

`api_visibility="private"` hides a handler from the API listing, but the queue still runs any handler by
its index for any session hash a caller names. These helpers do exactly that (queue/join, then read the
queue's server-sent events), so tests can check that each handler refuses a caller it should refuse.
"""

from __future__ import annotations

import json
import uuid

import httpx


def logged_in(url: str, user: str | None = None, password: str | None = None) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=60)
    if user is not None:
        response = client.post("login", data={"username": user, "password": password})
        assert response.status_code == 200, response.text
    return client


def handler_index(http: httpx.Client, elem_id: str, event: str = "click") -> tuple[int, int]:
    """(fn_index, trigger component id) of the handler bound to `event` of the component `elem_id`."""
    config = http.get("config").json()
    ids = [c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == elem_id]
    assert ids, f"no component #{elem_id}"
    for index, dependency in enumerate(config["dependencies"]):
        if [ids[0], event] in [list(t) for t in dependency.get("targets", [])]:
            return dependency.get("id", index), ids[0]
    raise AssertionError(f"no {event} handler on #{elem_id}")


def call_by_index(
    http: httpx.Client, fn_index: int, trigger: int, data: list, session_hash: str | None = None
):
    """Run handler `fn_index` for `session_hash` (a fresh one by default); returns the completed message."""
    session_hash = session_hash or uuid.uuid4().hex[:11]
    joined = http.post(
        "gradio_api/queue/join",
        json={
            "data": data,
            "event_data": None,
            "fn_index": fn_index,
            "trigger_id": trigger,
            "session_hash": session_hash,
        },
    )
    assert joined.status_code == 200, joined.text
    with http.stream("GET", "gradio_api/queue/data", params={"session_hash": session_hash}) as events:
        for line in events.iter_lines():
            if not line.startswith("data:"):
                continue
            message = json.loads(line[len("data:") :])
            if message.get("msg") == "process_completed":
                return message
    raise AssertionError("the queue ended without completing the call")
