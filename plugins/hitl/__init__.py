"""Approval gates for Apache Airflow: human-in-the-loop review of a step's output.

Kept import-free: the DAG processor, the triggerer and the api-server all import
this package, and each only pays for the modules it uses.
"""

from __future__ import annotations

__version__ = "0.1.0"
