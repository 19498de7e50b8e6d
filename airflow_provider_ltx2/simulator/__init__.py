"""A local stand-in for the Pixazo LTX-2 gateway, for tests, demos and benchmarks without a paid key.

Run it with ``python -m airflow_provider_ltx2.simulator`` (or the ``ltx2-simulator`` script); the app
itself lives in :mod:`airflow_provider_ltx2.simulator.server`. Nothing is imported here, so importing the
package (e.g. when Airflow scans the provider) stays cheap.
"""

# The subscription key the simulator accepts unless told another (no secret: docker-compose uses it too).
DEFAULT_KEY = "sim-key"
