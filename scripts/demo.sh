#!/usr/bin/env bash
# The demo command: bash scripts/demo.sh [-once]
#
# Makes sure the local IRC server the demo uses (Debian's ngircd) is installed, then runs
# the demo stack: Dendrite + the bridge + ngircd + the loopback test network.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
ensure_go
ensure_irc_servers
exec go run ./tests/demo "$@"
