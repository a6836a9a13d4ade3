"""The scripting API: one public endpoint, `/chat`, through a real gradio_client against `python -m app`."""

from __future__ import annotations

import httpx
import pytest

from tests.fixtures.tiny_models import SCENARIOS

pytestmark = [pytest.mark.model, pytest.mark.slow, pytest.mark.local_sandbox]


def test_chat_endpoint_returns_the_reply_with_execution_results(start_app):
    from gradio_client import Client

    app = start_app()
    client = Client(app.url, verbose=False)
    api = client.view_api(print_info=False, return_format="dict")
    assert list(api["named_endpoints"]) == ["/chat"] and api["unnamed_endpoints"] == {}
    params = [p["parameter_name"] for p in api["named_endpoints"]["/chat"]["parameters"]]
    assert params == [
        "message",
        "temperature",
        "top_p",
        "max_new_tokens",
        "max_rounds",
        "execution_mode",
        "new_chat",
    ]

    reply = client.predict("print", api_name="/chat")
    assert reply["reason"] == "end_of_turn"
    assert [m["role"] for m in reply["reply"]] == ["assistant", "execution", "assistant"]
    assert reply["reply"][-1]["content"] == SCENARIOS["print"].final
    (execution,) = reply["executions"]
    assert execution["code"] == "print(6*7)" and execution["language"] == "python"
    assert execution["result"]["status"] == "ok" and execution["result"]["stdout"] == "42\n"
    record = reply["dialogue"]
    assert set(record) == {"id", "messages", "meta", "schema"}
    assert record["messages"][2]["runs"][0]["stdout"] == "42\n"  # the execution turn's structured run
    assert record["messages"] == [{"role": "user", "content": "print"}, *reply["reply"]]

    # The same client continues its own chat; new_chat starts over with a fresh kernel.
    again = client.predict("plot", max_rounds=2, api_name="/chat")
    assert again["dialogue"]["messages"][0]["content"] == "print" and len(again["dialogue"]["messages"]) > 4
    fresh = client.predict("plot", new_chat=True, api_name="/chat")
    assert fresh["dialogue"]["messages"][0] == {"role": "user", "content": "plot"}
    (plot,) = fresh["executions"]
    assert any("image/png" in o["data"] for o in plot["result"]["outputs"])

    # Another client is another chat with another kernel.
    other = Client(app.url, verbose=False).predict("print", api_name="/chat")
    assert other["dialogue"]["id"] not in (record["id"], fresh["dialogue"]["id"])
    assert len(other["dialogue"]["messages"]) == 4

    with pytest.raises(Exception, match="needs the browser"):
        client.predict("print", execution_mode="ask", api_name="/chat")


def test_api_needs_the_password_when_auth_is_set(start_app):
    from gradio_client import Client
    from gradio_client.exceptions import AuthenticationError

    app = start_app("--auth", "ann:s3cret")
    assert httpx.get(app.url + "gradio_api/info").status_code == 401
    # The refusals themselves (gradio_client 2.x's types and words), not any failure such as a crashed app.
    with pytest.raises(AuthenticationError, match="credentials were not provided"):
        Client(app.url, verbose=False)
    with pytest.raises(ValueError, match="Could not login"):
        Client(app.url, auth=("ann", "wrong"), verbose=False)
    reply = Client(app.url, auth=("ann", "s3cret"), verbose=False).predict("print", api_name="/chat")
    assert reply["executions"][0]["result"]["stdout"] == "42\n"


def test_system_prompt_starts_every_chat(start_app):
    from gradio_client import Client

    system = "You are AutoCoder, a helpful code assistant."
    app = start_app("--system-prompt", system)
    reply = Client(app.url, verbose=False).predict("print", api_name="/chat")
    messages = reply["dialogue"]["messages"]
    assert messages[0] == {"role": "system", "content": system}
    assert messages[1] == {"role": "user", "content": "print"}
    assert reply["executions"][0]["result"]["stdout"] == "42\n"
