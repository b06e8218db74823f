#!/usr/bin/env bash
# scp throughput: Tollgate (release build) side by side with OpenSSH's sshd, with the same
# OpenSSH `scp` client, password login (sshpass), cipher and random file, on loopback. For each
# cipher and mode, each run uploads the file to one server, checks the SHA-256 of the copy on the
# server's disk, downloads it again, checks the SHA-256 of the download and deletes the copy
# (over SFTP); then the same against the other server.
#
# Modes: sftp   = scp's default since OpenSSH 9 (the SFTP protocol). OpenSSH: the chrooted
#                 $PEER_USER with ForceCommand internal-sftp, as bench/sftp.sh uses.
#        legacy = `scp -O` (the original protocol: the server runs `scp -t` / `scp -f`). OpenSSH:
#                 $PEER_FULL_USER, an ordinary account, since internal-sftp refuses exec; sshd runs
#                 the system's scp through the user's shell.
# Tollgate serves both modes to one user (legacy scp is built in).
#
# Beside the throughput, each cell reports the server's CPU time per GiB moved (user + system,
# login included) and its peak RSS; bench/lib.sh says how both are measured for each server
# (Tollgate: /proc/PID; OpenSSH: a cgroup holding sshd and every process it forks).
#
# Usage: bench/scp.sh
# Env:   SIZE_MB  (1024)                     size of the random file (cached in /tmp/peers-bench)
#        CIPHERS  ("aes128-gcm@openssh.com chacha20-poly1305@openssh.com")
#        MODES    ("sftp legacy")
#        REPEAT   (3)                        runs per server, cipher, mode and direction; medians
#        TOLLGATE_BIN (target/release/tollgate; built with `cargo build --release` when missing)
#        BUILD_JOBS   (1)                    -j for that build
#
# A benchmark, not a test: no thresholds. It exits non-zero when a transfer fails, a SHA-256
# does not match, or a server does not offer a requested cipher (those cells read "failed").
# MB/s is 10^6 bytes per second; MiB is 2^20 bytes.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SIZE_MB=${SIZE_MB:-1024}
CIPHERS=${CIPHERS:-aes128-gcm@openssh.com chacha20-poly1305@openssh.com}
MODES=${MODES:-sftp legacy}
REPEAT=${REPEAT:-3}
case $SIZE_MB in ''|*[!0-9]*|0) echo "SIZE_MB must be a positive integer" >&2; exit 2 ;; esac
case $REPEAT in ''|*[!0-9]*|0) echo "REPEAT must be a positive integer" >&2; exit 2 ;; esac
for mode in $MODES; do
  case $mode in sftp|legacy) ;; *) echo "unknown mode $mode (sftp legacy)" >&2; exit 2 ;; esac
done

bench_setup
# shellcheck source=/dev/null
source "$PEERS/common.sh"   # make_random: the random file, shared with the peer harness
bench_start scpbench --measure-sshd
OPENSSH_FULL_HOME=$(getent passwd "$PEER_FULL_USER" | cut -d: -f6)

SRC=$(make_random "$SIZE_MB")
WANT=$(cat "$SRC.sha256")
BYTES=$((SIZE_MB * 1048576))
echo "# $(versions "users $PEER_USER and $PEER_FULL_USER")"
echo "# size=${SIZE_MB}MiB ciphers=\"$CIPHERS\" modes=\"$MODES\" repeat=$REPEAT"

# account SERVER MODE : "USER PASSWORD PORT DIR": who logs in, and the directory on the server's
# disk where a relative remote name lands
account() {
  case $1/$2 in
    tollgate/*) echo "$TG_USER $TG_PASS $TG_PORT $TG_HOME" ;;
    openssh/sftp) echo "$PEER_USER $PEER_PASS $SSHD_PORT $SFTP_CHROOT/$PEER_USER/data" ;;
    openssh/legacy) echo "$PEER_FULL_USER $PEER_PASS $SSHD_PORT $OPENSSH_FULL_HOME" ;;
  esac
}

FAILURES=0
NOTES=()
mkdir -p "$TMP/results"
# record SERVER CIPHER MODE DIR RC SECS : one result line in $TMP/results/..., or a failure
record() {
  local file=$TMP/results/$1_$2_$3_$4
  if [ "$5" != ok ]; then
    FAILURES=$((FAILURES + 1))
    echo "#   $1 $4: $5" >&2
    return 0
  fi
  local mbs cpu
  mbs=$(awk -v b="$BYTES" -v s="$6" 'BEGIN { if (s <= 0) s = 1e-9; printf "%.1f", b / 1e6 / s }')
  cpu=-
  [ -z "$CPU_US" ] || cpu=$(awk -v us="$CPU_US" -v mb="$SIZE_MB" 'BEGIN { printf "%.2f", us / 1e6 * 1024 / mb }')
  echo "$mbs $cpu ${HWM_KIB:--} ${SUM_KIB:--}" >>"$file"
  echo "#   $1 $4: $6 s, $mbs MB/s, server CPU $cpu s/GiB, peak RSS $(mib "$HWM_KIB") MiB" \
    "(sum over processes $(mib "$SUM_KIB") MiB), sha256 ok" >&2
}

# run_one SERVER CIPHER MODE RUN : upload, check on the server, download, check, delete
run_one() {
  local server=$1 cipher=$2 mode=$3 run=$4 user pass port dir t0 t1 rc name dl mflag=()
  read -r user pass port dir <<<"$(account "$server" "$mode")"
  [ "$mode" = legacy ] && mflag=(-O)
  client_opts "$cipher"
  name=scp-bench-$$-${cipher%%@*}-$mode-$run.bin
  dl=$TMP/download.bin
  rm -f "$dl"
  [ "$server" = tollgate ] || CLEANUP_PATHS+=("$dir/$name")

  measure_start "$server"
  t0=$EPOCHREALTIME
  rc=0
  SSHPASS=$pass sshpass -e scp -q "${mflag[@]}" "${CLIENT_OPTS[@]}" -P "$port" "$SRC" "$user@127.0.0.1:$name" \
    </dev/null 2>"$TMP/scp.err" || rc=$?
  t1=$EPOCHREALTIME
  measure_stop "$server"
  if [ "$rc" -ne 0 ]; then
    record "$server" "$cipher" "$mode" up "scp exited $rc: $(head -c 200 "$TMP/scp.err" | tr '\n' ' ')"
    return 0
  elif [ ! -f "$dir/$name" ]; then
    record "$server" "$cipher" "$mode" up "no file $dir/$name on the server"
    return 0
  elif [ "$(sha "$dir/$name")" != "$WANT" ]; then
    record "$server" "$cipher" "$mode" up "SHA-256 MISMATCH of the server's copy $dir/$name"
    return 0
  fi
  record "$server" "$cipher" "$mode" up ok "$(elapsed "$t0" "$t1")"

  measure_start "$server"
  t0=$EPOCHREALTIME
  rc=0
  SSHPASS=$pass sshpass -e scp -q "${mflag[@]}" "${CLIENT_OPTS[@]}" -P "$port" "$user@127.0.0.1:$name" "$dl" \
    </dev/null 2>"$TMP/scp.err" || rc=$?
  t1=$EPOCHREALTIME
  measure_stop "$server"
  if [ "$rc" -ne 0 ]; then
    record "$server" "$cipher" "$mode" down "scp exited $rc: $(head -c 200 "$TMP/scp.err" | tr '\n' ' ')"
  elif [ ! -f "$dl" ] || [ "$(sha "$dl")" != "$WANT" ]; then
    record "$server" "$cipher" "$mode" down "SHA-256 MISMATCH of the download"
  else
    record "$server" "$cipher" "$mode" down ok "$(elapsed "$t0" "$t1")"
  fi
  rm -f "$dl"
  # Delete through the server, so that it knows (Tollgate keeps the event log and usage).
  if ! printf 'rm %s\n' "$name" | SSHPASS=$pass sshpass -e sftp -q "${CLIENT_OPTS[@]}" -P "$port" -b - \
       "$user@127.0.0.1" >"$TMP/rm.log" 2>&1; then
    echo "#   $server: cannot delete $name: $(tr '\n' ' ' <"$TMP/rm.log")" >&2
    FAILURES=$((FAILURES + 1))
  fi
}

for cipher in $CIPHERS; do
  skip=0
  for server in openssh tollgate; do
    [ "$server" = openssh ] && port=$SSHD_PORT || port=$TG_PORT
    offer=$(not_offered "$port" "$cipher")
    if [ -n "$offer" ]; then
      NOTES+=("$server on port $port, cipher $cipher: $offer")
      FAILURES=$((FAILURES + 1))
      skip=1
    fi
  done
  [ "$skip" = 0 ] || { echo "# $cipher skipped: not offered" >&2; continue; }
  for mode in $MODES; do
    for run in $(seq "$REPEAT"); do
      for server in openssh tollgate; do
        echo "# ${cipher%@openssh.com} $mode run $run: $server" >&2
        run_one "$server" "$cipher" "$mode" "$run"
      done
    done
  done
done

# ---------------------------------------------------------------- table
# col FILE N : field N of each good run
col() { if [ -f "$1" ]; then awk -v n="$2" '$n != "-" { print $n }' "$1"; fi; }
row() { printf '%-36s %12s %13s %9s %12s %13s %12s %13s\n' "$@"; }
echo
row test "OpenSSH MB/s" "Tollgate MB/s" "TG/OSSH" "OpenSSH CPU" "Tollgate CPU" "OpenSSH RSS" "Tollgate RSS"
for cipher in $CIPHERS; do
  for mode in $MODES; do
    for dir in up down; do
      o=$TMP/results/openssh_${cipher}_${mode}_$dir
      t=$TMP/results/tollgate_${cipher}_${mode}_$dir
      om=$(col "$o" 1 | median); tm=$(col "$t" 1 | median)
      [ "$dir" = up ] && what=upload || what=download
      row "${cipher%@openssh.com} $mode $what" "$om" "$tm" "$(ratio "$tm" "$om")" \
        "$(col "$o" 2 | median2)" "$(col "$t" 2 | median2)" \
        "$(mib "$(col "$o" 3 | largest)")" "$(mib "$(col "$t" 3 | largest)")"
    done
  done
done
echo "(median of $REPEAT run(s), ${SIZE_MB} MiB, MB/s = 10^6 B/s; TG/OSSH = Tollgate/OpenSSH, higher is better;"
echo " CPU = the server's user+system seconds per GiB moved, login included, median; RSS = the server's peak"
echo " RSS in MiB over the runs: Tollgate's VmHWM, OpenSSH's largest VmHWM of any of its processes)"
echo "note: OpenSSH sftp mode logs in as $PEER_USER (chroot, internal-sftp), legacy mode as $PEER_FULL_USER" \
  "(sshd runs $(command -v scp) -t/-f through the user's shell); Tollgate as $TG_USER for both"
echo "note: OpenSSH's peak RSS summed over its processes at one sample, largest over the runs (MiB): $(
  for cipher in $CIPHERS; do for mode in $MODES; do for dir in up down; do
    printf '%s=%s ' "${cipher%@openssh.com}/$mode/$dir" \
      "$(mib "$(col "$TMP/results/openssh_${cipher}_${mode}_$dir" 4 | largest)")"
  done; done; done)"
[ -z "$PEAK_NOTE" ] || echo "note: $PEAK_NOTE"
[ -n "$SSHD_CG" ] || echo "note: no cgroup v2 hierarchy to put sshd in: OpenSSH's CPU and RSS are n/a"
if [ ${#NOTES[@]} -gt 0 ]; then printf '%s\n' "${NOTES[@]}" | sort -u | sed 's/^/note: /'; fi
[ "$FAILURES" -eq 0 ]
