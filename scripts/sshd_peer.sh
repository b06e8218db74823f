#!/usr/bin/env bash
# A throwaway OpenSSH sshd on loopback, the remote server of the SFTP proxy
# storage tests (adapters/storage/tests/sftp_proxy.rs).
#
# Usage: scripts/sshd_peer.sh start DIR
#        scripts/sshd_peer.sh stop DIR
#
# `start` installs openssh-server with apt-get if it is missing, creates DIR
# with a host key, a client key, an authorized_keys file and an sshd_config,
# and starts sshd on a free port of 127.0.0.1 for the current user (key login
# only; SFTP only, served by internal-sftp whose login directory is
# DIR/files). It waits until the port answers and prints one line for eval:
#
#   export TOLLGATE_TEST_SSHD='127.0.0.1:PORT|USER|DIR/client_key|SHA256:...|DIR/files'
#
# (address, user, private key, host key fingerprint as `ssh-keygen -lf`
# prints it, a writable remote directory for the tests). Progress goes to
# stderr, sshd's own log to DIR/sshd.log. `stop` stops that sshd and removes
# DIR.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SSHD=/usr/sbin/sshd

log() { echo "sshd_peer.sh: $*" >&2; }
usage() { echo "usage: $0 start DIR | stop DIR" >&2; exit 2; }

# answers PORT : whether something accepts connections on 127.0.0.1:PORT.
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

stop() {
  local dir=$1 pid
  if [ -f "$dir/sshd.pid" ]; then
    pid=$(cat "$dir/sshd.pid")
    # Only the sshd this script started: its pid file names it, and its
    # command line names this directory's configuration.
    if [ -n "$pid" ] && grep -qF -- "$dir/sshd_config" "/proc/$pid/cmdline" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
  fi
  rm -rf "$dir"
}

write_config() {
  local dir=$1 port=$2 user=$3
  cat >"$dir/sshd_config" <<CONF
Port $port
ListenAddress 127.0.0.1
HostKey $dir/host_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
AllowUsers $user
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
StrictModes no
UsePAM no
AllowTcpForwarding no
X11Forwarding no
MaxStartups 100:30:200
MaxSessions 64
LogLevel INFO
Subsystem sftp internal-sftp -d $dir/files
ForceCommand internal-sftp -d $dir/files
CONF
}

start() {
  local dir=$1
  # shellcheck source=lib.sh
  source "$REPO/scripts/lib.sh"
  # sshd lives in /usr/sbin, which is not on every user's PATH.
  PATH=$PATH:/usr/sbin need sshd openssh-server ssh-keygen openssh-client
  [ -x "$SSHD" ] || { log "$SSHD not found after installation"; exit 1; }

  [ -e "$dir" ] && { log "$dir exists; stop it first or pick another directory"; exit 1; }
  mkdir -p "$dir/files"
  dir=$(cd "$dir" && pwd)
  # The privilege separation directory sshd insists on.
  if [ ! -d /run/sshd ]; then
    if [ "$(id -u)" -eq 0 ]; then mkdir -p /run/sshd; else sudo mkdir -p /run/sshd; fi
  fi

  ssh-keygen -q -t ed25519 -N '' -C tollgate-test-host -f "$dir/host_key"
  ssh-keygen -q -t ed25519 -N '' -C tollgate-test-client -f "$dir/client_key"
  cp "$dir/client_key.pub" "$dir/authorized_keys"
  local user fingerprint
  user=$(id -un)
  fingerprint=$(ssh-keygen -lf "$dir/host_key.pub" | awk '{print $2}')

  # sshd cannot report a port it chose itself, so pick a free one and try
  # again with another should something take it first.
  local port pid attempt
  for attempt in 1 2 3 4 5; do
    port=$(shuf -i 20000-60999 -n 1)
    answers "$port" && continue
    write_config "$dir" "$port" "$user"
    "$SSHD" -t -f "$dir/sshd_config"
    "$SSHD" -D -e -f "$dir/sshd_config" >"$dir/sshd.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do
      answers "$port" && break
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null && answers "$port"; then
      # The pid file sshd writes may lag; stop relies on this one.
      echo "$pid" >"$dir/sshd.pid"
      log "sshd (pid $pid) on 127.0.0.1:$port for $user, files in $dir/files (attempt $attempt)"
      echo "export TOLLGATE_TEST_SSHD='127.0.0.1:$port|$user|$dir/client_key|$fingerprint|$dir/files'"
      return 0
    fi
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  log "sshd did not start; its log:"
  sed 's/^/  /' "$dir/sshd.log" >&2 || true
  exit 1
}

case ${1:-} in
  start) [ $# -eq 2 ] || usage; start "$2" ;;
  stop) [ $# -eq 2 ] || usage; stop "$2" ;;
  *) usage ;;
esac
