#!/usr/bin/env bash
# SFTP throughput: Tollgate (release build) side by side with OpenSSH's sshd, both measured
# with the same harness, ../shared/peers/sftp_throughput.sh (OpenSSH `sftp -b`, password auth,
# random file up then down, sha256 checked), back to back for each cipher and mode.
#
# Usage: bench/sftp.sh
# Env:   SIZE_MB  (1024)                      size of the random file
#        CIPHERS  (CIPHER, else aes128-gcm@openssh.com)  space-separated, e.g.
#                 "aes128-gcm@openssh.com chacha20-poly1305@openssh.com"
#        MODES    ("default tuned")           see sftp_throughput.sh; tuned = -B 261120 -R 64
#        REPEAT   (3)                         runs per server, cipher and mode; the table shows medians
#        TOLLGATE_BIN (target/release/tollgate; built with `cargo build --release` when missing)
#        BUILD_JOBS   (cargo's default)       -j for that build
#
# A benchmark, not a test: no thresholds. It exits non-zero only when a transfer fails,
# a sha256 does not match, or a server does not offer a requested cipher (that cell then
# reads "failed" and a note names the server's offer). MB/s is 10^6 bytes per second.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PEERS=$REPO/../shared/peers
[ -d "$PEERS" ] || { echo "peer harness not found: $PEERS" >&2; exit 2; }
PEERS=$(cd "$PEERS" && pwd)

SIZE_MB=${SIZE_MB:-1024}
CIPHERS=${CIPHERS:-${CIPHER:-aes128-gcm@openssh.com}}
MODES=${MODES:-default tuned}
REPEAT=${REPEAT:-3}
BIN=${TOLLGATE_BIN:-$REPO/target/release/tollgate}

# ---------------------------------------------------------------- prerequisites
if [ ! -x "$BIN" ]; then
  echo "# building $BIN" >&2
  (cd "$REPO" && cargo build --release ${BUILD_JOBS:+-j "$BUILD_JOBS"} --bin tollgate) >&2
fi
[ -x "$BIN" ] || { echo "no tollgate binary at $BIN" >&2; exit 2; }
if [ ! -x /usr/sbin/sshd ] || ! command -v sshpass >/dev/null || ! command -v bc >/dev/null; then
  echo "# installing the peer clients and servers (install_clients.sh)" >&2
  "$PEERS/install_clients.sh" >&2
fi
command -v jq >/dev/null || { echo "jq is needed (apt-get install jq)" >&2; exit 2; }

# Connection settings of the OpenSSH peer (SSHD_PORT, PEER_USER, PEER_PASS, PEERS_DIR, ...).
# shellcheck source=/dev/null
set +u; source "$PEERS/env.sh"; set -u   # env.sh reads unset variables such as $RCLONE

# ---------------------------------------------------------------- servers
while IFS= read -r v; do
  [ "$v" = TOLLGATE_LOG ] || unset "$v"
done < <(compgen -e | grep '^TOLLGATE_' || true)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-bench.XXXXXX")
export TOLLGATE_DATA_DIR=$TMP/data
TG_PID=
SSHD_STARTED=0
cleanup() {
  local rc=$?
  if [ -n "$TG_PID" ] && kill -0 "$TG_PID" 2>/dev/null; then
    kill "$TG_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$TG_PID" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$TG_PID" 2>/dev/null || true
    wait "$TG_PID" 2>/dev/null || true
  fi
  # Stop sshd only when this script started it (stop_bg: the recorded PID only).
  if [ "$SSHD_STARTED" = 1 ]; then
    stop_bg sshd >&2 || true
    rm -f "$PEERS_DIR/pids/sshd.real.pid"
  fi
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

TG_USER=bench
TG_PASS="bench-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
"$BIN" policy add bench --rule "/=list,download,upload,overwrite,delete,rename,create_dirs,remove_dirs,chmod_chtimes" >/dev/null
"$BIN" user add "$TG_USER" --password "$TG_PASS" --policy bench >/dev/null
mkdir -p "$TOLLGATE_DATA_DIR/homes/$TG_USER"
"$BIN" serve --listen-sftp 127.0.0.1:0 --listen-http 127.0.0.1:0 --listen-ftp 127.0.0.1:0 >"$TMP/serve.out" 2>"$TMP/serve.err" &
TG_PID=$!
TG_ADDR=
for _ in $(seq 300); do                      # up to 30 s
  if [ -s "$TMP/serve.out" ]; then
    TG_ADDR=$(jq -r 'select(.listening == "sftp") | .address' "$TMP/serve.out" 2>/dev/null | head -1 || true)
    [ -n "$TG_ADDR" ] && break
  fi
  kill -0 "$TG_PID" 2>/dev/null || break
  sleep 0.1
done
[ -n "$TG_ADDR" ] || { echo "tollgate did not start:" >&2; cat "$TMP/serve.out" "$TMP/serve.err" >&2; exit 1; }
TG_PORT=${TG_ADDR##*:}

if is_running sshd; then
  echo "# sshd already running (pid $(cat "$PEERS_DIR/pids/sshd.pid")); it is left running afterwards" >&2
else
  "$PEERS/start_openssh.sh" >&2
  SSHD_STARTED=1
fi

echo "# tollgate $("$BIN" --version 2>/dev/null | awk '{print $NF}') on $TG_ADDR (user $TG_USER); $(/usr/sbin/sshd -V 2>&1 | head -1 | cut -d, -f1) on 127.0.0.1:$SSHD_PORT (user $PEER_USER)"
echo "# size=${SIZE_MB}MiB ciphers=\"$CIPHERS\" modes=\"$MODES\" repeat=$REPEAT"

# ---------------------------------------------------------------- measurements
# run_tp NAME CIPHER MODE PORT USER PASSWORD : one sftp_throughput.sh call; its last line in $TMP/NAME.last
FAILURES=0
NOTES=()
# not_offered PORT CIPHER : prints the server's cipher offer when it does not offer CIPHER
# (a key exchange only; the client has no authentication method to try)
not_offered() {
  ssh -T -oBatchMode=yes -oStrictHostKeyChecking=no -oUserKnownHostsFile=/dev/null -oLogLevel=INFO \
    -oConnectTimeout=10 -oPubkeyAuthentication=no -oPasswordAuthentication=no -oKbdInteractiveAuthentication=no \
    -oPreferredAuthentications=publickey -c "$2" -p "$1" probe@127.0.0.1 true 2>&1 </dev/null \
    | grep -o 'no matching cipher found.*' || true
}
run_tp() {
  local name=$1 cipher=$2 mode=$3 port=$4 user=$5 pass=$6 rc=0 offer
  echo "# $name: cipher=$cipher mode=$mode" >&2
  offer=$(not_offered "$port" "$cipher")
  if [ -n "$offer" ]; then
    echo "#   skipped: $offer" >&2
    echo "sftp_throughput 127.0.0.1:$port skipped | mode=$mode up=- MB/s down=- MB/s sha=cipher-not-offered" > "$TMP/$name.last"
    NOTES+=("${name%%_*} on port $port, cipher $cipher: $offer")
    FAILURES=$((FAILURES + 1))
    return 0
  fi
  SIZE_MB=$SIZE_MB CIPHER=$cipher MODES=$mode REPEAT=$REPEAT KEY='' \
    "$PEERS/sftp_throughput.sh" 127.0.0.1 "$port" "$user" "$pass" >"$TMP/$name.log" 2>&1 || rc=$?
  sed 's/^/#   /' "$TMP/$name.log" >&2
  tail -n 1 "$TMP/$name.log" > "$TMP/$name.last"
  if [ "$rc" -ne 0 ]; then FAILURES=$((FAILURES + 1)); echo "# $name: sftp_throughput.sh exited $rc" >&2; fi
}
# figures LASTFILE MODE up|down : the values of that mode's good runs (sha=ok) in a summary line
#   "sftp_throughput H:P size=.. cipher=.. | mode=default up=X MB/s down=Y MB/s sha=ok | ..."
figures() {
  awk -v mode="$2" -v dir="$3" 'BEGIN { RS = "\n"; }
    { n = split($0, seg, / \| /)
      for (i = 2; i <= n; i++) {
        if (seg[i] !~ ("^mode=" mode " ") || seg[i] !~ / sha=ok$/) continue
        m = split(seg[i], w, / +/)
        for (j = 1; j <= m; j++) if (w[j] ~ ("^" dir "=")) { sub("^" dir "=", "", w[j]); print w[j] }
      } }' "$1"
}
shas() { awk -v mode="$2" '{ n = split($0, seg, / \| /)
    for (i = 2; i <= n; i++) if (seg[i] ~ ("^mode=" mode " ")) { s = seg[i]; sub(/.*sha=/, "", s); print s } }' "$1" | sort -u | paste -sd, -; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) { print "failed"; exit }
    if (NR % 2) printf "%.1f", v[(NR + 1) / 2]; else printf "%.1f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v t="$1" -v o="$2" 'BEGIN { if (o + 0 > 0 && t + 0 > 0) printf "%.2f", t / o; else print "n/a" }'; }

ROWS=()
for cipher in $CIPHERS; do
  for mode in $MODES; do
    tag="${cipher}_${mode}"
    run_tp "openssh_$tag" "$cipher" "$mode" "$SSHD_PORT" "$PEER_USER" "$PEER_PASS"
    run_tp "tollgate_$tag" "$cipher" "$mode" "$TG_PORT" "$TG_USER" "$TG_PASS"
    for dir in up down; do
      o=$(figures "$TMP/openssh_$tag.last" "$mode" "$dir" | median)
      t=$(figures "$TMP/tollgate_$tag.last" "$mode" "$dir" | median)
      [ "$dir" = up ] && what=upload || what=download
      note="sha openssh=$(shas "$TMP/openssh_$tag.last" "$mode") tollgate=$(shas "$TMP/tollgate_$tag.last" "$mode")"
      ROWS+=("$cipher $mode $what|$o|$t|$(ratio "$t" "$o")|$note")
    done
    echo "# openssh:  $(cat "$TMP/openssh_$tag.last")"
    echo "# tollgate: $(cat "$TMP/tollgate_$tag.last")"
  done
done

echo
printf '%-48s %14s %15s %16s  %s\n' "test" "OpenSSH MB/s" "Tollgate MB/s" "Tollgate/OpenSSH" "notes"
for row in "${ROWS[@]}"; do
  IFS='|' read -r test o t r note <<<"$row"
  printf '%-48s %14s %15s %16s  %s\n' "$test" "$o" "$t" "$r" "$note"
done
echo "(median of $REPEAT run(s) each, ${SIZE_MB} MiB, MB/s = 10^6 B/s)"
if [ ${#NOTES[@]} -gt 0 ]; then printf '%s\n' "${NOTES[@]}" | sort -u | sed 's/^/note: /'; fi
[ "$FAILURES" -eq 0 ]
