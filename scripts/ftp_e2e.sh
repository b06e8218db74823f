#!/usr/bin/env bash
# End-to-end check of the real tollgate binary with the system's FTP
# clients: lftp and curl, over plain FTP, explicit FTPS (AUTH TLS) and
# implicit FTPS, with a user who may use FTP only over TLS.
#
# Usage: scripts/ftp_e2e.sh [PATH_TO_TOLLGATE]      (default: target/debug/tollgate)
# Prints one `ok - ...` / `not ok - ...` line per check and ends with
# `N passed, M failed`; the exit status is non-zero when a check failed.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${1:-$REPO/target/debug/tollgate}
case $BIN in /*) ;; *) BIN=$PWD/$BIN ;; esac
[ -x "$BIN" ] || { echo "tollgate binary not found or not executable: $BIN" >&2; exit 2; }

# shellcheck source=lib.sh
source "$REPO/scripts/lib.sh"
need lftp lftp curl curl openssl openssl jq jq
clean_tollgate_env

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-ftp.XXXXXX")
export TOLLGATE_DATA_DIR=$TMP/data
SERVER_PID=
cleanup() {
  local rc=$?
  stop_server
  if [ "${KEEP:-0}" = 1 ]; then echo "# kept $TMP" >&2; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT

PASSED=0; FAILED=0
pass() { PASSED=$((PASSED + 1)); echo "ok - $1"; }
fail() { FAILED=$((FAILED + 1)); echo "not ok - $1"; shift; for l in "$@"; do printf '%s\n' "$l" | sed 's/^/#   /'; done; }
sha() { sha256sum "$1" | cut -d' ' -f1; }
tg() { "$BIN" "$@" 2>>"$TMP/cli.err"; }

USER_NAME=ftpuser
USER_PW="ftp-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
mkdir -p "$TMP/data" "$TMP/local" "$TMP/back"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
  -keyout "$TMP/key.pem" -out "$TMP/cert.pem" >/dev/null 2>&1
export TOLLGATE_FTP_TLS_CERT=$TMP/cert.pem TOLLGATE_FTP_TLS_KEY=$TMP/key.pem
export TOLLGATE_FTP_IMPLICIT_LISTEN=127.0.0.1:0
printf '%s\n' "$USER_PW" | tg user add "$USER_NAME" --password-stdin >/dev/null
printf '%s\n' "$USER_PW" | tg user add tlsonly --password-stdin --ftp-require-tls >/dev/null
head -c $((3 * 1048576 + 11)) /dev/urandom > "$TMP/local/big.bin"
echo "small $(date +%s%N)" > "$TMP/local/small.txt"

serve_tollgate "$BIN" "$TMP"
ADDR=$(listening "$TMP" ftp)
if [ -z "$ADDR" ]; then fail "server starts" "$(tail -20 "$TMP/serve.err")"; echo "$PASSED passed, $FAILED failed"; exit 1; fi
pass "server starts and prints its FTP address ($ADDR)"
HOST=${ADDR%:*}; PORT=${ADDR##*:}
IMPLICIT=$(listening "$TMP" ftps)
if [ -n "$IMPLICIT" ]; then pass "server prints its implicit FTPS address ($IMPLICIT)"
else fail "server prints its implicit FTPS address" "$(cat "$TMP/serve.out")"; fi

# lftp SSL_FORCE COMMANDS : runs lftp against the server; output in $TMP/lftp.out
run_lftp() {
  local force=$1; shift
  lftp -e "set ftp:ssl-allow $force; set ftp:ssl-force $force; set ftp:ssl-protect-data $force; set ssl:verify-certificate no; set net:max-retries 1; set net:timeout 20; set xfer:clobber on; $*; bye" \
    -u "$USER_NAME,$USER_PW" -p "$PORT" "ftp://$HOST" >"$TMP/lftp.out" 2>&1 </dev/null
}

if run_lftp false "put $TMP/local/big.bin -o big.bin; get big.bin -o $TMP/back/big.bin" \
   && [ "$(sha "$TMP/back/big.bin")" = "$(sha "$TMP/local/big.bin")" ]; then
  pass "lftp: plain FTP put and get keep the file intact"
else fail "lftp: plain FTP put and get keep the file intact" "$(cat "$TMP/lftp.out")"; fi

if run_lftp true "put $TMP/local/small.txt -o tls.txt; get tls.txt -o $TMP/back/tls.txt; mkdir d; mv tls.txt d/tls.txt; cls -1 d" \
   && cmp -s "$TMP/local/small.txt" "$TMP/back/tls.txt" && grep -q "tls.txt" "$TMP/lftp.out"; then
  pass "lftp: explicit FTPS (AUTH TLS, PROT P) put, get, mkdir, rename, list"
else fail "lftp: explicit FTPS put, get, mkdir, rename, list" "$(cat "$TMP/lftp.out")"; fi

head -c 1000000 "$TMP/local/big.bin" > "$TMP/local/part.bin"
if run_lftp false "put $TMP/local/part.bin -o resumed.bin" \
   && run_lftp false "put -c $TMP/local/big.bin -o resumed.bin; get resumed.bin -o $TMP/back/resumed.bin" \
   && [ "$(sha "$TMP/back/resumed.bin")" = "$(sha "$TMP/local/big.bin")" ]; then
  pass "lftp: put -c resumes a partial upload (REST + STOR)"
else fail "lftp: put -c resumes a partial upload" "$(cat "$TMP/lftp.out")"; fi

if curl -sS --ssl-reqd -k -u "$USER_NAME:$USER_PW" -T "$TMP/local/small.txt" "ftp://$ADDR/curl.txt" >"$TMP/curl.out" 2>&1 \
   && curl -sS --ssl-reqd -k -u "$USER_NAME:$USER_PW" "ftp://$ADDR/curl.txt" -o "$TMP/back/curl.txt" >>"$TMP/curl.out" 2>&1 \
   && cmp -s "$TMP/local/small.txt" "$TMP/back/curl.txt"; then
  pass "curl: FTPS upload and download"
else fail "curl: FTPS upload and download" "$(cat "$TMP/curl.out")"; fi

if lftp -e "set ssl:verify-certificate no; set ftp:ssl-protect-data true; set net:max-retries 1; set net:timeout 20; set xfer:clobber on; put $TMP/local/big.bin -o implicit.bin; get implicit.bin -o $TMP/back/implicit.bin; bye" \
     -u "$USER_NAME,$USER_PW" "ftps://$IMPLICIT" >"$TMP/lftp.out" 2>&1 </dev/null \
   && [ "$(sha "$TMP/back/implicit.bin")" = "$(sha "$TMP/local/big.bin")" ]; then
  pass "lftp: implicit FTPS (ftps://) put and get keep the file intact"
else fail "lftp: implicit FTPS put and get" "$(cat "$TMP/lftp.out")"; fi

if curl -sS -k -u "$USER_NAME:$USER_PW" "ftps://$IMPLICIT/curl.txt" -o "$TMP/back/implicit.txt" >"$TMP/curl.out" 2>&1 \
   && cmp -s "$TMP/local/small.txt" "$TMP/back/implicit.txt"; then
  pass "curl: implicit FTPS (ftps://) download"
else fail "curl: implicit FTPS download" "$(cat "$TMP/curl.out")"; fi

set +e
curl -sS -u "tlsonly:$USER_PW" "ftp://$ADDR/" -o /dev/null >"$TMP/tlsonly.out" 2>&1; tlsonly_plain_rc=$?
set -e
if [ "$tlsonly_plain_rc" -ne 0 ] && grep -q "530\|Access denied\|Login denied" "$TMP/tlsonly.out"; then
  pass "a user who requires TLS is refused over plain FTP (530)"
else fail "a user who requires TLS is refused over plain FTP" "$(cat "$TMP/tlsonly.out")"; fi
if curl -sS --ssl-reqd -k -u "tlsonly:$USER_PW" -T "$TMP/local/small.txt" "ftp://$ADDR/tlsonly.txt" >"$TMP/curl.out" 2>&1; then
  pass "a user who requires TLS uploads over explicit FTPS"
else fail "a user who requires TLS uploads over explicit FTPS" "$(cat "$TMP/curl.out")"; fi

if curl -sS -u "$USER_NAME:$USER_PW" -r 6-10 "ftp://$ADDR/curl.txt" -o "$TMP/back/range.txt" >"$TMP/curl.out" 2>&1 \
   && [ "$(cat "$TMP/back/range.txt")" = "$(cut -c7-11 "$TMP/local/small.txt" | head -1)" ]; then
  pass "curl: a ranged download (REST + RETR)"
else fail "curl: a ranged download" "$(cat "$TMP/curl.out")"; fi

set +e
curl -sS -u "$USER_NAME:wrong" "ftp://$ADDR/curl.txt" -o /dev/null >"$TMP/wrong.out" 2>&1; wrong_rc=$?
curl -sS -u "$USER_NAME:$USER_PW" "ftp://$ADDR/../../etc/passwd" -o "$TMP/back/passwd" >"$TMP/esc.out" 2>&1; esc_rc=$?
curl -sS -u "$USER_NAME:$USER_PW" -P - "ftp://$ADDR/curl.txt" -o /dev/null >"$TMP/port.out" 2>&1; port_rc=$?
set -e
if [ "$wrong_rc" -ne 0 ] && grep -q "530\|Access denied\|Login denied" "$TMP/wrong.out"; then pass "a wrong password is refused (530)"
else fail "a wrong password is refused (530)" "$(cat "$TMP/wrong.out")"; fi
if [ "$esc_rc" -ne 0 ] && ! grep -q "root:" "$TMP/back/passwd" 2>/dev/null; then pass "a path above the home is refused"
else fail "a path above the home is refused" "$(cat "$TMP/esc.out")"; fi
if [ "$port_rc" -ne 0 ]; then pass "active mode (PORT/EPRT) is refused: no FTP bounce"
else fail "active mode (PORT/EPRT) is refused" "$(cat "$TMP/port.out")"; fi

events() { tg events list --limit 100000 --json --user "$USER_NAME" "$@"; }
sleep 0.5
if events --type TransferCompleted | jq -e -s --arg s "$(sha "$TMP/local/big.bin")" \
     'map(select(.protocol == "ftp" and .path == "/big.bin" and .sha256 == $s)) | length > 0' >/dev/null; then
  pass "TransferCompleted (ftp) carries the file's sha256"
else fail "TransferCompleted (ftp) carries the file's sha256" "$(events --type TransferCompleted | jq -c '{path, protocol, sha256}')"; fi
if events --type TransferCompleted | jq -e -s 'map(select(.protocol == "ftps")) | length >= 2' >/dev/null; then
  pass "FTPS transfers are recorded with the protocol ftps"
else fail "FTPS transfers are recorded with the protocol ftps" "$(events --type TransferCompleted | jq -c '{path, protocol}')"; fi
if events --type LoginFailed | jq -e -s 'map(select(.protocol == "ftp")) | length > 0' >/dev/null; then
  pass "the wrong password is recorded as LoginFailed (ftp)"
else fail "the wrong password is recorded as LoginFailed (ftp)"; fi
if tg events list --limit 100000 --json --user tlsonly --type LoginFailed \
     | jq -e -s 'map(select(.protocol == "ftp" and .detail == "tls required")) | length > 0' >/dev/null; then
  pass "the plain login of a TLS-only user is recorded as LoginFailed (tls required)"
else fail "the plain login of a TLS-only user is recorded" "$(tg events list --json --user tlsonly | jq -c '{type, protocol, detail}')"; fi
if kill -0 "$SERVER_PID" 2>/dev/null; then pass "server still running"; else fail "server still running" "$(tail -20 "$TMP/serve.err")"; fi

# ---------------------------------------------------------------- out of file descriptors
# A server that has run out of file descriptors cannot accept a connection; once some are free again
# it must accept the next as before, and meanwhile not spin on the accept that fails at once. The
# server starts again with a low limit while TCP connections that never send a command take every
# descriptor it has left. This server has no certificate: with one, each session's setup reads the
# certificate's files, which fails first once descriptors run out, and the accept is never refused.
stop_server
unset TOLLGATE_FTP_TLS_CERT TOLLGATE_FTP_TLS_KEY TOLLGATE_FTP_IMPLICIT_LISTEN
LOW_FDS=256
mkdir -p "$TMP/low_fd"
serve_tollgate "$BIN" "$TMP/low_fd" "$LOW_FDS"
LOW_ADDR=$(listening "$TMP/low_fd" ftp)
if [ -z "$LOW_ADDR" ]; then
  fail "a server limited to $LOW_FDS descriptors starts" "$(tail -20 "$TMP/low_fd/serve.err")"
else
  PORT=${LOW_ADDR##*:}
  out_of_descriptors "$TMP/low_fd" "$LOW_ADDR" "$LOW_FDS" "cannot accept an FTP connection"
  lists_files() { run_lftp false "cls -1" && grep -q "big.bin" "$TMP/lftp.out"; }
  if eventually lists_files; then pass "with descriptors free again, the server accepts an FTP login"
  else fail "with descriptors free again, the server accepts an FTP login" "$(cat "$TMP/lftp.out")"; fi
fi

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
