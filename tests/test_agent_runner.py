"""The runner's compiled-agent cache and the model-text sink, driven directly (no model call needed)."""

from agent import runner as runner_module
from agent.graph import RunOptions
from agent.model import ModelProvider
from agent.runner import AgentRunner
from agent.settings import AgentSettings
from agent.tokens import agent_text_sink, delta_text, model_text_to

ENV = {"MODEL_BASE_URL": "http://127.0.0.1:9/v1", "MODEL_API_KEY": "test-key", "MODEL_NAME": "qwen-plus"}


async def test_agents_are_built_once_per_distinct_settings_and_bounded(monkeypatch):
    monkeypatch.setattr(runner_module, "AGENT_CACHE_SIZE", 2)
    provider = ModelProvider(AgentSettings.from_env(ENV))
    runner = AgentRunner(provider, [])
    try:
        cold = RunOptions(model="qwen-max", temperature=0.1, max_tokens=7)
        first = await runner.agent(cold)
        assert await runner.agent(RunOptions(model="qwen-max", temperature=0.1, max_tokens=7)) is first
        # The settings went to a copy (test_app_clients checks they reach the model); the shared model keeps
        # the configured defaults for every other request.
        shared = await provider.chat_model()
        assert (shared.model_name, shared.temperature, shared.max_tokens) == ("qwen-plus", None, None)

        await runner.agent(RunOptions())
        await runner.agent(RunOptions(temperature=0.9))  # third distinct settings: the oldest is dropped
        assert await runner.agent(cold) is not first
    finally:
        await provider.aclose()


def test_a_chunks_text_is_its_content_delta_only():
    def chunk(delta):
        return {"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]}

    events = [chunk({"role": "assistant", "content": ""}), chunk({"content": "Hel"}),
              chunk({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "who"}}]}),
              chunk({"reasoning_content": "thinking"}), {"choices": [], "usage": {"total_tokens": 3}},
              chunk({"content": None}), {"choices": "odd"}, chunk({"content": "lo"})]
    assert [delta_text(event) for event in events] == [None, "Hel", None, None, None, None, None, "lo"]


def test_no_sink_outside_a_run_or_outside_the_agents_model_node():
    assert agent_text_sink() is None
    with model_text_to(print):
        assert agent_text_sink() is None  # bound, but this is no graph node (test_agent_completions: in one)
    assert agent_text_sink() is None
