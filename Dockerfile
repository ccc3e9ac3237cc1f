# Production-style image: Airflow 3.3.2 with this plugin installed as a package (its entry point registers it;
# nothing is copied into the plugins folder). Not built on the development machines (they have no Docker engine):
# see the README.
ARG AIRFLOW_VERSION=3.3.2
FROM apache/airflow:${AIRFLOW_VERSION}-python3.11
ARG AIRFLOW_VERSION
# The package's sources only: hitl_devstack and the plugins-folder shim stay out of the image.
COPY --chown=airflow:root pyproject.toml README.md /tmp/airflow-hitl/
COPY --chown=airflow:root plugins/hitl /tmp/airflow-hitl/plugins/hitl
# Airflow pinned to the image's own version, as Airflow's docs advise when adding packages to its image.
# The PostgreSQL drivers for the decision store, Slack, and the Google provider for Gemini and Gmail.
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" "/tmp/airflow-hitl[postgres,slack,google,celery]" \
    && rm -rf /tmp/airflow-hitl
COPY --chown=airflow:root dags /opt/airflow/dags
COPY --chown=airflow:root workflow_specs /opt/airflow/workflow_specs
