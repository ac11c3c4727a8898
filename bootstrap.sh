#!/usr/bin/env bash
# Set up this checkout and run the hall or its tests.
#   ./bootstrap.sh demo   set up, then run the whole hall on embedded defaults (hallctl demo)
#   ./bootstrap.sh test   set up, then run the whole test suite
#   ./bootstrap.sh setup  set up only
# As root on Debian it first installs the system packages the project needs (see README).
set -euo pipefail
cd "$(dirname "$0")"
mode="${1:-setup}"
shift || true

DEBIAN_PACKAGES=(python3-venv fonts-wqy-microhei mosquitto postgresql chromium
                 xvfb xauth imagemagick libxcb-cursor0 libxkbcommon-x11-0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0
                 libxcb-render-util0)

install_debian() {
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || return 0
  local missing=()
  for pkg in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "bootstrap: installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

start_test_services() {
  # The tests talk to a real PostgreSQL on 127.0.0.1:5432; start the local cluster if it is down.
  if command -v pg_lsclusters >/dev/null && [ "$(id -u)" = 0 ]; then
    pg_lsclusters --no-header 2>/dev/null | while read -r ver name port status _; do
      if [ "$status" != "online" ]; then
        pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start || true
      fi
    done
  fi
}

install_python() {
  local py="${PYTHON:-python3}"
  [ -x .venv/bin/python ] || "$py" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[dev,postgres,usb,ui]"
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
