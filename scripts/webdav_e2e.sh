#!/usr/bin/env bash
# WebDAV compliance of the real tollgate binary with litmus: the basic,
# copymove and http suites must pass fully; props and locks are reported
# (dead properties, PROPPATCH, are not stored by the gateway).
#
# Usage: scripts/webdav_e2e.sh [PATH_TO_TOLLGATE]   (default: target/debug/tollgate)
# Prints `ok - ...` / `not ok - ...` lines and the per-suite counts.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${1:-$REPO/target/debug/tollgate}
case $BIN in /*) ;; *) BIN=$PWD/$BIN ;; esac
[ -x "$BIN" ] || { echo "tollgate binary not found or not executable: $BIN" >&2; exit 2; }

# shellcheck source=lib.sh
source "$REPO/scripts/lib.sh"
need litmus litmus curl curl jq jq
clean_tollgate_env
TMP=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-dav.XXXXXX")
export TOLLGATE_DATA_DIR=$TMP/data
SERVER_PID=
cleanup() {
  local rc=$?
  stop_server
  if [ "${KEEP:-0}" = 1 ]; then echo "# kept $TMP" >&2; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT

PW="dav-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf '%s\n' "$PW" | "$BIN" user add davuser --password-stdin >/dev/null
serve_tollgate "$BIN" "$TMP"
ADDR=$(listening "$TMP" http)
[ -n "$ADDR" ] || { echo "not ok - server starts"; tail -20 "$TMP/serve.err"; exit 1; }
echo "ok - server starts ($ADDR)"

curl -sf -u "davuser:$PW" -X MKCOL "http://$ADDR/dav/litmus/" >/dev/null
cd "$TMP"
set +e
timeout 600 litmus -k "http://$ADDR/dav/litmus/" davuser "$PW" >"$TMP/litmus.log" 2>&1
set -e
grep -E 'FAIL|^<- summary' "$TMP/litmus.log" | awk -F'\r' '{print "# " $NF}'
summary() { # SUITE -> "passed total"
  awk -v s="$1" '$0 ~ "^<- summary for `" s "'"'"'" {p=$9; gsub(/,/,"",p); print p, $6}' "$TMP/litmus.log"
}
for suite in basic copymove http; do
  read -r p t < <(summary "$suite" || true)
  if [ -n "${t:-}" ] && [ "$p" = "$t" ]; then echo "ok - litmus $suite: $p/$t"
  else echo "not ok - litmus $suite: ${p:-0}/${t:-?}"; fi
done
for suite in props locks; do
  read -r p t < <(summary "$suite" || true)
  echo "# litmus $suite: ${p:-0}/${t:-?} (dead properties are not stored)"
done
if "$BIN" events list --limit 100000 --json --user davuser --type TransferCompleted \
    | jq -e -s 'map(select(.protocol == "webdav")) | length > 0' >/dev/null; then
  echo "ok - WebDAV transfers are recorded with the protocol webdav"
else echo "not ok - WebDAV transfers are recorded with the protocol webdav"; fi
if kill -0 "$SERVER_PID" 2>/dev/null; then echo "ok - server still running"; else echo "not ok - server still running"; fi
