"""gcop serve chat: any core as an OpenAI-compatible endpoint, tested with the real openai SDK."""

from __future__ import annotations

import openai
import pytest

from gcop_env.cores import make_core
from gcop_env.cores.chat_server import ChatServer


def test_the_openai_sdk_talks_to_a_core_through_the_chat_server(fake_llm):
    upstream = fake_llm(lambda prompt: f"echo: {prompt}")
    with ChatServer(make_core(f"openai:m@{upstream.openai_base_url}", cache=False), model_name="guide") as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="none", max_retries=0)
        reply = client.chat.completions.create(model="guide", messages=[
            {"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}],
            temperature=0.5, max_tokens=7, seed=3)
        assert reply.choices[0].message.content == "echo: hello" and reply.usage.total_tokens > 0
        sent = upstream.requests[-1]["body"]
        assert sent["max_tokens"] == 7 and sent["temperature"] == 0.5
        assert sent["messages"][0] == {"role": "system", "content": "be brief"}
        assert [m.id for m in client.models.list().data] == ["guide"]
        with pytest.raises(openai.BadRequestError, match="streaming"):
            client.chat.completions.create(model="guide", messages=[{"role": "user", "content": "x"}], stream=True)
        with pytest.raises(openai.BadRequestError, match="no user or assistant"):
            client.chat.completions.create(model="guide", messages=[{"role": "system", "content": "x"}])
    assert server.requests == 1


def test_gcop_serve_chat_refuses_a_bad_port_in_one_line(capsys):
    from gcop_env.cli.main import main

    assert main(["serve", "chat", "openai:m@http://127.0.0.1:9/v1", "--port", "0"]) == 2
    assert "--port" in capsys.readouterr().err
