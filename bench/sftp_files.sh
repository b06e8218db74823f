#!/usr/bin/env bash
# Many small files over SFTP: Tollgate (release build) side by side with OpenSSH's sshd
# (internal-sftp, the chrooted $PEER_USER as bench/sftp.sh uses). SESSIONS OpenSSH `sftp -b`
# clients run at once, password login (sshpass), each uploading FILES random files of FILE_KB
# KiB into a directory of its own; then the other server, same files. A third run, openssh-fsync,
# is OpenSSH again with `put -f`: the client asks sftp-server to fsync each file before closing it
# (the fsync@openssh.com extension), as Tollgate syncs each upload before recording it done. It
# is the like-for-like figure for durability; Tollgate also syncs the directory after the rename
# and its event log, which OpenSSH has no counterpart for. A fourth, tollgate-fsync, is Tollgate
# with `put -f`. With SYNC_UPLOADS=false, Tollgate runs with storage.sync_uploads off: it leaves
# each upload to the system's write-back as OpenSSH does (its event log is still synced), and its
# `put -f` run syncs each file on the client's request alone, as OpenSSH -f does.
#
# Figures per run:
# * files/s   = all files / wall time of the whole run (from starting the clients, logins
#               included, until the last one has exited)
# * per-file latency: in batch mode sftp echoes each command ("sftp> put ...") to its
#               line-buffered stdout before running it, so a reader that stamps each line as it
#               arrives ($EPOCHREALTIME, no process started) gives the time from one put's start
#               to the next command's, which is that put's latency (a stat of the target, open,
#               write, close). A final `pwd`, answered by the client alone, closes the last put.
#               This costs nothing per file, where `!date +%s%N` lines between the puts (which
#               batch mode also runs) would start a shell and date for each file, about 6 ms
#               on this machine, which is more than the put itself. The readers run at a
#               real-time priority (chrt -f): at a normal one, with every core busy, a reader
#               falls behind, finds several lines waiting and stamps them all at once, which
#               showed as put latencies of 0.03 ms. Where chrt is refused, a note says so.
# * login     = time from starting a client to its first command
# * START=together: every batch begins by reading one byte from a FIFO (`!dd`, run once per
#               session), and the bench writes the bytes only when every client has reached that
#               line, i.e. has logged in. All sessions then put at once, whatever each server's
#               login takes; files/s is then files / time from that signal to the last exit.
#               With START=staggered (the default) each client begins as soon as it has logged
#               in, so a server whose logins are slow has fewer sessions putting at one time.
# * server CPU seconds (user + system, the whole run, work finished after the last client
#   included) and peak RSS: see bench/lib.sh for how each server is measured.
# * START=together only: the server's CPU from the start signal on (the puts, the sessions'
#   ends and work finished after the last client), per file. The logins are left out: sshd
#   forks and execs for each, Tollgate does not, and that would hide what a file costs. Beside
#   it, the clients' CPU over the same puts, per file: every process a session starts (sshpass,
#   sftp, ssh and the line reader) runs in a cgroup v2 group of the bench's own, as sshd does.
#   The clients are the same programs against either server, so a difference there is what the
#   server makes them do (or how it shares the cores with them).
# * START=together only, Tollgate only: the mean wait of a command for its events' commit to the
#   event log, from its `tollgate_event_commit_wait_seconds` histogram (GET /metrics) read at
#   the start signal and after the last client exited: each put's start and completion are
#   such commands, and a close waits for both before its reply.
# * disk (OWN_FS=1 only), per file: the flush requests the bench filesystem's device received
#   (each fsync, fdatasync or journal commit that must reach stable storage sends one), the ext4
#   journal's commits, and the KiB written to the device. Counted from a syncfs before the run to
#   one after it, so a run starts with nothing of the last one left to write back, and its own
#   write-back is counted, synced or not. These are what each server's durability costs the disk.
# * machine idle and stolen: shares of the whole machine's CPU time over the span files/s is timed
#   on, from /proc/stat. Idle (waiting for I/O included) is time no process could use: a run with
#   little of it was bound by the cores, one with much by waits. Stolen is time the hypervisor gave
#   to other guests instead.
# After each run, the files on the server's disk are checked: the count in each session's
# directory, every size, and every SHA-256 against the source.
#
# Usage: bench/sftp_files.sh
# Env:   SESSIONS (32)   concurrent sftp clients
#        FILES    (100)  files per session
#        FILE_KB  (4)    size of each file, KiB
#        REPEAT   (3)    runs per server; the table shows medians (peak RSS: the largest)
#        CIPHER   (negotiated)  e.g. aes128-gcm@openssh.com
#        START    (staggered)   or together: see above
#        OWN_FS   (1)    1: both servers' files go to a new ext4 filesystem of the bench's own (a
#                 loop-mounted image, see own_fs in bench/lib.sh), so that files deleted by earlier
#                 runs cannot slow this one down; needs root. 0: Tollgate's under TMPDIR, OpenSSH's
#                 in its user's data directory
#        OWN_FS_MKFS  ()  extra mkfs.ext4 options for that filesystem (e.g. `-O ^has_journal`)
#        SERVERS  (openssh openssh-fsync tollgate tollgate-fsync)  which to run, in this order (e.g.
#                 `tollgate` alone while profiling it)
#        SYNC_UPLOADS (true)  false: Tollgate with storage.sync_uploads off (see above)
#        TOLLGATE_BIN (target/release/tollgate; built with `cargo build --release` when missing)
#        BUILD_JOBS   (1)       -j for that build
#        PROFILE  ()     a command run for each run's put phase (START=together only): started once
#                 every session has logged in, before the start signal, and sent SIGTERM when the
#                 last client has exited; %r in it becomes SERVER-rRUN. E.g. to see whose CPU the
#                 puts take: PROFILE="perf record -a -F 999 -o /tmp/puts-%r.data"
#
# A benchmark, not a test: no thresholds. It exits non-zero when a client fails or the files on
# a server are not all there with the right content.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SESSIONS=${SESSIONS:-32}
FILES=${FILES:-100}
FILE_KB=${FILE_KB:-4}
REPEAT=${REPEAT:-3}
CIPHER=${CIPHER:-}
START=${START:-staggered}
case $START in staggered|together) ;; *) echo "START must be staggered or together" >&2; exit 2 ;; esac
[ -z "${PROFILE:-}" ] || [ "$START" = together ] || { echo "PROFILE needs START=together" >&2; exit 2; }
for v in SESSIONS FILES FILE_KB REPEAT; do
  case ${!v} in ''|*[!0-9]*|0) echo "$v must be a positive integer" >&2; exit 2 ;; esac
done

export OWN_FS=${OWN_FS:-1}
bench_setup
bench_start filesbench --measure-sshd
TG_HTTP=$(listening "$TMP" http)   # Tollgate's metrics (commit_waits)
OPENSSH_DATA=$SFTP_CHROOT/$PEER_USER/data
OPENSSH_PREFIX=   # where the OpenSSH clients' directories go, relative to their login directory
if [ "$OWN_FS" = 1 ]; then
  openssh_dir_on_own_fs "$PEER_USER" "$OPENSSH_DATA"
  OPENSSH_PREFIX=$OPENSSH_OWN_DIR/
fi
client_opts "$CIPHER"
# The clients' own group, beside sshd's (see the top of this file).
if [ -n "$SSHD_CG" ] && mkdir "${SSHD_CG%/*}/tollgate-clients-$$" 2>/dev/null; then
  CLIENTS_CG=${SSHD_CG%/*}/tollgate-clients-$$
fi

# The source files, the same for every session, and their SHA-256 sums.
mkdir -p "$TMP/src"
for i in $(seq -f '%04g' "$FILES"); do
  head -c $((FILE_KB * 1024)) /dev/urandom >"$TMP/src/f$i"
done
(cd "$TMP/src" && sha256sum f*) >"$TMP/src.sums"

echo "# $(versions "user $PEER_USER")"
echo "# sessions=$SESSIONS files=$FILES file_kb=$FILE_KB repeat=$REPEAT cipher=${CIPHER:-negotiated} start=$START own_fs=$OWN_FS sync_uploads=${SYNC_UPLOADS:-true}"

# The reader that stamps a client's output lines (see the top of this file).
# shellcheck disable=SC2016  # $EPOCHREALTIME and $line belong to the reader's shell
STAMPER=(bash -c 'while IFS= read -r line; do printf "%s %s\n" "$EPOCHREALTIME" "$line"; done')
STAMPER_NOTE=
if chrt -f 50 true 2>/dev/null; then
  STAMPER=(chrt -f 50 "${STAMPER[@]}")
else
  STAMPER_NOTE="the line readers could not get a real-time priority (chrt -f): with busy cores, latencies may be stamped late"
fi

# session SERVER USER PASSWORD PORT BATCH OUT : one client; OUT.stamps gets its start time and
# its stdout lines, each behind the time it arrived; OUT.rc its exit status
session() {
  local start=$EPOCHREALTIME
  # This subshell joins the clients' group first, so that everything it starts is counted there.
  [ -z "$CLIENTS_CG" ] || echo "$BASHPID" >"$CLIENTS_CG/cgroup.procs"
  {
    echo "$start start"
    { local rc=0
      SSHPASS=$3 sshpass -e sftp -q "${CLIENT_OPTS[@]}" -P "$4" -b "$5" "$2@127.0.0.1" </dev/null 2>"$6.err" || rc=$?
      echo "$rc" >"$6.rc"
    } | "${STAMPER[@]}"
  } >"$6.stamps"
}

# check_files DIR : the session directory holds the FILES files with the sources' content
check_files() {
  local n
  [ -d "$1" ] || { echo "no directory $1"; return 1; }
  n=$(find "$1" -maxdepth 1 -type f | wc -l)
  [ "$n" -eq "$FILES" ] || { echo "$1 holds $n files, not $FILES"; return 1; }
  n=$(find "$1" -maxdepth 1 -type f ! -size "$((FILE_KB * 1024))c" | wc -l)
  [ "$n" -eq 0 ] || { echo "$1: $n files are not $((FILE_KB * 1024)) bytes"; return 1; }
  (cd "$1" && sha256sum --quiet -c "$TMP/src.sums" >/dev/null 2>&1) || { echo "$1: content differs"; return 1; }
}

FAILURES=0
RAN=   # the servers run, whether or not they failed
mkdir -p "$TMP/results"
# run_one SERVER RUN : one run of all sessions against SERVER; a line of figures in
# $TMP/results/SERVER: files/s p50_ms p99_ms login_median_s cpu_s hwm_kib sum_kib, then per file
# flushes journal_commits kib_written, then idle_% stolen_%, then the server's and the clients' CPU
# from the start signal on per file, ms, then Tollgate's mean wait for a commit of the event log
# over the same span, ms (each - when START=staggered or not measured)
run_one() {
  local server=$1 run=$2 user pass port base prefix= put=put measured out s dir t0 t1 secs bad=0 why clients=() profiler= ticks0 ticks1
  local cpu_go='' clients_go='' clients_end='' waits_go='' waits_end=''
  case $server in
    tollgate|tollgate-fsync)
      user=$TG_USER pass=$TG_PASS port=$TG_PORT base=$TG_HOME measured=tollgate
      [ "$server" = tollgate ] || put="put -f" ;;
    openssh|openssh-fsync)
      user=$PEER_USER pass=$PEER_PASS port=$SSHD_PORT base=$OPENSSH_DATA/$OPENSSH_PREFIX
      prefix=$OPENSSH_PREFIX measured=openssh
      [ "$server" = openssh ] || put="put -f" ;;
    *) echo "unknown server $server (openssh, openssh-fsync, tollgate or tollgate-fsync)" >&2; exit 2 ;;
  esac
  out=$TMP/run-$server-$run
  mkdir -p "$out"
  for s in $(seq -f '%02g' "$SESSIONS"); do
    dir=${prefix}files-$$-$server-r$run-s$s
    [ "$measured" = tollgate ] || [ "$OWN_FS" = 1 ] || CLEANUP_PATHS+=("$OPENSSH_DATA/$dir")
    {
      [ "$START" = staggered ] || echo "!dd if=$out/go of=/dev/null bs=1 count=1 status=none"
      echo "mkdir $dir"
      for i in $(seq -f '%04g' "$FILES"); do echo "$put $TMP/src/f$i $dir/f$i"; done
      echo pwd
    } >"$out/s$s.batch"
  done

  if [ "$START" = together ]; then
    # Held open for reading and writing, the FIFO keeps the bytes written to it until a client
    # reads its one, however late that client opens it.
    mkfifo "$out/go"
    exec 3<>"$out/go"
  fi
  disk_mark
  measure_start "$measured"
  t0=$EPOCHREALTIME
  ticks0=$(cpu_ticks)
  for s in $(seq -f '%02g' "$SESSIONS"); do
    session "$server" "$user" "$pass" "$port" "$out/s$s.batch" "$out/s$s" &
    clients+=("$!")
  done
  if [ "$START" = together ]; then
    for s in $(seq -f '%02g' "$SESSIONS"); do
      # Logged in once its first command is echoed; a client that failed never gets there.
      until grep -q 'sftp>' "$out/s$s.stamps" 2>/dev/null || [ -e "$out/s$s.rc" ]; do sleep 0.02; done
    done
    if [ -n "${PROFILE:-}" ]; then
      # shellcheck disable=SC2086  # the command's words
      ${PROFILE//%r/$server-r$run} &
      profiler=$!
      sleep 1   # let it start before the puts do
    fi
    [ "$measured" != tollgate ] || waits_go=$(commit_waits)
    t0=$EPOCHREALTIME
    ticks0=$(cpu_ticks)
    cpu_go=$(server_cpu_us "$measured")
    [ -z "$CLIENTS_CG" ] || clients_go=$(cgroup_cpu_us "$CLIENTS_CG")
    printf '%*s' "$SESSIONS" '' >&3
  fi
  wait "${clients[@]}" || true   # not a bare wait: the memory sampler runs in the background too
  t1=$EPOCHREALTIME
  [ -z "$clients_go" ] || clients_end=$(cgroup_cpu_us "$CLIENTS_CG")
  ticks1=$(cpu_ticks)
  [ -z "$waits_go" ] || waits_end=$(commit_waits)
  if [ -n "$profiler" ]; then
    # After the clock stops: a profiler writing its data out is not the servers' time.
    kill -TERM "$profiler" 2>/dev/null || true
    wait "$profiler" || true
  fi
  measure_stop "$measured"
  disk_delta
  [ "$START" = staggered ] || exec 3>&-
  secs=$(elapsed "$t0" "$t1")

  for s in $(seq -f '%02g' "$SESSIONS"); do
    if [ "$(cat "$out/s$s.rc" 2>/dev/null)" != 0 ]; then
      echo "#   $server session $s: sftp exited $(cat "$out/s$s.rc" 2>/dev/null || echo '?'):" \
        "$(head -c 300 "$out/s$s.err" | tr '\n' ' ')" >&2
      bad=1
    elif ! why=$(check_files "$base/files-$$-$server-r$run-s$s"); then
      echo "#   $server session $s: $why" >&2
      bad=1
    fi
  done
  # Latencies (ms) of every put, and each session's login time (s).
  for s in $(seq -f '%02g' "$SESSIONS"); do
    awk -v lat="$out/latency" -v login="$out/login" '
      $2 == "start" { start = $1; next }
      $2 == "sftp>" && !seen++ { printf "%.6f\n", $1 - start >> login }
      put != "" { printf "%.3f\n", ($1 - put) * 1000 >> lat; put = "" }
      $2 == "sftp>" && $3 == "put" { put = $1 }' "$out/s$s.stamps"
  done
  local n
  n=$(wc -l <"$out/latency" 2>/dev/null || echo 0)
  if [ "$n" -ne $((SESSIONS * FILES)) ]; then
    echo "#   $server: $n put latencies, not $((SESSIONS * FILES))" >&2
    bad=1
  fi
  if [ "$bad" = 1 ]; then
    FAILURES=$((FAILURES + 1))
    echo "# $server run $run: FAILED (${secs}s)" >&2
    return 0
  fi
  local files_s p50 p99 login cpu idle stolen cpu_file=- clients_file=- wait_ms=- cpu_note='' clients_note=''
  local wait_note='' commits
  files_s=$(awk -v n=$((SESSIONS * FILES)) -v s="$secs" 'BEGIN { printf "%.1f", n / s }')
  p50=$(percentile 50 <"$out/latency")
  p99=$(percentile 99 <"$out/latency")
  login=$(median2 <"$out/login")
  cpu=-
  [ -z "$CPU_US" ] || cpu=$(awk -v us="$CPU_US" 'BEGIN { printf "%.2f", us / 1e6 }')
  if [ -n "$cpu_go" ] && [ -n "$CPU_END_US" ]; then
    cpu_file=$(ms_per_file $((CPU_END_US - cpu_go)))
    cpu_note=" ($cpu_file ms per file after the logins)"
  fi
  if [ -n "$clients_end" ]; then
    clients_file=$(ms_per_file $((clients_end - clients_go)))
    clients_note="; clients' CPU $clients_file ms per file after the logins"
  fi
  if [ -n "$waits_end" ]; then
    read -r wait_ms commits < <(mean_wait "$waits_go" "$waits_end")
    wait_note="; event log commit wait $wait_ms ms per command ($commits commits)"
  fi
  read -r idle stolen < <(cpu_share "$ticks0" "$ticks1")
  echo "$files_s $p50 $p99 $login $cpu ${HWM_KIB:--} ${SUM_KIB:--} $(per_file "$DISK_FLUSHES")" \
    "$(per_file "$DISK_COMMITS") $(per_file "$DISK_KIB") $idle $stolen $cpu_file $clients_file" \
    "$wait_ms" >>"$TMP/results/$server"
  echo "# $server run $run: $((SESSIONS * FILES)) files in ${secs}s = $files_s files/s; put p50 $p50 ms," \
    "p99 $p99 ms, max $(percentile 100 <"$out/latency") ms; login median ${login}s, max" \
    "$(percentile 100 <"$out/login")s; server CPU ${cpu}s$cpu_note$clients_note$wait_note; peak RSS $(mib "$HWM_KIB") MiB (sum over" \
    "processes $(mib "$SUM_KIB") MiB); disk: $DISK_FLUSHES flushes, $DISK_COMMITS journal commits," \
    "$DISK_KIB KiB written; machine idle and stolen: $idle% $stolen%;" \
    "files checked" >&2
}

# cpu_ticks : the machine's CPU time so far, in clock ticks: busy, idle (waiting for I/O included)
# and stolen by the hypervisor, from the first line of /proc/stat
cpu_ticks() {
  awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8, $5 + $6, $9; exit }' /proc/stat
}

# cpu_share "BUSY IDLE STEAL" "BUSY IDLE STEAL" : the idle and stolen shares (%) of the time between
cpu_share() {
  awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " ")
    busy = y[1] - x[1]; idle = y[2] - x[2]; steal = y[3] - x[3]; t = busy + idle + steal
    if (t <= 0) { print "- -"; exit }
    printf "%.1f %.1f\n", 100 * idle / t, 100 * steal / t }'
}

# per_file COUNT : COUNT divided by the files of a run (- stays -)
per_file() {
  if [ "$1" = - ]; then echo -; else awk -v v="$1" -v n=$((SESSIONS * FILES)) 'BEGIN { printf "%.3f", v / n }'; fi
}

# commit_waits : "SUM COUNT" of Tollgate's commit wait histogram now; empty when unreadable
commit_waits() {
  curl -sf --max-time 5 "http://$TG_HTTP/metrics" | awk '
    $1 == "tollgate_event_commit_wait_seconds_sum" { sum = $2 }
    $1 == "tollgate_event_commit_wait_seconds_count" { count = $2 }
    END { if (count != "") print sum, count }' || true
}

# mean_wait "SUM COUNT" "SUM COUNT" : the mean commit wait between two readings, ms, and the
# commits counted ("- 0" when none)
mean_wait() {
  awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " "); n = y[2] - x[2]
    if (n <= 0) { print "-", 0; exit }
    printf "%.2f %d\n", (y[1] - x[1]) * 1000 / n, n }'
}

# ms_per_file MICROSECONDS : that much CPU time per file of a run, in ms
ms_per_file() {
  awk -v us="$1" -v n=$((SESSIONS * FILES)) 'BEGIN { printf "%.3f", us / 1e3 / n }'
}

# percentile P : the P-th percentile (nearest rank) of the numbers on stdin, 3 decimals
percentile() {
  sort -g | awk -v p="$1" '{ v[NR] = $1 } END { if (NR == 0) { print "failed"; exit }
    r = int((p / 100) * NR); if (r < (p / 100) * NR) r++; if (r < 1) r = 1; printf "%.2f", v[r] }'
}

for run in $(seq "$REPEAT"); do
  for server in ${SERVERS:-openssh openssh-fsync tollgate tollgate-fsync}; do
    echo "# run $run: $server" >&2
    run_one "$server" "$run"
    RAN="$RAN $server"
  done
done

# ---------------------------------------------------------------- table
col() { if [ -f "$TMP/results/$1" ]; then awk -v n="$2" '$n != "-" { print $n }' "$TMP/results/$1"; fi; }
row() { printf '%-40s %10s %12s %10s %12s %17s %25s  %s\n' "$@"; }
# median_or_na : median2, or n/a for a figure no run has (OpenSSH has no event log)
median_or_na() { local m; m=$(median2); if [ "$m" = failed ]; then echo n/a; else echo "$m"; fi; }
# value SERVER FIELD REDUCE : that server's figure, "failed" when no run of it succeeded, n/a when it
# did not run
value() { case " $RAN " in *" $1 "*) col "$1" "$2" | $3 ;; *) echo n/a ;; esac; }
# line NAME FIELD REDUCE BETTER [SCALE] : one row of the table; a row whose BETTER is "context"
# (neither higher nor lower is better) has no ratios
line() {
  local o f t tf r=n/a rf=n/a
  o=$(value openssh "$2" "$3"); f=$(value openssh-fsync "$2" "$3")
  t=$(value tollgate "$2" "$3"); tf=$(value tollgate-fsync "$2" "$3")
  if [ "${5:-}" = mib ]; then o=$(mib "$o"); f=$(mib "$f"); t=$(mib "$t"); tf=$(mib "$tf"); fi
  [ "$4" = context ] || { r=$(ratio "$t" "$o"); rf=$(ratio "$tf" "$f"); }
  row "$1" "$o" "$f" "$t" "$tf" "$r" "$rf" "$4"
}
echo
row test OpenSSH "OpenSSH -f" Tollgate "Tollgate -f" "Tollgate/OpenSSH" "Tollgate -f/OpenSSH -f" "better"
line "files/s" 1 median "higher"
line "put latency p50, ms" 2 median2 "lower"
line "put latency p99, ms" 3 median2 "lower"
line "login (to first command), median s" 4 median2 "lower"
line "server CPU, s per run" 5 median2 "lower"
if [ "$START" = together ]; then
  line "server CPU per file after logins, ms" 13 median2 "lower"
  [ -z "$CLIENTS_CG" ] || line "clients' CPU per file after logins, ms" 14 median2 "lower"
  line "event log commit wait per command, ms" 15 median_or_na "context"
fi
line "server peak RSS, largest process, MiB" 6 largest "lower" mib
line "server peak RSS, sum of processes, MiB" 7 largest "lower" mib
# The disk rows, where the bench's filesystem has a device whose counters the kernel gives.
DISK_ROWS=0
[ "$OWN_FS" != 1 ] || [ -z "$(disk_counters)" ] || DISK_ROWS=1
if [ "$DISK_ROWS" = 1 ]; then
  line "disk flushes per file" 8 median2 "lower"
  line "journal commits per file" 9 median2 "lower"
  line "KiB written to disk per file" 10 median2 "lower"
fi
line "machine idle, %" 11 median2 "context"
line "machine CPU stolen by the hypervisor, %" 12 median2 "context"
echo "($SESSIONS concurrent \`sftp -b\` sessions x $FILES files x $FILE_KB KiB, $((SESSIONS * FILES)) files per run;" \
  "median of $REPEAT run(s), peak RSS the largest;"
if [ "$START" = together ]; then
  echo " start=together: files/s = files / time from the start signal (all sessions logged in) to the last exit;"
  echo " CPU = user+system of all the server's processes, logins included; per file: from the start signal on;"
  [ -z "$CLIENTS_CG" ] \
    || echo " clients' CPU = that of every process the sessions started (sshpass, sftp, ssh, the line readers);"
  echo " commit wait = Tollgate's mean wait of a command (a put's start, its completion) for the event log's commit,"
  echo "   over the same span, from its tollgate_event_commit_wait_seconds histogram (GET /metrics);"
else
  echo " files/s = files / wall time of the run, logins included; CPU = user+system of all the server's processes;"
fi
echo " RSS sum = the largest sum of VmRSS over the server's processes at one 100 ms sample, shared pages counted per process;"
echo " idle, stolen = shares of the whole machine's CPU time over the span files/s is timed on (/proc/stat); idle includes"
echo "   waiting for I/O: cores no process could use, while stolen went to other guests of the host;"
if [ "$DISK_ROWS" = 1 ]; then end=";"; else end=")"; fi
echo " -f = the same server with \`put -f\`, each file synced (fsync@openssh.com) before its close;"
if [ "${SYNC_UPLOADS:-true}" = false ]; then
  echo " Tollgate with storage.sync_uploads = false: uploads left to write-back as OpenSSH leaves them$end"
else
  echo " Tollgate syncs every upload (file and directory) before recording it, with -f or not$end"
fi
[ "$DISK_ROWS" != 1 ] || echo " disk = the bench filesystem's device from before the run to after it and a syncfs (write-back included))"
[ -z "$PEAK_NOTE" ] || echo "note: $PEAK_NOTE"
[ -z "$STAMPER_NOTE" ] || echo "note: $STAMPER_NOTE"
[ -n "$SSHD_CG" ] || echo "note: no cgroup v2 hierarchy to put sshd in: OpenSSH's CPU and RSS are n/a"
[ "$FAILURES" -eq 0 ]
