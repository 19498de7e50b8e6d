# Sourced by the scripts: make (once) and activate the project's virtualenv with the package installed.
# LTX2_VENV picks another location; LTX2_AIRFLOW_VERSION another Airflow (default 3.3.2).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${LTX2_VENV:-$ROOT/.venv}"
AIRFLOW_VERSION="${LTX2_AIRFLOW_VERSION:-3.3.2}"
if [ ! -x "$VENV/bin/python" ]; then
    echo "Creating $VENV (Airflow $AIRFLOW_VERSION)..." >&2
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
fi
if [ ! -f "$VENV/.ltx2-installed" ] || [ "$ROOT/pyproject.toml" -nt "$VENV/.ltx2-installed" ]; then
    "$VENV/bin/python" -m pip install -q -c "$ROOT/scripts/constraints.txt" \
        "apache-airflow==$AIRFLOW_VERSION" -e "$ROOT[test,render]"
    touch "$VENV/.ltx2-installed"
fi
export PATH="$VENV/bin:$PATH"
cd "$ROOT"
