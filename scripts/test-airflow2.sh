#!/usr/bin/env bash
# Run the whole test suite on Airflow 2.11, the oldest Airflow the provider supports, in a virtualenv of
# its own (made once, like scripts/bootstrap.sh does for 3.x), in parallel as scripts/test.sh runs it. Extra
# arguments go to pytest and come last, so they win: `scripts/test-airflow2.sh -m "not slow"` for the quick part
# only, `scripts/test-airflow2.sh -n 0` serially.
# LTX2_AIRFLOW2_VENV picks another location (default .venv-airflow2 in the repo).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${LTX2_AIRFLOW2_VENV:-$ROOT/.venv-airflow2}"
AIRFLOW_VERSION="2.11.2"
# A set that resolves without conflict and passes the suite; pip picks the rest as for any user.
PINS=(
    "apache-airflow==$AIRFLOW_VERSION"
    "apache-airflow-providers-http==6.3.0"
    "apache-airflow-providers-common-compat==1.23.0"  # >=1.12 for connection.get_async_connection
    "cryptography<51"  # 51's MultiFernet takes no attributes; Airflow 2.11 sets is_encrypted on it
)

if [ ! -x "$VENV/bin/python" ]; then
    echo "Creating $VENV (Airflow $AIRFLOW_VERSION)..." >&2
    python3 -m venv "$VENV"
    echo "*" >"$VENV/.gitignore"  # keeps git (and ruff, which follows .gitignore) out of it
    "$VENV/bin/python" -m pip install -q --upgrade pip
fi
EXTRAS="test,render"  # as scripts/bootstrap.sh installs them
CONSTRAINTS="$ROOT/scripts/constraints.txt"  # the test environment's pins, shared with scripts/bootstrap.sh
# Reinstall whenever the pins, extras, the package's dependencies or the constraints change (by content).
STAMP="$VENV/.ltx2-installed"
WANTED="${PINS[*]} [$EXTRAS] $(cat "$ROOT/pyproject.toml" "$CONSTRAINTS" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANTED" ]; then
    "$VENV/bin/python" -m pip install -q -c "$CONSTRAINTS" "${PINS[@]}" -e "$ROOT[$EXTRAS]"
    "$VENV/bin/python" -m pip check
    printf '%s' "$WANTED" >"$STAMP"
fi
export PATH="$VENV/bin:$PATH"
cd "$ROOT"
python - "$AIRFLOW_VERSION" <<'EOF'
import sys

import airflow

if airflow.__version__ != sys.argv[1]:
    sys.exit(f"{sys.executable} has Airflow {airflow.__version__}, expected {sys.argv[1]}")
print(f"== tests on Airflow {airflow.__version__}", file=sys.stderr)
EOF
python -m pytest -q -n auto --dist loadfile --no-loadscope-reorder "$@"  # as scripts/test.sh does
