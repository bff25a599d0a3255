"""The runner's compiled-agent cache and the model-token callback, driven directly (no model call needed)."""

import uuid

from langchain_core.messages import AIMessageChunk
from langchain_core.outputs import ChatGenerationChunk

from agent import runner as runner_module
from agent.graph import RunOptions
from agent.model import ModelProvider
from agent.runner import AgentRunner
from agent.settings import AgentSettings
from agent.tokens import ModelTokens

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


async def test_model_tokens_delivers_only_the_model_nodes_text():
    delivered: list[str] = []
    tokens = ModelTokens(delivered.append)
    model_run, other_run = uuid.uuid4(), uuid.uuid4()
    await tokens.on_chat_model_start({}, [], run_id=model_run, metadata={"langgraph_node": "model"})
    await tokens.on_chat_model_start({}, [], run_id=other_run, metadata={"langgraph_node": "tools"})

    def chunk(**fields):
        return ChatGenerationChunk(message=AIMessageChunk(**fields))

    await tokens.on_llm_new_token("Hel", run_id=model_run, chunk=chunk(content="Hel"))
    await tokens.on_llm_new_token("", run_id=model_run, chunk=chunk(content="", tool_call_chunks=[
        {"name": "get_alibaba_cloud_caller_identity", "args": "", "id": "call_1", "index": 0}]))
    await tokens.on_llm_new_token("secret", run_id=other_run, chunk=chunk(content="secret"))
    await tokens.on_llm_new_token("lo", run_id=model_run, chunk=chunk(content="lo"))
    await tokens.on_llm_end(None, run_id=model_run)
    await tokens.on_llm_new_token("late", run_id=model_run, chunk=chunk(content="late"))
    assert delivered == ["Hel", "lo"]
