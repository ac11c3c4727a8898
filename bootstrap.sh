#!/usr/bin/env bash
# Set up this checkout and run the hall or its tests.
#   ./bootstrap.sh demo   set up, then run the whole hall on embedded defaults (hallctl demo)
#   ./bootstrap.sh test   set up, then run the whole test suite
#   ./bootstrap.sh setup  set up only
# As root on Debian it first installs the system packages the project needs (see README).
# What apt and pip print goes to .venv/bootstrap.log (one summary line each here; the end of the
# log when a step fails).
set -euo pipefail
cd "$(dirname "$0")"
mode="${1:-setup}"
shift || true

DEBIAN_PACKAGES=(python3-venv fonts-wqy-microhei mosquitto postgresql chromium nftables
                 xvfb xauth imagemagick libxcb-cursor0 libxkbcommon-x11-0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0
                 libxcb-render-util0 xinit)

mkdir -p .venv
LOG=.venv/bootstrap.log
: >"$LOG"

quietly() {
  # quietly WHAT COMMAND...: run COMMAND with its output in the log; if it fails, show the end of the log.
  local what="$1"
  shift
  printf '\n=== %s: %s\n' "$what" "$*" >>"$LOG"
  if ! "$@" >>"$LOG" 2>&1; then
    echo "bootstrap: $what failed; the end of $LOG:" >&2
    tail -n 40 "$LOG" >&2
    exit 1
  fi
}

install_debian() {
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || return 0
  local missing=()
  for pkg in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    local start=$SECONDS
    echo "bootstrap: installing Debian packages: ${missing[*]} (log: $LOG)"
    export DEBIAN_FRONTEND=noninteractive
    quietly "apt-get update" apt-get update -q
    quietly "apt-get install" apt-get install -y -q --no-install-recommends "${missing[@]}"
    echo "bootstrap: Debian packages installed ($((SECONDS - start)) s)"
  fi
}

start_test_services() {
  # The tests talk to a real PostgreSQL on 127.0.0.1:5432; start the local cluster if it is down.
  if command -v pg_lsclusters >/dev/null && [ "$(id -u)" = 0 ]; then
    pg_lsclusters --no-header 2>/dev/null | while read -r ver name port status _; do
      if [ "$status" != "online" ]; then
        pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start >>"$LOG" 2>&1 || true
      fi
    done
  fi
}

install_python() {
  local py="${PYTHON:-python3}" start=$SECONDS
  export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_PROGRESS_BAR=off
  [ -x .venv/bin/python ] || quietly "python -m venv" "$py" -m venv .venv
  quietly "pip upgrade" .venv/bin/python -m pip install --upgrade pip
  quietly "pip install" .venv/bin/python -m pip install -e ".[dev,postgres,usb,ui,web]"
  echo "bootstrap: Python packages installed in .venv ($((SECONDS - start)) s, log: $LOG)"
}

install_debian
install_python

case "$mode" in
  setup) echo "bootstrap: ready (.venv)";;
  demo) exec .venv/bin/hallctl demo "$@";;
  test)
    start_test_services
    export QT_QPA_PLATFORM=offscreen
    exec .venv/bin/python -m pytest "$@";;
  *) echo "usage: $0 demo|test|setup" >&2; exit 2;;
esac
