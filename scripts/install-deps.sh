#!/usr/bin/env bash
# Installs everything Usher needs to build, test, benchmark and fuzz, from Debian's packages.
# Idempotent: when every package is already installed it returns at once without touching apt.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git python3
  clang libclang-rt-14-dev
  libdvbcsa-dev libssl-dev libsqlite3-dev sqlite3 libzmq3-dev cppzmq-dev
  libqrencode-dev zbar-tools libcli11-dev nlohmann-json3-dev ccache
  libcairo2-dev libpango1.0-dev fonts-dejavu-core poppler-utils
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav
  ffmpeg libgtest-dev libgmock-dev libbenchmark-dev
  postgresql libpqxx-dev
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
# PostgreSQL: Usher's tests start servers of their own (initdb into a temporary directory), so the
# package must not create the system-wide cluster it makes by default (and would try to start). Said
# before the package is first installed; a cluster that already exists is left alone.
if ! dpkg-query -W -f='${Status}' postgresql-common 2>/dev/null | grep -q "install ok installed"; then
  $SUDO mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.d/usher.conf >/dev/null
fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
