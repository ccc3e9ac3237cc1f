"""The review UI, served inside Airflow's web UI by the FAB provider (``/pluginsv2/hitl/``).

Imported only by the api-server (see ``hitl.plugin``): Flask-AppBuilder is slow to import.
"""
