"""The agent only: the chat model from one setting (model.py), the prompt, the agent assembly (graph.py) and
one run (runner.py). It knows nothing of HTTP: server/ feeds it messages and renders what it yields."""
