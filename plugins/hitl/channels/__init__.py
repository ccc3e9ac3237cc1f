"""Inbound channels that are not pages: Slack's interactive actions (``slack.py``).

They check their own input, then call the decision service (``hitl.decisions.decide``); the notifications they
answer are sent by ``hitl.notify``, which never decides.
"""
