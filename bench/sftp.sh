#!/usr/bin/env bash
# SFTP throughput: Tollgate (release build) side by side with OpenSSH's sshd, both measured
# with the same harness, ../shared/peers/sftp_throughput.sh (OpenSSH `sftp -b`, password auth,
# random file up then down, sha256 checked), back to back for each cipher and mode.
#
# Beside the throughput: the server's CPU time per GiB moved (user + system, logins included)
# and its peak RSS, measured around each sftp_throughput.sh call, which moves the file up and
# down REPEAT times; so both figures cover uploads and downloads together, and the upload and
# download rows of a cipher and mode show the same ones. bench/lib.sh says how each server is
# measured (OpenSSH: every sshd process, in a cgroup of its own).
#
# Usage: bench/sftp.sh
# Env:   SIZE_MB  (1024)                      size of the random file
#        CIPHERS  (CIPHER, else aes128-gcm@openssh.com)  space-separated, e.g.
#                 "aes128-gcm@openssh.com chacha20-poly1305@openssh.com"
#        MODES    ("default tuned")           see sftp_throughput.sh; tuned = -B 261120 -R 64
#        REPEAT   (3)                         runs per server, cipher and mode; the table shows medians
#        TOLLGATE_BIN (target/release/tollgate; built with `cargo build --release` when missing)
#        BUILD_JOBS   (1)                     -j for that build
#
# A benchmark, not a test: no thresholds. It exits non-zero only when a transfer fails,
# a sha256 does not match, or a server does not offer a requested cipher (that cell then
# reads "failed" and a note names the server's offer). MB/s is 10^6 bytes per second.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SIZE_MB=${SIZE_MB:-1024}
CIPHERS=${CIPHERS:-${CIPHER:-aes128-gcm@openssh.com}}
MODES=${MODES:-default tuned}
REPEAT=${REPEAT:-3}

# Prerequisites, then Tollgate and OpenSSH's sshd (bench/lib.sh); both are stopped on exit.
bench_setup
bench_start bench --measure-sshd

echo "# $(versions "user $PEER_USER")"
echo "# size=${SIZE_MB}MiB ciphers=\"$CIPHERS\" modes=\"$MODES\" repeat=$REPEAT"

# ---------------------------------------------------------------- measurements
# run_tp NAME CIPHER MODE PORT USER PASSWORD : one sftp_throughput.sh call; its last line in $TMP/NAME.last
FAILURES=0
NOTES=()
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
  measure_start "${name%%_*}"
  SIZE_MB=$SIZE_MB CIPHER=$cipher MODES=$mode REPEAT=$REPEAT KEY='' \
    "$PEERS/sftp_throughput.sh" 127.0.0.1 "$port" "$user" "$pass" >"$TMP/$name.log" 2>&1 || rc=$?
  measure_stop "${name%%_*}"
  # CPU seconds per GiB moved: REPEAT uploads and REPEAT downloads of SIZE_MB each.
  local cpu=-
  [ -z "$CPU_US" ] || cpu=$(awk -v us="$CPU_US" -v mb="$SIZE_MB" -v n="$REPEAT" \
    'BEGIN { printf "%.2f", us / 1e6 * 1024 / (2 * n * mb) }')
  echo "$cpu ${HWM_KIB:--}" >"$TMP/$name.res"
  echo "#   server CPU $cpu s/GiB, peak RSS $(mib "$HWM_KIB") MiB" >&2
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
      read -r ocpu orss <"$TMP/openssh_$tag.res" 2>/dev/null || ocpu=- orss=-
      read -r tcpu trss <"$TMP/tollgate_$tag.res" 2>/dev/null || tcpu=- trss=-
      ROWS+=("$cipher $mode $what|$o|$t|$(ratio "$t" "$o")|$ocpu|$tcpu|$(mib "$orss")|$(mib "$trss")|$note")
    done
    echo "# openssh:  $(cat "$TMP/openssh_$tag.last")"
    echo "# tollgate: $(cat "$TMP/tollgate_$tag.last")"
  done
done

echo
printf '%-48s %14s %15s %16s %12s %13s %12s %13s  %s\n' "test" "OpenSSH MB/s" "Tollgate MB/s" \
  "Tollgate/OpenSSH" "OpenSSH CPU" "Tollgate CPU" "OpenSSH RSS" "Tollgate RSS" "notes"
for row in "${ROWS[@]}"; do
  IFS='|' read -r test o t r ocpu tcpu orss trss note <<<"$row"
  printf '%-48s %14s %15s %16s %12s %13s %12s %13s  %s\n' "$test" "$o" "$t" "$r" \
    "$ocpu" "$tcpu" "$orss" "$trss" "$note"
done
echo "(median of $REPEAT run(s) each, ${SIZE_MB} MiB, MB/s = 10^6 B/s;"
echo " CPU = the server's user+system seconds per GiB moved, uploads and downloads of that cipher and"
echo " mode together, logins included; RSS = the server's peak RSS in MiB over them: Tollgate's VmHWM,"
echo " OpenSSH's largest VmHWM of any of its processes)"
[ -z "$PEAK_NOTE" ] || echo "note: $PEAK_NOTE"
[ -n "$SSHD_CG" ] || echo "note: no cgroup v2 hierarchy to put sshd in: OpenSSH's CPU and RSS are n/a"
if [ ${#NOTES[@]} -gt 0 ]; then printf '%s\n' "${NOTES[@]}" | sort -u | sed 's/^/note: /'; fi
[ "$FAILURES" -eq 0 ]
