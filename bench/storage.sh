#!/usr/bin/env bash
# SFTP throughput and server memory per storage backend: one Tollgate (release build) with a
# virtual folder on each backend (local disk, encrypted local disk, S3, encrypted S3, GCS,
# Azure Blob, an SFTP server behind the proxy) plus the user's home as the baseline. For each,
# OpenSSH `sftp -b` (password auth, default buffer settings) uploads then downloads a random
# file; the sha256 of the download is checked and the remote file deleted. While each transfer
# runs, the server's VmRSS is sampled every 50 ms (the peak is kept) and its CPU time is read
# before and after. By default every backend gets a fresh server process (same data directory,
# one SFTP login first), so that memory kept from an earlier row does not show in a later one;
# FRESH_SERVER=0 measures every row in one process, in the order of BACKENDS.
#
# The peers run on 127.0.0.1 and are started here in a temporary directory, then stopped:
# moto (S3) and Azurite (Azure Blob) by scripts/storage_peers.sh, and an OpenSSH sshd with key
# login by scripts/sshd_peer.sh. No GCS emulator installable here serves the API object_store's
# GCS client speaks (see storage_peers.sh), so the gcs row runs only when the caller names a
# bucket the way the tests do (TOLLGATE_TEST_GCS_ENDPOINT and TOLLGATE_TEST_GCS_BUCKET, no
# credentials); otherwise it reads "skipped" and a note says why.
#
# Usage: bench/storage.sh
# Env:   SIZE_MB  (1024)        size of the random file, in MiB
#        SIZE_MB_<BACKEND>      that backend's size instead of SIZE_MB; BACKEND in upper case with
#                               `-` as `_`, e.g. SIZE_MB_GCS=256, SIZE_MB_S3_ENC=256
#        BACKENDS ("home local local-enc s3 s3-enc gcs azure sftp")  which rows to measure;
#                               the ratios need "home"
#        REPEAT   (1)           runs per backend; the table shows medians (peak RSS: the largest)
#        FRESH_SERVER (1)       1: a new server process per backend; 0: one for all rows
#        CIPHER   (negotiated)  e.g. aes128-gcm@openssh.com
#        TOLLGATE_BIN (target/release/tollgate; built with `cargo build --release` when missing)
#        BUILD_JOBS   (cargo's default)  -j for that build
#        TOLLGATE_EMULATORS (/tmp/tollgate-emulators)  storage_peers.sh's install cache
#        MALLOC_* and GLIBC_TUNABLES reach the server unchanged (glibc allocator experiments, e.g.
#        MALLOC_MMAP_THRESHOLD_=131072); the header line names the ones set
#
# A benchmark, not a test: no thresholds (the goal of a server peak RSS under 100 MiB for a
# 1 GiB transfer is reported, not asserted). It exits non-zero only when a transfer fails or a
# sha256 does not match; it stops early, with a message, when a mount cannot be created or is
# not reachable. MB/s is 10^6 bytes per second; MiB is 2^20 bytes.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=../scripts/lib.sh
source "$REPO/scripts/lib.sh"

SIZE_MB=${SIZE_MB:-1024}
BACKENDS=${BACKENDS:-home local local-enc s3 s3-enc gcs azure sftp}
REPEAT=${REPEAT:-1}
FRESH_SERVER=${FRESH_SERVER:-1}
CIPHER=${CIPHER:-}
BIN=${TOLLGATE_BIN:-$REPO/target/release/tollgate}
# Read before clean_tollgate_env unsets every TOLLGATE_ variable.
GCS_ENDPOINT=${TOLLGATE_TEST_GCS_ENDPOINT:-}
GCS_BUCKET=${TOLLGATE_TEST_GCS_BUCKET:-}

for backend in $BACKENDS; do
  case $backend in
    home|local|local-enc|s3|s3-enc|gcs|azure|sftp) ;;
    *) echo "unknown backend $backend (home local local-enc s3 s3-enc gcs azure sftp)" >&2; exit 2 ;;
  esac
done
case $REPEAT in ''|*[!0-9]*|0) echo "REPEAT must be a positive integer" >&2; exit 2 ;; esac
case $FRESH_SERVER in 0|1) ;; *) echo "FRESH_SERVER must be 0 or 1" >&2; exit 2 ;; esac

# size_of BACKEND : its file size in MiB (SIZE_MB_<BACKEND>, else SIZE_MB)
size_of() {
  local var=${1^^}
  var=SIZE_MB_${var//-/_}
  local mb=${!var:-$SIZE_MB}
  case $mb in ''|*[!0-9]*|0) echo "$var / SIZE_MB must be a positive integer, not '$mb'" >&2; exit 2 ;; esac
  echo "$mb"
}
for backend in $BACKENDS; do size_of "$backend" >/dev/null; done

# ---------------------------------------------------------------- prerequisites
if [ ! -x "$BIN" ]; then
  echo "# building $BIN" >&2
  (cd "$REPO" && cargo build --release ${BUILD_JOBS:+-j "$BUILD_JOBS"} --bin tollgate) >&2
fi
[ -x "$BIN" ] || { echo "no tollgate binary at $BIN" >&2; exit 2; }
need sftp openssh-client sshpass sshpass jq jq curl curl openssl openssl
wants() { case " $BACKENDS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
OBJECT_STORES=0
for backend in s3 s3-enc azure; do wants "$backend" && OBJECT_STORES=1; done
# skipped BACKEND : why that backend cannot be measured here (empty when it can)
skipped() {
  if [ "$1" = gcs ] && { [ -z "$GCS_ENDPOINT" ] || [ -z "$GCS_BUCKET" ]; }; then
    echo "no GCS peer: no emulator installable here serves object_store's GCS API; set" \
      "TOLLGATE_TEST_GCS_ENDPOINT and TOLLGATE_TEST_GCS_BUCKET to measure one"
  fi
}

# ---------------------------------------------------------------- cleanup
clean_tollgate_env
TMP=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-storagebench.XXXXXX")
export TOLLGATE_DATA_DIR=$TMP/data
SERVER_PID=
SAMPLER_PID=
PEERS_STARTED=0
SSHD_STARTED=0
# stop_tollgate : stops the server this script started last (SIGTERM, SIGKILL after 10 s)
stop_tollgate() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=
}
cleanup() {
  local rc=$?
  trap - INT TERM
  if [ -n "$SAMPLER_PID" ]; then
    kill "$SAMPLER_PID" 2>/dev/null || true
    wait "$SAMPLER_PID" 2>/dev/null || true
  fi
  stop_tollgate
  if [ "$SSHD_STARTED" = 1 ]; then bash "$REPO/scripts/sshd_peer.sh" stop "$TMP/sshd" >&2 || true; fi
  if [ "$PEERS_STARTED" = 1 ]; then bash "$REPO/scripts/storage_peers.sh" stop "$TMP/peers" >&2 || true; fi
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- peers
# value FILE NAME : the value of `export NAME=VALUE` (or NAME='VALUE') in FILE
value() { sed -n "s/^export $2=//p" "$1" | head -1 | sed "s/^'\(.*\)'\$/\1/"; }
if [ "$OBJECT_STORES" = 1 ]; then
  echo "# starting the object-store emulators (storage_peers.sh)" >&2
  PEERS_STARTED=1
  bash "$REPO/scripts/storage_peers.sh" start "$TMP/peers" >"$TMP/peers.env"
  S3_ENDPOINT=$(value "$TMP/peers.env" TOLLGATE_TEST_S3_ENDPOINT)
  S3_BUCKET=$(value "$TMP/peers.env" TOLLGATE_TEST_S3_BUCKET)
  AZURE_ENDPOINT=$(value "$TMP/peers.env" TOLLGATE_TEST_AZURE_ENDPOINT)
  AZURE_CONTAINER=$(value "$TMP/peers.env" TOLLGATE_TEST_AZURE_CONTAINER)
  for v in S3_ENDPOINT S3_BUCKET AZURE_ENDPOINT AZURE_CONTAINER; do
    [ -n "${!v}" ] || { echo "storage_peers.sh printed no TOLLGATE_TEST_$v" >&2; exit 1; }
  done
fi
if wants sftp; then
  echo "# starting the OpenSSH peer (sshd_peer.sh)" >&2
  SSHD_STARTED=1
  bash "$REPO/scripts/sshd_peer.sh" start "$TMP/sshd" >"$TMP/sshd.env"
  IFS='|' read -r SSHD_ADDR SSHD_USER SSHD_KEY SSHD_FINGERPRINT SSHD_DIR \
    <<<"$(value "$TMP/sshd.env" TOLLGATE_TEST_SSHD)"
  [ -n "$SSHD_DIR" ] || { echo "sshd_peer.sh printed no TOLLGATE_TEST_SSHD" >&2; exit 1; }
fi

# ---------------------------------------------------------------- tollgate
TG_USER=bench
TG_PASS="bench-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
"$BIN" policy add bench --rule "/=list,download,upload,overwrite,delete,rename,create_dirs,remove_dirs,chmod_chtimes" >/dev/null
"$BIN" user add "$TG_USER" --password "$TG_PASS" --policy bench >/dev/null
mkdir -p "$TOLLGATE_DATA_DIR/homes/$TG_USER"
SERVER_N=0
# start_tollgate : a server on the data directory, its output in $TMP/serve-N; sets TG_PID,
# TG_PORT, SFTP_ADDR, HTTP_ADDR and SERVE_DIR
start_tollgate() {
  SERVER_N=$((SERVER_N + 1))
  SERVE_DIR=$TMP/serve-$SERVER_N
  mkdir -p "$SERVE_DIR"
  serve_tollgate "$BIN" "$SERVE_DIR"
  SFTP_ADDR=$(listening "$SERVE_DIR" sftp)
  HTTP_ADDR=$(listening "$SERVE_DIR" http)
  if [ -z "$SFTP_ADDR" ] || [ -z "$HTTP_ADDR" ]; then
    echo "tollgate did not start:" >&2; cat "$SERVE_DIR/serve.out" "$SERVE_DIR/serve.err" >&2; exit 1
  fi
  TG_PID=$SERVER_PID
  TG_PORT=${SFTP_ADDR##*:}
}
start_tollgate
# The first start of a fresh data directory prints the first administrator's password once.
ADMIN_PASS=$(sed -n 's|^first administrator: admin / \([^ ]*\) (shown once.*|\1|p' "$SERVE_DIR/serve.err" | head -1)
if [ -z "$ADMIN_PASS" ]; then
  echo "no first administrator password in the server's output:" >&2; cat "$SERVE_DIR/serve.err" >&2; exit 1
fi
API=http://$HTTP_ADDR/api/v1
code=$(curl -s -o "$TMP/token.json" -w '%{http_code}' -u "admin:$ADMIN_PASS" -X POST "$API/token") || code=000
TOKEN=$(jq -r '.access_token // empty' "$TMP/token.json" 2>/dev/null || true)
if [ "$code" != 200 ] || [ -z "$TOKEN" ]; then
  echo "POST $API/token: HTTP $code $(cat "$TMP/token.json" 2>/dev/null)" >&2; exit 1
fi

# api METHOD PATH [JSON] : an administrator's API call; the body in $TMP/api.json, fails on non-2xx
api() {
  local code body=()
  [ $# -ge 3 ] && body=(-H 'content-type: application/json' --data-binary "$3")
  code=$(curl -s -o "$TMP/api.json" -w '%{http_code}' -X "$1" -H "Authorization: Bearer $TOKEN" \
    "${body[@]}" "$API$2") || code=000
  case $code in
    2??) ;;
    *) echo "$1 $API$2: HTTP $code $(cat "$TMP/api.json" 2>/dev/null)" >&2; return 1 ;;
  esac
}

# storage BACKEND : the JSON storage of that backend's mount
PREFIX=bench-$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')
storage() {
  case $1 in
    local|local-enc)
      jq -n --arg root "$TMP/mounts/$1" '{kind: "local", root: $root}' ;;
    s3|s3-enc)
      jq -n --arg bucket "$S3_BUCKET" --arg endpoint "$S3_ENDPOINT" --arg prefix "$PREFIX/$1" \
        '{kind: "s3", bucket: $bucket, region: "us-east-1", endpoint: $endpoint, prefix: $prefix,
          access_key_id: "test", secret_access_key: "test"}' ;;
    gcs)
      jq -n --arg bucket "$GCS_BUCKET" --arg endpoint "$GCS_ENDPOINT" --arg prefix "$PREFIX/$1" \
        '{kind: "gcs", bucket: $bucket, endpoint: $endpoint, prefix: $prefix}' ;;
    azure)
      # Azurite's well-known development key (public, the same everywhere).
      jq -n --arg container "$AZURE_CONTAINER" --arg endpoint "$AZURE_ENDPOINT" --arg prefix "$PREFIX/$1" \
        --arg key 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==' \
        '{kind: "azure", account: "devstoreaccount1", container: $container, endpoint: $endpoint,
          prefix: $prefix, access_key: $key}' ;;
    sftp)
      jq -n --arg host "${SSHD_ADDR%:*}" --argjson port "${SSHD_ADDR##*:}" --arg user "$SSHD_USER" \
        --rawfile key "$SSHD_KEY" --arg fingerprint "$SSHD_FINGERPRINT" --arg root "$SSHD_DIR/$PREFIX" \
        '{kind: "sftp", host: $host, port: $port, username: $user, private_key: $key,
          host_key_fingerprint: $fingerprint, root: $root}' ;;
  esac
}

FOLDERS='[]'
for backend in $BACKENDS; do
  [ "$backend" = home ] && continue
  if [ -n "$(skipped "$backend")" ]; then
    echo "# $backend skipped: $(skipped "$backend")" >&2
    continue
  fi
  case $backend in *-enc) encrypted=true ;; *) encrypted=false ;; esac
  case $backend in local|local-enc) mkdir -p "$TMP/mounts/$backend" ;; esac
  api POST /mounts "$(jq -n --arg name "$backend" --argjson encrypted "$encrypted" \
    --argjson storage "$(storage "$backend")" '{name: $name, encrypted: $encrypted, storage: $storage}')" \
    || { echo "cannot create the mount $backend" >&2; exit 1; }
  api POST "/mounts/$backend/check" || { echo "cannot check the mount $backend" >&2; exit 1; }
  if [ "$(jq -r .reachable "$TMP/api.json")" != true ]; then
    echo "the mount $backend is not reachable: $(jq -c . "$TMP/api.json")" >&2
    exit 1
  fi
  FOLDERS=$(jq -c --arg name "$backend" '. + [{path: ("/" + $name), mount: $name}]' <<<"$FOLDERS")
done
if [ "$FOLDERS" != '[]' ]; then
  api PATCH "/users/$TG_USER" "$(jq -n --argjson folders "$FOLDERS" '{folders: $folders}')" \
    || { echo "cannot give $TG_USER its folders" >&2; exit 1; }
fi

# ---------------------------------------------------------------- measurement helpers
CLK_TCK=$(getconf CLK_TCK)
SFTP_OPTS=(-q -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR
  -o BatchMode=no -o ConnectTimeout=20 -o ServerAliveInterval=15 -o PubkeyAuthentication=no
  -o 'PreferredAuthentications=password,keyboard-interactive')
[ -n "$CIPHER" ] && SFTP_OPTS+=(-c "$CIPHER")

# sftp_batch FILE : runs that sftp batch as the benchmark user; output in $TMP/sftp.log
sftp_batch() {
  SSHPASS=$TG_PASS sshpass -e sftp -P "$TG_PORT" "${SFTP_OPTS[@]}" -b "$1" "$TG_USER@127.0.0.1" \
    >"$TMP/sftp.log" 2>&1 </dev/null
}

# rss_kib : the server's VmRSS now, in KiB (0 once it has exited)
rss_kib() {
  local key value _
  while read -r key value _; do
    [ "$key" = VmRSS: ] && { echo "$value"; return 0; }
  done 2>/dev/null <"/proc/$TG_PID/status" || true
  echo 0
}

# hwm_kib : the server's VmHWM (its lifetime peak RSS), in KiB (0 once it has exited)
hwm_kib() { awk '$1 == "VmHWM:" { print $2; found = 1 } END { if (!found) print 0 }' "/proc/$TG_PID/status" 2>/dev/null || echo 0; }

# sample_rss OUT STOP : every 50 ms until the file STOP exists, the server's VmRSS; the largest
# value (KiB) goes to OUT. Builtins only, but for sleep.
sample_rss() {
  local out=$1 stop=$2 max=0 key value _
  while [ ! -e "$stop" ]; do
    while read -r key value _; do
      if [ "$key" = VmRSS: ]; then
        [ "$value" -gt "$max" ] && max=$value
        break
      fi
    done 2>/dev/null <"/proc/$TG_PID/status" || break
    sleep 0.05
  done
  echo "$max" >"$out"
}

# cpu_ticks : the server's user + system time so far, in clock ticks (0 once it has exited)
cpu_ticks() {
  local stat fields
  stat=$(cat "/proc/$TG_PID/stat" 2>/dev/null) || { echo 0; return 0; }
  read -r -a fields <<<"${stat##*) }"   # fields[0] is field 3 (state); utime is 14, stime 15
  echo $((fields[11] + fields[12]))
}

# measure BATCH : runs the batch with the RSS sampler; sets RC, SECS, PEAK_KIB, CPU_S
measure() {
  local t0 t1 c0 c1
  rm -f "$TMP/rss.stop" "$TMP/rss.max"
  sample_rss "$TMP/rss.max" "$TMP/rss.stop" &
  SAMPLER_PID=$!
  c0=$(cpu_ticks)
  t0=$(date +%s.%N)
  RC=0; sftp_batch "$1" || RC=$?
  t1=$(date +%s.%N)
  c1=$(cpu_ticks)
  : >"$TMP/rss.stop"
  wait "$SAMPLER_PID" || true
  SAMPLER_PID=
  SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  PEAK_KIB=$(cat "$TMP/rss.max" 2>/dev/null || echo 0)
  CPU_S=$(awk -v c=$((c1 - c0)) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", c / hz }')
}

# random_file MB : a random file of that many MiB in $TMP (made once), its sha256 beside it
random_file() {
  local f=$TMP/random_$1MiB.bin
  if [ ! -f "$f" ]; then
    echo "# creating a $1 MiB random file" >&2
    openssl rand -out "$f" $(($1 * 1048576)) 2>/dev/null || head -c $(($1 * 1048576)) /dev/urandom >"$f"
    sha256sum "$f" | cut -d' ' -f1 >"$f.sha256"
  fi
  echo "$f"
}

mbps() { awk -v b="$1" -v s="$2" 'BEGIN { if (s <= 0) s = 1e-9; printf "%.1f", b / 1e6 / s }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
per_gib() { awk -v c="$1" -v mb="$2" 'BEGIN { printf "%.2f", c * 1024 / mb }'; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) { print "failed"; exit }
    if (NR % 2) printf "%.1f", v[(NR + 1) / 2]; else printf "%.1f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
median2() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) { print "failed"; exit }
    if (NR % 2) printf "%.2f", v[(NR + 1) / 2]; else printf "%.2f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v t="$1" -v o="$2" 'BEGIN { if (o + 0 > 0 && t + 0 > 0) printf "%.2f", t / o; else print "n/a" }'; }

# ---------------------------------------------------------------- measurements
echo "# tollgate $("$BIN" --version 2>/dev/null | awk '{print $NF}') (user $TG_USER), $(ssh -V 2>&1 | cut -d, -f1) sftp client"
echo "# size=${SIZE_MB}MiB backends=\"$BACKENDS\" repeat=$REPEAT fresh_server=$FRESH_SERVER cipher=${CIPHER:-negotiated}" \
  "allocator env: $(env | grep -E '^(MALLOC_[A-Z_]*|GLIBC_TUNABLES)=' | sort | paste -sd' ' - | grep . || echo none)"

# login_alone : an SFTP login with nothing but `pwd`, so that the cost of authentication shows
# apart from the transfers; sets IDLE_KIB (before) and LOGIN_KIB (its peak)
printf 'pwd\n' >"$TMP/login.batch"
login_alone() {
  IDLE_KIB=$(rss_kib)
  measure "$TMP/login.batch"
  [ "$RC" -eq 0 ] || { echo "the benchmark user cannot log in over SFTP:" >&2; cat "$TMP/sftp.log" >&2; exit 1; }
  LOGIN_KIB=$PEAK_KIB
  echo "# server pid $TG_PID on $SFTP_ADDR: idle RSS $(mib "$IDLE_KIB") MiB; peak RSS during a login alone" \
    "$(mib "$LOGIN_KIB") MiB (${SECS}s, CPU ${CPU_S}s)" >&2
}
[ "$FRESH_SERVER" = 1 ] || login_alone

FAILURES=0
mkdir -p "$TMP/results"
for backend in $BACKENDS; do
  [ -z "$(skipped "$backend")" ] || continue
  if [ "$FRESH_SERVER" = 1 ]; then
    stop_tollgate
    start_tollgate
    login_alone
  else
    IDLE_KIB=$(rss_kib)
  fi
  echo "$IDLE_KIB $LOGIN_KIB" >"$TMP/results/$backend.server"
  mb=$(size_of "$backend")
  src=$(random_file "$mb")
  want=$(cat "$src.sha256")
  bytes=$((mb * 1048576))
  if [ "$backend" = home ]; then dir=; else dir=/$backend; fi
  : >"$TMP/results/$backend"
  for run in $(seq "$REPEAT"); do
    remote=$dir/bench-$$-$run.bin
    dl=$TMP/download.bin
    rm -f "$dl"
    printf 'put %s %s\n' "$src" "$remote" >"$TMP/up.batch"
    printf 'get %s %s\n' "$remote" "$dl" >"$TMP/down.batch"
    printf 'rm %s\n' "$remote" >"$TMP/rm.batch"

    before=$(rss_kib)
    measure "$TMP/up.batch"
    up_rc=$RC up_s=$SECS up_peak=$PEAK_KIB up_cpu=$CPU_S
    if [ "$up_rc" -ne 0 ]; then
      echo "# $backend run $run: upload failed (sftp exit $up_rc):" >&2; sed 's/^/#   /' "$TMP/sftp.log" >&2
      FAILURES=$((FAILURES + 1))
      continue
    fi
    measure "$TMP/down.batch"
    down_rc=$RC down_s=$SECS down_peak=$PEAK_KIB down_cpu=$CPU_S
    if [ "$down_rc" -ne 0 ]; then
      echo "# $backend run $run: download failed (sftp exit $down_rc):" >&2; sed 's/^/#   /' "$TMP/sftp.log" >&2
      sha=failed
    elif [ "$(sha256sum "$dl" | cut -d' ' -f1)" = "$want" ]; then
      sha=ok
    else
      sha=MISMATCH
    fi
    rm -f "$dl"
    sftp_batch "$TMP/rm.batch" || { echo "# $backend run $run: rm $remote failed:" >&2; sed 's/^/#   /' "$TMP/sftp.log" >&2; }
    up=$(mbps "$bytes" "$up_s"); down=$(mbps "$bytes" "$down_s")
    echo "# $backend run $run: ${mb}MiB up ${up_s}s ${up} MB/s (peak RSS $(mib "$up_peak") MiB, CPU ${up_cpu}s)," \
      "down ${down_s}s ${down} MB/s (peak RSS $(mib "$down_peak") MiB, CPU ${down_cpu}s), sha256 $sha;" \
      "RSS before $(mib "$before") MiB, after $(mib "$(rss_kib)") MiB" >&2
    if [ "$sha" != ok ]; then FAILURES=$((FAILURES + 1)); continue; fi
    echo "$up $down $up_peak $down_peak $up_cpu $down_cpu $mb" >>"$TMP/results/$backend"
  done
  if ! kill -0 "$TG_PID" 2>/dev/null; then
    echo "# $backend: the server exited; the end of its log:" >&2; tail -n 20 "$SERVE_DIR/serve.err" | sed 's/^/#   /' >&2
    FAILURES=$((FAILURES + 1))
    echo "- -" >>"$TMP/results/$backend.server"
  else
    echo "$(hwm_kib) $(rss_kib)" >>"$TMP/results/$backend.server"
    echo "# $backend: server VmHWM $(mib "$(hwm_kib)") MiB, RSS now $(mib "$(rss_kib)") MiB" >&2
  fi
done

# ---------------------------------------------------------------- table
# column FILE N : field N of every good run
column() { awk -v n="$2" '{ print $n }' "$1"; }
home_up=n/a home_down=n/a
if [ -s "$TMP/results/home" ]; then
  home_up=$(column "$TMP/results/home" 1 | median)
  home_down=$(column "$TMP/results/home" 2 | median)
fi
# server_field BACKEND LINE FIELD : from $TMP/results/BACKEND.server (line 1: idle and login
# RSS, line 2: VmHWM and RSS at the end), in MiB
server_field() {
  local v
  v=$(awk -v l="$2" -v n="$3" 'NR == l { print $n }' "$TMP/results/$1.server" 2>/dev/null)
  if [ -n "$v" ] && [ "$v" != - ]; then mib "$v"; else echo n/a; fi
}
row() { printf '%-10s %5s %8s %9s %8s %8s %8s %8s %8s %8s %9s %8s\n' "$@"; }
echo
row backend MiB "up MB/s" "down MB/s" "up/home" "dn/home" "RSS up" "RSS dn" "CPU up" "CPU dn" \
  "RSS idle" "VmHWM"
for backend in $BACKENDS; do
  if [ -n "$(skipped "$backend")" ]; then
    row "$backend" - skipped - - - - - - - - -
    continue
  fi
  f=$TMP/results/$backend
  mb=$(size_of "$backend")
  up=$(column "$f" 1 | median); down=$(column "$f" 2 | median)
  rss_up=failed rss_down=failed cpu_up=failed cpu_down=failed
  if [ -s "$f" ]; then
    rss_up=$(mib "$(column "$f" 3 | sort -g | tail -n 1)")
    rss_down=$(mib "$(column "$f" 4 | sort -g | tail -n 1)")
    cpu_up=$(per_gib "$(column "$f" 5 | median2)" "$mb")
    cpu_down=$(per_gib "$(column "$f" 6 | median2)" "$mb")
  fi
  row "$backend" "$mb" "$up" "$down" "$(ratio "$up" "$home_up")" "$(ratio "$down" "$home_down")" \
    "$rss_up" "$rss_down" "$cpu_up" "$cpu_down" "$(server_field "$backend" 1 1)" "$(server_field "$backend" 2 1)"
done
echo "(median of $REPEAT run(s), MB/s = 10^6 B/s; RSS up/dn: the server's largest VmRSS in MiB, sampled every" \
  "50 ms during the upload/download, over all runs; CPU up/dn: the server's utime+stime in s per GiB moved;" \
  "RSS idle: the server's RSS before the row (with FRESH_SERVER=1: of the new process, before its first login); VmHWM: the server process's lifetime peak after the row)"
first=
for b in $BACKENDS; do [ -n "$(skipped "$b")" ] || { first=$b; break; }; done
if [ -n "$first" ]; then
  if [ "$FRESH_SERVER" = 1 ]; then
    echo "note: a fresh server process per row; its peak RSS during a login alone (\`sftp -b\` with pwd):" \
      "$(for b in $BACKENDS; do [ -n "$(skipped "$b")" ] || printf '%s ' "$b=$(server_field "$b" 1 2)"; done)MiB"
  else
    echo "note: one server process for every row (FRESH_SERVER=0): memory kept after a row shows in the next;" \
      "peak RSS during a login alone before the first row $(server_field "$first" 1 2) MiB"
  fi
fi
echo "note: goal: server peak RSS < 100 MiB for a 1 GiB transfer (reported, not asserted)"
echo "note: sizes: $(for b in $BACKENDS; do [ -n "$(skipped "$b")" ] || printf '%s=%sMiB ' "$b" "$(size_of "$b")"; done)"
describe() {
  local venv=${TOLLGATE_EMULATORS:-/tmp/tollgate-emulators}/venv
  local pkg=${TOLLGATE_EMULATORS:-/tmp/tollgate-emulators}/azurite/node_modules/azurite/package.json
  case $1 in
    home) echo "the user's home, the gateway's default local storage (local disk, $TOLLGATE_DATA_DIR/homes)" ;;
    local) echo "a local mount, a directory on the same disk" ;;
    local-enc) echo "a local mount with \"encrypted\": true (AES-256-GCM, 64 KiB chunks)" ;;
    s3) echo "S3: moto $("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("moto"))' 2>/dev/null || echo '?') on $S3_ENDPOINT (a Python emulator, not AWS)" ;;
    s3-enc) echo "the same moto bucket, mount encrypted" ;;
    gcs)
      if [ -n "$(skipped gcs)" ]; then echo "GCS, skipped: $(skipped gcs)"
      else echo "GCS: bucket $GCS_BUCKET at $GCS_ENDPOINT (given by the caller), anonymous requests"; fi ;;
    azure) echo "Azure Blob: Azurite $(jq -r .version "$pkg" 2>/dev/null || echo '?') on ${AZURE_ENDPOINT%/*}, in memory" ;;
    sftp) echo "SFTP proxy to $(/usr/sbin/sshd -V 2>&1 | head -1 | cut -d, -f1) internal-sftp on $SSHD_ADDR, key login" ;;
  esac
}
for backend in $BACKENDS; do echo "note: $backend = $(describe "$backend")"; done
echo "note: every peer runs on this machine ($(nproc) cores) beside the server and the sftp client; the" \
  "server's CPU excludes the peers' and the client's"
[ "$FAILURES" -eq 0 ]
