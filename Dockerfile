# Production-style image: Airflow 3.3.2 with the providers and this plugin's dependencies.
# Not built on the development machines (they have no Docker engine): see the README.
FROM apache/airflow:3.3.2-python3.11
COPY requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir -r /tmp/requirements.txt
COPY --chown=airflow:root plugins /opt/airflow/plugins
COPY --chown=airflow:root dags /opt/airflow/dags
COPY --chown=airflow:root workflow_specs /opt/airflow/workflow_specs
