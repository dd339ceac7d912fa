#!/usr/bin/env bash
# Peers the test suite needs beyond Python packages, installed from the Debian archive when
# missing: Chromium (status page browser tests), systemd-analyze (unit checks) and a PostgreSQL
# server (store tests).
set -euo pipefail
if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
UPDATED=""
# apt_install WHAT PACKAGE...: from the Debian archive, the package lists fetched once per run.
apt_install() {
    local what=$1
    shift
    echo "test-deps: installing $what from the Debian archive" >&2
    if [ -z "$UPDATED" ]; then
        $SUDO apt-get update -qq
        UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- Chromium (tests/status/test_browser.py drives Debian's headless chromium over the
# DevTools pipe; no Playwright browser download, no internet beyond the Debian archive).
if [ ! -x /usr/bin/chromium ]; then
    apt_install chromium chromium fonts-dejavu-core
fi

# --- systemd-analyze (tests/systemd: `verify` and `security --offline=yes` on the unit files;
# only the tool is used, no systemd needs to be running).
if [ ! -x /usr/bin/systemd-analyze ]; then
    apt_install "systemd (for systemd-analyze)" systemd
fi

# --- PostgreSQL (tests/store: the reference store's suite runs on SQLite and on PostgreSQL).
# Needs a server on 127.0.0.1:5432 that trusts loopback test connections. With
# LINESIDE_TEST_PG set the tests use that server instead and nothing is done here. If no
# server can be started, the PostgreSQL tests fail (they never skip): this only warns so
# the rest of the suite still runs.
pg_up() { command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p 5432; }
if [ -z "${LINESIDE_TEST_PG:-}" ] && ! pg_up; then
    if [ -z "$(ls /usr/lib/postgresql 2>/dev/null)" ]; then
        apt_install postgresql postgresql || true
    fi
    PGVER=$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -1 || true)
    if [ -n "$PGVER" ]; then
        if ! pg_lsclusters -h 2>/dev/null | awk '{print $1, $2}' | grep -qx "$PGVER main"; then
            $SUDO pg_createcluster "$PGVER" main >/dev/null || true
        fi
        HBA=/etc/postgresql/$PGVER/main/pg_hba.conf
        if [ -f "$HBA" ] && ! $SUDO grep -q '^host all all 127.0.0.1/32 trust' "$HBA"; then
            # Test machines only: first line, so it wins over the md5/scram lines below it.
            $SUDO sed -i '1i host all all 127.0.0.1/32 trust' "$HBA" || true
        fi
        $SUDO pg_ctlcluster --skip-systemctl-redirect "$PGVER" main start 2>/dev/null \
            || $SUDO pg_ctlcluster --skip-systemctl-redirect "$PGVER" main reload 2>/dev/null || true
        for _ in $(seq 1 30); do pg_up && break; sleep 1; done
    fi
    if ! pg_up; then
        echo "test-deps: WARNING: no PostgreSQL on 127.0.0.1:5432; tests/store PostgreSQL tests will FAIL" >&2
    fi
fi

exit 0
