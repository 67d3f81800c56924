#!/usr/bin/env bash
# The one test command: bash scripts/test.sh
#
# Makes sure the real parts the end-to-end tests need are present (PostgreSQL on
# 127.0.0.1:5432 with trust auth; ngircd and inspircd binaries — see
# ensure_irc_servers in scripts/lib.sh), then runs go vet, each fuzz target for a bounded
# budget (PASSERELLE_FUZZ_TIME, default 20000 inputs each) and the whole test suite.
# Dendrite is built by the tests themselves (tests/harness) and cached in
# $PASSERELLE_TEST_CACHE (default ~/.cache/passerelle-tests); the first run takes a few
# minutes longer. go test's own closing lines are the last thing printed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

ensure_go
ensure_postgres
ensure_irc_servers
ensure_node

log "go version: $(go version)"
vet_rc=0
log "go vet ./..."
go vet ./... || { vet_rc=$?; log "go vet failed (exit $vet_rc); running the tests anyway"; }

# Every fuzz target runs for a bounded budget beside its seeds (which go test runs
# below). The budget is a count of inputs, not a duration: Go 1.26's fuzzing coordinator
# can fail a target with "context deadline exceeded" when a duration ends while a worker
# is busy on a loaded machine (golang/go#75804, fixed in Go 1.27), with no input at fault.
fuzz_rc=0
fuzz_time="${PASSERELLE_FUZZ_TIME:-20000x}"
while IFS=: read -r file name; do
	pkg="./$(dirname "$file")"
	log "fuzz $name ($pkg, $fuzz_time)"
	go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzz_time" "$pkg" >/tmp/passerelle-fuzz.log 2>&1 ||
		{ fuzz_rc=1; tail -30 /tmp/passerelle-fuzz.log; log "fuzz $name failed"; }
done < <(grep -rHo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*' . | sed 's/func //; s|^\./||')

log "go test -count=1 -timeout 60m ./..."
test_rc=0
go test -count=1 -timeout 60m ./... || test_rc=$?

if [ "$test_rc" -ne 0 ]; then
	exit "$test_rc"
fi
if [ "$fuzz_rc" -ne 0 ]; then
	exit "$fuzz_rc"
fi
exit "$vet_rc"
