"""The agent half of the server: model, prompts, agent assembly and LangChain events -> OpenAI chunks.

Modules import their heavy dependencies (LangChain, the Alibaba SDKs) lazily so that importing `agent`
costs nothing at start-up.
"""
