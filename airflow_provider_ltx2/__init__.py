"""Apache Airflow provider for the LTX-2 image-to-video API, served through the Pixazo gateway."""

__version__ = "0.2.0"
# The provider's source (also pyproject.toml's [project.urls]); OpenLineage facets name it at __version__.
REPOSITORY_URL = "https://github.com/airflow-provider-ltx2/airflow-provider-ltx2"
