#!/usr/bin/env bash
# Object-store emulators for the storage backend tests
# (adapters/storage/tests/backends.rs, tests/it/mounts.rs): moto (S3) and
# Azurite (Azure Blob), on free loopback ports.
#
# No GCS emulator is started: the ones installable here
# (gcp-storage-emulator, fake-gcs-server) do not implement the XML API
# calls object_store's GCS client makes (HEAD, listing, DELETE, multipart
# uploads, copy all answer 501 or fail). The GCS tests run when
# TOLLGATE_TEST_GCS_ENDPOINT and TOLLGATE_TEST_GCS_BUCKET name a bucket.
#
#   bash scripts/storage_peers.sh start DIR   # prints `export TOLLGATE_TEST_...=...` lines
#   bash scripts/storage_peers.sh stop DIR    # stops them and removes DIR
#
# `start` installs what is missing into a cache that outlives DIR
# (${TOLLGATE_EMULATORS:-/tmp/tollgate-emulators}: a Python venv with
# moto[server], and azurite from npm), starts the
# emulators with their PIDs and logs in DIR, waits until each answers,
# creates the bucket and container the tests use, and prints the export
# lines on stdout (nothing else goes there). Starting again on a DIR whose
# emulators still run prints the same lines. Everything listens on
# 127.0.0.1 only; Azurite keeps its data in memory and sends no telemetry.
set -Eeuo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
source "$here/lib.sh"

log() { echo "storage_peers.sh: $*" >&2; }
usage() { echo "usage: storage_peers.sh start|stop DIR" >&2; exit 2; }

cache=${TOLLGATE_EMULATORS:-/tmp/tollgate-emulators}
venv=$cache/venv
azurite=$cache/azurite
bucket=tollgate-test
azure_account=devstoreaccount1
# Azurite's well-known development key (public, the same everywhere).
azure_key='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
names=(moto azurite)

# stop_one DIR NAME : SIGTERM to the process group we started (setsid made
# the PID its group id), SIGKILL after 10 s.
stop_one() {
  local file="$1/$2.pid" pid _
  [ -f "$file" ] || return 0
  pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

stop_all() {
  local name
  for name in "${names[@]}"; do stop_one "$1" "$name"; done
}

running() {
  local name
  for name in "${names[@]}"; do
    [ -f "$1/$name.pid" ] && kill -0 "$(cat "$1/$name.pid")" 2>/dev/null || return 1
  done
}

apt_install() {
  log "installing $*"
  local sudo=(); [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "$@" >&2
}

install() {
  need curl curl python3 python3 npm npm
  mkdir -p "$cache"
  if [ ! -x "$venv/bin/moto_server" ]; then
    if [ ! -x "$venv/bin/python" ]; then
      # Debian's python3 creates venvs only with python3-venv (ensurepip).
      python3 -c 'import ensurepip' 2>/dev/null || apt_install python3-venv
      python3 -m venv "$venv" >&2
    fi
    log "installing moto[server] into $venv"
    "$venv/bin/pip" install -q --disable-pip-version-check 'moto[server]' >&2
  fi
  if [ ! -x "$azurite/node_modules/.bin/azurite-blob" ]; then
    log "installing azurite into $azurite"
    mkdir -p "$azurite"
    [ -f "$azurite/package.json" ] || (cd "$azurite" && npm init -y >/dev/null)
    (cd "$azurite" && npm install --no-audit --no-fund --loglevel=error azurite >&2)
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# launch DIR NAME CMD... : starts CMD in its own session, output in DIR/NAME.log.
launch() {
  local dir=$1 name=$2; shift 2
  (cd "$dir" && exec setsid "$@" >"$dir/$name.log" 2>&1 </dev/null) &
  echo $! >"$dir/$name.pid"
}

# answers DIR NAME URL : waits (up to 60 s) until URL gives any HTTP answer.
answers() {
  local dir=$1 name=$2 url=$3 _
  for _ in $(seq 300); do
    if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)" != 000 ]; then
      return 0
    fi
    if ! kill -0 "$(cat "$dir/$name.pid")" 2>/dev/null; then
      log "$name exited; its log:"; tail -n 20 "$dir/$name.log" >&2
      return 1
    fi
    sleep 0.2
  done
  log "$name does not answer at $url; its log:"; tail -n 20 "$dir/$name.log" >&2
  return 1
}

# create_container ENDPOINT ACCOUNT KEY CONTAINER : Azure "Create Container"
# with a Shared Key signature (object_store cannot create containers).
create_container() {
  python3 - "$@" <<'EOF'
import base64, email.utils, hashlib, hmac, http.client, sys, urllib.parse
endpoint, account, key, container = sys.argv[1:]
url = urllib.parse.urlsplit(f"{endpoint.rstrip('/')}/{container}")
headers = {"x-ms-date": email.utils.formatdate(usegmt=True), "x-ms-version": "2021-12-02"}
canonical_headers = "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()))
# VERB, then 11 standard headers (all empty here), then ours and the resource.
to_sign = "PUT\n" + "\n" * 11 + canonical_headers + f"/{account}{url.path}\nrestype:container"
digest = hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest()
headers["Authorization"] = f"SharedKey {account}:{base64.b64encode(digest).decode()}"
connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
connection.request("PUT", f"{url.path}?restype=container", body=b"", headers=headers)
answer = connection.getresponse()
body = answer.read().decode(errors="replace")
if answer.status not in (201, 409):
    sys.exit(f"create container: HTTP {answer.status}: {body}")
EOF
}

start() {
  local dir=$1
  if [ -f "$dir/env" ] && running "$dir"; then
    cat "$dir/env"
    return 0
  fi
  install
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  stop_all "$dir"
  trap 'stop_all "$dir"' ERR

  local s3_port azure_port
  s3_port=$(free_port); azure_port=$(free_port)
  launch "$dir" moto "$venv/bin/moto_server" -H 127.0.0.1 -p "$s3_port"
  launch "$dir" azurite "$azurite/node_modules/.bin/azurite-blob" \
    --blobHost 127.0.0.1 --blobPort "$azure_port" \
    --inMemoryPersistence --skipApiVersionCheck --loose --disableTelemetry

  local s3=http://127.0.0.1:$s3_port
  local azure=http://127.0.0.1:$azure_port/$azure_account
  answers "$dir" moto "$s3/"
  answers "$dir" azurite "$azure?comp=list"

  # moto accepts unsigned requests; 409 means the bucket is there already.
  local code
  code=$(curl -s -o "$dir/create-bucket.out" -w '%{http_code}' -X PUT "$s3/$bucket")
  case $code in 200|409) ;; *) log "create bucket: HTTP $code"; cat "$dir/create-bucket.out" >&2; false ;; esac
  create_container "$azure" "$azure_account" "$azure_key" "$bucket"
  trap - ERR

  cat >"$dir/env" <<EOF
export TOLLGATE_TEST_S3_ENDPOINT=$s3
export TOLLGATE_TEST_S3_BUCKET=$bucket
export TOLLGATE_TEST_AZURE_ENDPOINT=$azure
export TOLLGATE_TEST_AZURE_CONTAINER=$bucket
EOF
  log "S3 $s3, Azure $azure (logs and PIDs in $dir)"
  cat "$dir/env"
}

[ $# -eq 2 ] || usage
case $1 in
  start) start "$2" ;;
  stop)
    [ -d "$2" ] || exit 0
    stop_all "$2"
    rm -rf "$2"
    ;;
  *) usage ;;
esac
