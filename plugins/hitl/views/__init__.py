"""The review UI, served inside Airflow's web UI by the FAB provider (``/pluginsv2/hitl/``).

``approvals`` (the view) and the route modules it joins (``html``, ``api``, ``slack``, ``common``)
are imported only by the api-server: Flask-AppBuilder is slow to import. ``limits`` is plain
Python (no Flask), shared with the CLI and the Slack notifier.
"""
