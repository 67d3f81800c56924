# shellcheck shell=bash
# Shared helpers for Passerelle's scripts. Source it; it defines functions only
# (plus SUDO and the apt-get-update-once flag) and runs nothing.
#
#   ensure_go            put /usr/local/go/bin on PATH when `go` is missing
#   ensure_postgres      PostgreSQL answering on 127.0.0.1:5432 with trust auth
#   ensure_irc_servers   ngircd and inspircd binaries installed (not running)
#   ensure_node          node and npm for the encryption tests' independent client

# log prints a progress line on stderr so it never mixes with go test's output.
log() { printf '==> %s\n' "$*" >&2; }

# SUDO is empty for root, else "sudo -n" (never prompt: CI has no stdin).
if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo -n"; fi

_APT_UPDATED=0

# apt_install installs Debian packages non-interactively, running `apt-get update`
# at most once per run. Services are kept from starting during the install
# (policy-rc.d exit 101, the Docker convention) so a package whose daemon cannot
# start here does not fail the install; we start what we need ourselves.
apt_install() {
	local policy=/usr/sbin/policy-rc.d made_policy=0 rc=0
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
		$SUDO chmod 755 "$policy"
		made_policy=1
	fi
	if [ "$_APT_UPDATED" -eq 0 ]; then
		log "apt-get update"
		$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q || rc=$?
		_APT_UPDATED=1
	fi
	if [ "$rc" -eq 0 ]; then
		log "apt-get install $*"
		$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" || rc=$?
	fi
	if [ "$made_policy" -eq 1 ]; then $SUDO rm -f "$policy"; fi
	return "$rc"
}

# ensure_go makes `go` callable, adding /usr/local/go/bin to PATH if needed.
ensure_go() {
	if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
		export PATH="/usr/local/go/bin:$PATH"
	fi
	command -v go >/dev/null 2>&1 || { log "go not found (looked in PATH and /usr/local/go/bin)"; return 1; }
	# End-to-end encryption uses mautrix's pure-Go Olm (goolm): every build, vet and
	# test of this module needs the tag (without it the crypto package wants libolm).
	case " ${GOFLAGS:-} " in
	*goolm*) ;;
	*) export GOFLAGS="${GOFLAGS:+$GOFLAGS }-tags=goolm" ;;
	esac
}

# _pg_version prints the newest PostgreSQL cluster version under /etc/postgresql.
_pg_version() {
	ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1
}

# _pg_trust_loopback makes TCP connections from 127.0.0.1 and ::1 use trust auth, by
# putting two lines at the top of the cluster's pg_hba.conf, then reloads.
_pg_trust_loopback() {
	local ver="$1" hba
	hba="/etc/postgresql/$ver/main/pg_hba.conf"
	if ! $SUDO grep -Eq '^host[[:space:]]+all[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$hba"; then
		log "configuring trust auth for 127.0.0.1 in $hba"
		$SUDO sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
		$SUDO pg_ctlcluster --skip-systemctl-redirect "$ver" main reload
	fi
}

# ensure_postgres makes PostgreSQL reachable at 127.0.0.1:5432 as user postgres
# without a password: installing it if absent, starting the cluster if stopped, and
# setting trust auth for loopback TCP if a password would be asked for.
ensure_postgres() {
	local ver i
	if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(_pg_version)" ]; then
		apt_install postgresql
	fi
	ver="$(_pg_version)"
	if [ -z "$ver" ]; then
		log "PostgreSQL is installed but has no cluster under /etc/postgresql"
		return 1
	fi
	if ! pg_isready -q -h 127.0.0.1 -p 5432; then
		log "starting PostgreSQL $ver"
		$SUDO pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
	fi
	for i in $(seq 1 60); do
		pg_isready -q -h 127.0.0.1 -p 5432 && break
		sleep 0.5
	done
	pg_isready -h 127.0.0.1 -p 5432 >&2 || { log "PostgreSQL did not come up on 127.0.0.1:5432"; return 1; }
	if ! psql -w -h 127.0.0.1 -U postgres -d postgres -Atc 'SELECT 1' >/dev/null 2>&1; then
		_pg_trust_loopback "$ver"
		psql -w -h 127.0.0.1 -U postgres -d postgres -Atc 'SELECT 1' >/dev/null ||
			{ log "cannot connect to PostgreSQL as postgres over 127.0.0.1"; return 1; }
	fi
}

# _have_bin reports whether a program is on PATH or in an sbin directory (which a
# non-root PATH often lacks; inspircd and ngircd live in /usr/sbin).
_have_bin() {
	command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]
}

# ensure_node makes sure node and npm exist: the encryption tests drive an independent
# Matrix client (matrix-js-sdk with its Rust crypto) from Node; the harness installs its
# npm packages itself. The machine images ship Node 20; Debian's own package is the
# fallback.
ensure_node() {
	if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
		return 0
	fi
	apt_install nodejs npm || log "apt-get install nodejs npm reported an error; checking the binaries anyway"
	command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || { log "node or npm is still missing"; return 1; }
}

# ensure_irc_servers installs the real IRC servers the IRC end-to-end tests start
# themselves: ngircd (simple) and inspircd (IRCv3 modules). Only the binaries are
# needed; their system services are not started. (Debian's "ergo" package is a
# chemistry program, not the IRC server.)
ensure_irc_servers() {
	local missing=() b
	for b in ngircd inspircd; do
		_have_bin "$b" || missing+=("$b")
	done
	[ "${#missing[@]}" -eq 0 ] && return 0
	# A daemon's postinst may still fail to start it; what matters is the binary.
	apt_install "${missing[@]}" || log "apt-get install ${missing[*]} reported an error; checking the binaries anyway"
	for b in "${missing[@]}"; do
		_have_bin "$b" || { log "$b is still missing after apt-get install"; return 1; }
	done
}
