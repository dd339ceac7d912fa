#!/usr/bin/env bash
# Install lineside as systemd services on this machine (Debian/Ubuntu, systemd >= 250).
#
#   sudo systemd/install.sh                 # venv in /opt/lineside, units, enable every line
#   sudo systemd/install.sh --with-store    # also the reference central store
#   systemd/install.sh --dry-run            # print what would be done, change nothing
#
# Idempotent: run it again after `git pull` to upgrade the venv and the units. It never
# overwrites a config or secret that exists, and never prints a secret.
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: install.sh [--dry-run] [--with-store] [--no-start] [--source DIR]
                  [--prefix DIR] [--etc DIR] [--unit-dir DIR] [--python PYTHON]

  --dry-run      print every action instead of doing it (needs no root)
  --with-store   also install and enable lineside-store.service
  --no-start     enable units but do not start them now
  --source DIR   the lineside source tree to install (default: this script's repository)
  --prefix DIR   where the venv goes (default /opt/lineside)
  --etc DIR      config directory (default /etc/lineside; the units always read
                 /etc/lineside, so another value is for staging and tests)
  --unit-dir DIR where unit files go (default /etc/systemd/system)
  --python PY    interpreter for the venv (default python3.11, else python3)
USAGE
}

DRY_RUN=0
WITH_STORE=0
START=1
SOURCE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX=/opt/lineside
ETC=/etc/lineside
UNIT_DIR=/etc/systemd/system
PYTHON="$(command -v python3.11 || command -v python3 || echo python3)"
USER_NAME=lineside

while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --with-store) WITH_STORE=1 ;;
        --no-start) START=0 ;;
        --source) SOURCE="$2"; shift ;;
        --prefix) PREFIX="$2"; shift ;;
        --etc) ETC="$2"; shift ;;
        --unit-dir) UNIT_DIR="$2"; shift ;;
        --python) PYTHON="$2"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

VENV="$PREFIX/venv"

# Every change to the system goes through run(), so --dry-run shows exactly the same plan.
run() {
    if [ "$DRY_RUN" -eq 1 ]; then
        printf '+'
        printf ' %q' "$@"
        printf '\n'
    else
        "$@"
    fi
}

note() { printf 'install.sh: %s\n' "$*" >&2; }

if [ "$DRY_RUN" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run as root (or with --dry-run to see the plan)" >&2
    exit 1
fi
if [ ! -f "$SOURCE/pyproject.toml" ] || [ ! -d "$SOURCE/systemd" ]; then
    echo "install.sh: $SOURCE is not a lineside source tree (no pyproject.toml / systemd/)" >&2
    exit 2
fi

# 1. The system user shared by the line daemons and the sync agent (the store uses a
#    DynamicUser of its own).
if ! id "$USER_NAME" >/dev/null 2>&1; then
    run useradd --system --user-group --home-dir /var/lib/lineside --no-create-home \
        --shell /usr/sbin/nologin --comment "lineside edge daemon" "$USER_NAME"
fi

# 2. Config and secret directories. Secrets stay root-only: systemd hands them to the
#    services as credentials (LoadCredential=), the service user never reads them directly.
run install -d -m 0755 "$ETC" "$ETC/lines" "$ETC/examples"
run install -d -m 0700 "$ETC/secrets"
run install -m 0644 "$SOURCE/config/examples/line.yaml" "$ETC/examples/line.yaml"
run install -m 0644 "$SOURCE/config/examples/sync.yaml" "$ETC/examples/sync.yaml"
if [ ! -e "$ETC/secrets/status-token" ]; then
    # lineside@.service loads this credential; it protects the status page when
    # status.listen is not loopback.
    if [ "$DRY_RUN" -eq 1 ]; then
        printf '+ %s\n' "generate a random token into $ETC/secrets/status-token (mode 0600)"
    else
        (umask 077; od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > "$ETC/secrets/status-token")
    fi
fi

# 3. The venv and the project.
if [ ! -x "$VENV/bin/python" ]; then
    run "$PYTHON" -m venv "$VENV"
fi
run "$VENV/bin/python" -m pip install --quiet --upgrade pip
run "$VENV/bin/python" -m pip install --quiet --upgrade "$SOURCE"
run install -d -m 0755 "$PREFIX/share/systemd"
run install -m 0644 "$SOURCE/systemd/README.md" "$PREFIX/share/systemd/README.md"

# 4. Units.
UNITS=(lineside@.service lineside-sync.service)
if [ "$WITH_STORE" -eq 1 ]; then
    UNITS+=(lineside-store.service)
fi
for unit in "${UNITS[@]}"; do
    run install -m 0644 "$SOURCE/systemd/$unit" "$UNIT_DIR/$unit"
done
run systemctl daemon-reload

# 5. Enable what is configured.
NOW=()
if [ "$START" -eq 1 ]; then NOW=(--now); fi
shopt -s nullglob
lines=("$ETC"/lines/*.yaml)
if [ ${#lines[@]} -eq 0 ]; then
    note "no line configs in $ETC/lines yet: copy $ETC/examples/line.yaml to $ETC/lines/LINE.yaml, then"
    note "  systemctl enable --now lineside@LINE"
fi
for file in "${lines[@]}"; do
    name="$(basename "$file" .yaml)"
    if [[ ! "$name" =~ ^[A-Za-z0-9_.-]+$ ]]; then
        note "skipping $file: a line name may only hold letters, digits, '_', '.', '-'"
        continue
    fi
    run systemctl enable "${NOW[@]}" "lineside@$name.service"
done

if [ -f "$ETC/sync.yaml" ] && [ -f "$ETC/secrets/upstream-token" ]; then
    run systemctl enable "${NOW[@]}" lineside-sync.service
else
    note "lineside-sync not enabled: it needs $ETC/sync.yaml and $ETC/secrets/upstream-token (mode 0600)"
fi

if [ "$WITH_STORE" -eq 1 ]; then
    if [ -f "$ETC/store-tokens.yaml" ]; then
        run systemctl enable "${NOW[@]}" lineside-store.service
    else
        note "lineside-store not enabled: it needs $ETC/store-tokens.yaml (mode 0600)"
    fi
fi
note "done"
