"""Apache Airflow provider for the LTX-2 image-to-video API, served through the Pixazo gateway."""

__version__ = "0.2.0"
