# Shared by the end-to-end scripts and benchmarks (sourced, not run).

# need COMMAND PACKAGE... : installs the Debian packages of the commands that
# are missing (pairs of a command and the package that provides it).
need() {
  local missing=()
  while [ $# -ge 2 ]; do
    command -v "$1" >/dev/null || missing+=("$2")
    shift 2
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "# installing ${missing[*]}" >&2
  local sudo=(); [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >&2
}

# clean_tollgate_env : only our own settings; no configuration, database or
# homes from the caller (TOLLGATE_LOG is kept).
clean_tollgate_env() {
  local v
  while IFS= read -r v; do
    [ "$v" = TOLLGATE_LOG ] || unset "$v"
  done < <(compgen -e | grep '^TOLLGATE_' || true)
}

# serve_tollgate BIN DIR [FDS] : starts `BIN serve` on ephemeral ports with
# its output in DIR/serve.out and DIR/serve.err; sets SERVER_PID. With FDS,
# the server may have at most FDS file descriptors open.
serve_tollgate() {
  (
    [ -z "${3:-}" ] || ulimit -n "$3"
    exec "$1" serve --listen-sftp 127.0.0.1:0 --listen-http 127.0.0.1:0 --listen-ftp 127.0.0.1:0
  ) >"$2/serve.out" 2>"$2/serve.err" &
  SERVER_PID=$!
}

# listening DIR KIND [PID] : waits (up to 30 s) for the "listening" line of
# KIND (sftp, ftp, http) from the server whose output is in DIR (process PID,
# SERVER_PID by default) and prints its address; empty when it never came.
listening() {
  local addr= _ pid=${3:-$SERVER_PID}
  for _ in $(seq 300); do
    addr=$(jq -r --arg k "$2" 'select(.listening == $k) | .address' "$1/serve.out" 2>/dev/null | head -1 || true)
    [ -n "$addr" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  printf '%s' "$addr"
}

# hold_connections HOST PORT COUNT SECONDS : opens COUNT TCP connections to
# HOST:PORT that never send a byte, holds them SECONDS, closes them, and
# prints how many it held. A server limited in file descriptors (see
# serve_tollgate) runs out of them this way.
hold_connections() {
  python3 - "$@" <<'PY'
import resource, socket, sys, time
host, port, count, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
held = [socket.create_connection((host, port), timeout=10) for _ in range(count)]
time.sleep(seconds)
for s in held:
    s.close()
print(f"held {len(held)} connections")
PY
}

# out_of_descriptors DIR ADDR FDS MESSAGE : takes every descriptor left to a
# server limited to FDS (see serve_tollgate; its output in DIR, listening on
# ADDR) with connections held two seconds, then checks, with the calling
# script's pass and fail, that the server logged MESSAGE for its failed
# accepts and paused between them: with a pause after each, two seconds make
# a few dozen such lines, where a loop retrying at once makes hundreds of
# thousands.
out_of_descriptors() {
  local dir=$1 addr=$2 fds=$3 message=$4 refused what
  what="out of descriptors, the server says it cannot accept, and waits before it tries again"
  hold_connections "${addr%:*}" "${addr##*:}" $((fds + 64)) 2 >"$dir/clients.out" 2>&1 || true
  refused=$(grep -c "$message" "$dir/serve.err" || true)
  if [ "$refused" -ge 1 ] && [ "$refused" -le 100 ]; then pass "$what"
  else fail "$what" "$refused failed accepts logged" "$(cat "$dir/clients.out")"; fi
}

# eventually CMD... : runs CMD until it succeeds, up to 20 times half a second
# apart; fails when it never did.
eventually() {
  local _
  for _ in $(seq 20); do "$@" && return 0; sleep 0.5; done
  return 1
}

# stop_server : stops the server started by serve_tollgate, if any.
stop_server() {
  if [ -n "${SERVER_PID:-}" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
}
