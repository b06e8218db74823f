#!/usr/bin/env bash
# What one small SFTP upload costs Tollgate's server, counted rather than timed: instructions
# (valgrind's callgrind) and heap allocations (valgrind's DHAT) per file, for one or more builds
# side by side. Counts do not drift with the machine's speed or load the way files/s does, so
# they show a change of a few percent that bench/sftp_files.sh cannot tell from its spread.
#
# Each build runs under each tool twice: SESSIONS `sftp -b` sessions (password logins) that put
# no file, and as many that put FILES files of FILE_KB random KiB between them; the difference
# divided by FILES is the cost of a file, without the server's start, the logins and the
# shutdown. Only user-space work of the server is counted (not the kernel's, not the client's).
# One session means small subscriber rounds, so the event path weighs more than with many
# sessions at once; and SHA-256 runs without the CPU's SHA instructions under valgrind, so
# hashing weighs more than it does natively. How events fall into rounds depends on timing, so
# the counts of one build vary by a few percent from run to run: repeat them. Compare builds
# with each other, not with a timed run.
#
# Usage: bench/sftp_cost.sh
# Env:   BINS     (TOLLGATE_BIN, else target/release/tollgate)  space-separated tollgate binaries
#        FILES    (200)   files in the measured run
#        SESSIONS (1)     sessions that put them at once, FILES/SESSIONS each: with more, the
#                 subscribers' rounds carry more events, as under load
#        FILE_KB  (4)     size of each file
#        TOOLS    ("callgrind dhat")
#        KEEP     ()      a directory to keep each run's tool output in (BUILD-TOOL-N.out, BUILD the
#                 binary's file name), for callgrind_annotate or DHAT's viewer
#
# A measurement, not a test: no thresholds. It exits non-zero when a session fails or the
# server does not hold every file afterwards.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
bench_setup
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind >&2; }

FILES=${FILES:-200}
SESSIONS=${SESSIONS:-1}
[ $((FILES % SESSIONS)) = 0 ] || { echo "FILES must be a multiple of SESSIONS" >&2; exit 2; }
FILE_KB=${FILE_KB:-4}
read -r -a TOOLS <<<"${TOOLS:-callgrind dhat}"
read -r -a BUILDS <<<"${BINS:-$BIN}"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-cost.XXXXXX")
trap 'stop_server; rm -rf "$WORK"' EXIT
head -c $((FILE_KB * 1024)) /dev/urandom >"$WORK/file"
client_opts ""

# count BIN TOOL N : the server's total for SESSIONS sessions putting N files in all (Ir, or
# "blocks bytes")
count() {
  local bin=$1 tool=$2 n=$3 dir out port pass i s clients=()
  dir=$(mktemp -d "$WORK/run.XXXXXX")
  trap stop_server EXIT   # this runs in a subshell: a failure must not leave the server running
  clean_tollgate_env
  export TOLLGATE_DATA_DIR=$dir/data
  pass="cost-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  "$bin" policy add cost --rule "/=list,download,upload,overwrite" >/dev/null
  "$bin" user add cost --password "$pass" --policy cost >/dev/null
  mkdir -p "$dir/data/homes/cost"
  out=$dir/$tool.out
  valgrind -q --tool="$tool" --"$tool"-out-file="$out" \
    "$bin" serve --listen-sftp 127.0.0.1:0 --listen-http 127.0.0.1:0 --listen-ftp 127.0.0.1:0 \
    >"$dir/serve.out" 2>"$dir/serve.err" &
  SERVER_PID=$!
  # Under valgrind the server starts in seconds, not milliseconds (listening waits 30 s).
  port=
  for i in 1 2 3 4; do
    port=$(listening "$dir" sftp) && [ -n "$port" ] && break
  done
  [ -n "$port" ] || { echo "tollgate did not start under $tool:" >&2; cat "$dir/serve.err" >&2; exit 1; }
  for s in $(seq "$SESSIONS"); do
    {
      echo "lcd $WORK"
      for i in $(seq $((n / SESSIONS))); do echo "put file s$s-f$i"; done
    } >"$dir/batch$s"
    SSHPASS=$pass sshpass -e sftp "${CLIENT_OPTS[@]}" -P "${port##*:}" -b "$dir/batch$s" \
      cost@127.0.0.1 >"$dir/client$s.out" 2>&1 &
    clients+=("$!")
  done
  for s in "${!clients[@]}"; do
    wait "${clients[$s]}" || { echo "sftp failed:" >&2; cat "$dir/client$((s + 1)).out" >&2; exit 1; }
  done
  # Let the subscribers finish the sessions' events before the server stops.
  sleep 3
  stop_server
  [ "$(find "$dir/data/homes/cost" -type f | wc -l)" = "$n" ] \
    || { echo "the server holds $(find "$dir/data/homes/cost" -type f | wc -l) files, not $n" >&2; exit 1; }
  case $tool in
    callgrind) callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }' ;;
    dhat) jq -r '[([.pps[].tb] | add), ([.pps[].tbk] | add)] | "\(.[1]) \(.[0])"' "$out" ;;
  esac
  [ -z "${KEEP:-}" ] || { mkdir -p "$KEEP" && cp "$out" "$KEEP/$(basename "$bin")-$tool-$n.out"; }
  rm -rf "$dir"
}

per_file() { echo "scale=1; ($2 - $1) / $FILES" | bc; }

printf '%-40s %16s %18s %18s\n' build "instructions/file" "allocations/file" "bytes alloc./file"
for bin in "${BUILDS[@]}"; do
  ir=n/a blocks=n/a bytes=n/a
  for tool in "${TOOLS[@]}"; do
    echo "# $bin: $tool, 0 and $FILES files" >&2
    read -r -a zero <<<"$(count "$bin" "$tool" 0)"
    read -r -a many <<<"$(count "$bin" "$tool" "$FILES")"
    case $tool in
      callgrind) ir=$(per_file "${zero[0]}" "${many[0]}") ;;
      dhat)
        blocks=$(per_file "${zero[0]}" "${many[0]}")
        bytes=$(per_file "${zero[1]}" "${many[1]}")
        ;;
    esac
  done
  printf '%-40s %16s %18s %18s\n' "$bin" "$ir" "$blocks" "$bytes"
done
echo "($SESSIONS sftp session(s) at once, $FILES files of $FILE_KB KiB in all; the server's user-space" \
  "counts under valgrind, as many sessions putting no file subtracted; see the header of this script)"
