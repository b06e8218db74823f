#!/usr/bin/env bash
# FTP throughput: Tollgate (release build) side by side with vsftpd, both measured with the
# same harness, ../shared/peers/ftp_throughput.sh (lftp, passive mode, random file up then
# down, sha256 checked), over plain FTP and explicit FTPS (AUTH TLS, PROT P).
#
# Usage: bench/ftp.sh
# Env:   SIZE_MB  (1024)        size of the random file
#        VARIANTS ("plain ftps")
#        REPEAT   (3)           runs per server and variant; the table shows medians
#        TOLLGATE_BIN (target/release/tollgate; built with `cargo build --release` when missing)
#
# A benchmark, not a test: no thresholds. It exits non-zero only when a transfer fails or a
# sha256 does not match. MB/s is 10^6 bytes per second.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PEERS=$REPO/../shared/peers
[ -d "$PEERS" ] || { echo "peer harness not found: $PEERS" >&2; exit 2; }
PEERS=$(cd "$PEERS" && pwd)

SIZE_MB=${SIZE_MB:-1024}
VARIANTS=${VARIANTS:-plain ftps}
REPEAT=${REPEAT:-3}
BIN=${TOLLGATE_BIN:-$REPO/target/release/tollgate}

if [ ! -x "$BIN" ]; then
  echo "# building $BIN" >&2
  (cd "$REPO" && cargo build --release --bin tollgate) >&2
fi
if ! command -v vsftpd >/dev/null && [ ! -x /usr/sbin/vsftpd ] || ! command -v lftp >/dev/null || ! command -v bc >/dev/null; then
  echo "# installing the peer clients and servers (install_clients.sh)" >&2
  "$PEERS/install_clients.sh" >&2
fi
command -v jq >/dev/null || { echo "jq is needed (apt-get install jq)" >&2; exit 2; }
# shellcheck source=/dev/null
set +eu; source "$PEERS/env.sh"; set -eu   # env.sh probes optional tools

# shellcheck source=../scripts/lib.sh
source "$REPO/scripts/lib.sh"
clean_tollgate_env
TMP=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-ftpbench.XXXXXX")
export TOLLGATE_DATA_DIR=$TMP/data
SERVER_PID=
VSFTPD_STARTED=0
cleanup() {
  local rc=$?
  stop_server
  if [ "$VSFTPD_STARTED" = 1 ]; then stop_bg vsftpd >&2 || true; fi
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT

TG_USER=bench
TG_PASS="bench-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
  -keyout "$TMP/key.pem" -out "$TMP/cert.pem" >/dev/null 2>&1
export TOLLGATE_FTP_TLS_CERT=$TMP/cert.pem TOLLGATE_FTP_TLS_KEY=$TMP/key.pem
"$BIN" user add "$TG_USER" --password "$TG_PASS" >/dev/null
serve_tollgate "$BIN" "$TMP"
TG_ADDR=$(listening "$TMP" ftp)
[ -n "$TG_ADDR" ] || { echo "tollgate did not start" >&2; cat "$TMP/serve.err" >&2; exit 1; }
TG_PORT=${TG_ADDR##*:}

if is_running vsftpd; then
  echo "# vsftpd already running; it is left running afterwards" >&2
else
  "$PEERS/start_vsftpd.sh" >&2
  VSFTPD_STARTED=1
fi
echo "# tollgate on $TG_ADDR (user $TG_USER); vsftpd on 127.0.0.1:$VSFTPD_PORT (user $PEER_USER)"
echo "# size=${SIZE_MB}MiB variants=\"$VARIANTS\" repeat=$REPEAT"

FAILURES=0
# run_tp NAME VARIANT PORT USER PASSWORD : REPEAT runs; their summary lines in $TMP/NAME.lines
run_tp() {
  local name=$1 variant=$2 port=$3 user=$4 pass=$5
  : > "$TMP/$name.lines"
  for _ in $(seq "$REPEAT"); do
    if SIZE_MB=$SIZE_MB VARIANTS=$variant "$PEERS/ftp_throughput.sh" 127.0.0.1 "$port" "$user" "$pass" \
         >"$TMP/$name.log" 2>&1; then :; else FAILURES=$((FAILURES + 1)); fi
    sed 's/^/#   /' "$TMP/$name.log" >&2
    tail -n 1 "$TMP/$name.log" >> "$TMP/$name.lines"
  done
}
# figures FILE VARIANT up|down : the values of good runs
figures() {
  awk -v v="$2" -v dir="$3" '{ n = split($0, seg, / \| /)
      for (i = 2; i <= n; i++) {
        if (seg[i] !~ ("^" v " ") || seg[i] !~ / sha=ok$/) continue
        m = split(seg[i], w, / +/)
        for (j = 1; j <= m; j++) if (w[j] ~ ("^" dir "=")) { sub("^" dir "=", "", w[j]); print w[j] }
      } }' "$1"
}
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) { print "failed"; exit }
    if (NR % 2) printf "%.1f", v[(NR + 1) / 2]; else printf "%.1f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v t="$1" -v o="$2" 'BEGIN { if (o + 0 > 0 && t + 0 > 0) printf "%.2f", t / o; else print "n/a" }'; }

ROWS=()
for variant in $VARIANTS; do
  run_tp "vsftpd_$variant" "$variant" "$VSFTPD_PORT" "$PEER_USER" "$PEER_PASS"
  run_tp "tollgate_$variant" "$variant" "$TG_PORT" "$TG_USER" "$TG_PASS"
  for dir in up down; do
    o=$(figures "$TMP/vsftpd_$variant.lines" "$variant" "$dir" | median)
    t=$(figures "$TMP/tollgate_$variant.lines" "$variant" "$dir" | median)
    [ "$dir" = up ] && what=upload || what=download
    ROWS+=("$variant $what|$o|$t|$(ratio "$t" "$o")")
  done
done

echo
printf '%-24s %12s %15s %15s\n' "test" "vsftpd MB/s" "Tollgate MB/s" "Tollgate/vsftpd"
for row in "${ROWS[@]}"; do
  IFS='|' read -r test o t r <<<"$row"
  printf '%-24s %12s %15s %15s\n' "$test" "$o" "$t" "$r"
done
echo "(median of $REPEAT run(s) each, ${SIZE_MB} MiB, lftp passive mode, MB/s = 10^6 B/s)"
[ "$FAILURES" -eq 0 ]
