"""Builds the ASGI apps from settings, one module each so that neither imports what only the other needs:
the agent (`agent_app.create_app`) and the authorization callback alone (`callback_app.create_callback_app`).
"""
