#!/usr/bin/env bash
# Installs the servers failprobe's lab and tests start (Debian/Ubuntu). Skips what is present.
set -euo pipefail
need=()
for bin in redis-server:redis-server redis-sentinel:redis-sentinel redis-cli:redis-tools memcached:memcached openssl:openssl; do
  command -v "${bin%%:*}" >/dev/null 2>&1 || need+=("${bin##*:}")
done
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing: ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# On machines with systemd the packages start servers on the default ports; failprobe never
# uses those ports, so they are left alone.
