"""Helpers the test modules share (no tests here): the app served as `python app.py` serves it
(app_server.py), the product end to end with its leak witness (e2e.py), deployments and browsers
(deployment.py), identity helpers (identity.py), the tools in a request context (tools.py), fault-injection
and streaming helpers (reliability.py), the request log (logs.py) and the variables the code reads
(variables.py). Test modules import from here, never from each other.
"""
