# The Airflow image used by docker-compose.yaml: the official image with this provider installed.
# Keep the tag in step with docker-compose.yaml and scripts/bootstrap.sh (tests/unit/test_compose.py checks it).
FROM apache/airflow:3.3.2

USER airflow
COPY --chown=airflow:0 . /opt/airflow-provider-ltx2
# Pinning apache-airflow to the image's own version keeps pip from upgrading or downgrading it.
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" "/opt/airflow-provider-ltx2[render]"
