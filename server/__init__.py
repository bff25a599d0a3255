"""The wire protocol we serve: OpenAI chat completions (request schema, chunks, SSE response, errors, agent
events, the chat handler, the per-request log line). It validates and authenticates each request, binds the
identity context, hands the run to agent/, and turns what the run yields into the client's response."""
