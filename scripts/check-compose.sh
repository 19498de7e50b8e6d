#!/usr/bin/env bash
# Validate docker-compose.yaml with docker-compose itself (no Docker engine needed) and list its services.
# Installs Debian's docker-compose package first when the command is missing and we are root (as in CI).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v docker-compose >/dev/null 2>&1; then
    if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "docker-compose is not installed: install it (e.g. 'apt-get install docker-compose') and rerun." >&2
        exit 1
    fi
    echo "Installing docker-compose (Debian package)..." >&2
    # Wait for another apt/dpkg run to finish rather than failing on its lock; skip the recommended
    # docker.io engine, which validating the file does not need.
    apt-get -o DPkg::Lock::Timeout=600 update -q
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends \
        docker-compose
fi

docker-compose version
# Left unset, AIRFLOW_UID makes docker-compose warn on every call; its value does not matter to this check.
export AIRFLOW_UID="${AIRFLOW_UID:-50000}"
docker-compose -f docker-compose.yaml config -q
echo "docker-compose.yaml is valid. Services:"
docker-compose -f docker-compose.yaml config --services | sed 's/^/  /'
