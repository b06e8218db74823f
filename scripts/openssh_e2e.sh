#!/usr/bin/env bash
# End-to-end check of the real tollgate binary with the real OpenSSH `sftp` client.
#
# Usage: scripts/openssh_e2e.sh [PATH_TO_TOLLGATE]      (default: target/debug/tollgate)
#
# Everything lives in a throwaway data directory (mktemp -d) that is removed on exit,
# together with the server. Prints one `ok - ...` / `not ok - ...` line per check and
# ends with `N passed, M failed`; the exit status is non-zero when a check failed.
# Set KEEP=1 to keep the data directory (and the server log) for inspection.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${1:-$REPO/target/debug/tollgate}
case $BIN in /*) ;; *) BIN=$PWD/$BIN ;; esac
[ -x "$BIN" ] || { echo "tollgate binary not found or not executable: $BIN" >&2; exit 2; }

# ---------------------------------------------------------------- prerequisites
# shellcheck source=lib.sh
source "$REPO/scripts/lib.sh"
need sshpass sshpass sftp openssh-client ssh-keygen openssh-client jq jq sha256sum coreutils

# ---------------------------------------------------------------- environment
clean_tollgate_env
export LC_ALL=C.UTF-8   # so that sftp prints UTF-8 names as they are

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-e2e.XXXXXX")
export TOLLGATE_DATA_DIR=$TMP/data
SERVER_PID=
LOW_FD_PID=
# stop PID : stops a server started here (SIGTERM, then SIGKILL after 5 s)
stop() {
  [ -n "$1" ] && kill -0 "$1" 2>/dev/null || return 0
  kill "$1" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  stop "$LOW_FD_PID"
  stop "$SERVER_PID"
  if [ "${KEEP:-0}" = 1 ]; then echo "# kept $TMP" >&2; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PASSED=0; FAILED=0
pass() { PASSED=$((PASSED + 1)); echo "ok - $1"; }
fail() {
  FAILED=$((FAILED + 1)); echo "not ok - $1"
  shift
  local line
  for line in "$@"; do printf '%s\n' "$line" | sed 's/^/#   /'; done
}
# check DESCRIPTION CMD... : ok when CMD succeeds
check() { local d=$1; shift; if "$@"; then pass "$d"; else fail "$d"; fi; }
sha() { sha256sum "$1" | cut -d' ' -f1; }
# show FILE : the file, indented, for diagnostics (empty when missing)
show() { [ -f "$1" ] && sed 's/^/#   /' "$1" || true; }

tg() { "$BIN" "$@" 2>>"$TMP/cli.err"; }

# ---------------------------------------------------------------- set-up
PASS_USER=alice; PASS_PW="e2e-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
KEY_USER=bob
mkdir -p "$TMP/data" "$TMP/local" "$TMP/back"
ssh-keygen -q -t ed25519 -N '' -C tollgate-e2e -f "$TMP/id_ed25519"

tg policy add e2e \
  --rule "/=list,download,upload,overwrite,delete,rename,create_dirs,remove_dirs,chmod_chtimes" \
  --rule "/ro=list,download" >/dev/null
tg user add "$PASS_USER" --password "$PASS_PW" --policy e2e >/dev/null
tg user add "$KEY_USER" --key-file "$TMP/id_ed25519.pub" --policy e2e >/dev/null
HOME_A=$TOLLGATE_DATA_DIR/homes/$PASS_USER
HOME_B=$TOLLGATE_DATA_DIR/homes/$KEY_USER
# The read-only subtree is made by the administrator, not through the gateway.
mkdir -p "$HOME_A/ro" "$HOME_B"
echo "read-only seed $(date +%s%N)" > "$HOME_A/ro/seed.txt"

"$BIN" serve --listen-sftp 127.0.0.1:0 --listen-http 127.0.0.1:0 --listen-ftp 127.0.0.1:0 >"$TMP/serve.out" 2>"$TMP/serve.err" &
SERVER_PID=$!
ADDR=
for _ in $(seq 300); do                      # up to 30 s
  if [ -s "$TMP/serve.out" ]; then
    ADDR=$(jq -r 'select(.listening == "sftp") | .address' "$TMP/serve.out" 2>/dev/null | head -1 || true)
    [ -n "$ADDR" ] && break
  fi
  kill -0 "$SERVER_PID" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$ADDR" ]; then
  fail "server starts and prints its address" "stdout:" "$(cat "$TMP/serve.out")" "stderr:" "$(tail -20 "$TMP/serve.err")"
  echo "$PASSED passed, $FAILED failed"; exit 1
fi
pass "server starts and prints its address ($ADDR)"
HOST=${ADDR%:*}; PORT=${ADDR##*:}

SSH_COMMON=(-oBatchMode=no -oStrictHostKeyChecking=no -oUserKnownHostsFile=/dev/null -oLogLevel=ERROR
            -oConnectTimeout=20 -oNumberOfPasswordPrompts=1)
SSH_OPTS=("${SSH_COMMON[@]}" -P "$PORT")
PW_OPTS=(-oPubkeyAuthentication=no -oPreferredAuthentications=password)
KEY_OPTS=(-oIdentitiesOnly=yes -i "$TMP/id_ed25519" -oPreferredAuthentications=publickey -oPasswordAuthentication=no)

# sftp_pw NAME [PASSWORD] : runs the batch in $TMP/NAME.batch as the password user;
# output in $TMP/NAME.out (stdout + stderr); returns sftp's exit status.
sftp_pw() {
  local name=$1 pw=${2:-$PASS_PW}
  SSHPASS=$pw sshpass -e sftp "${SSH_COMMON[@]}" -P "$PORT" "${PW_OPTS[@]}" -b "$TMP/$name.batch" \
    "$PASS_USER@$HOST" >"$TMP/$name.out" 2>&1 </dev/null
}
sftp_key() {
  local name=$1
  sftp "${SSH_OPTS[@]}" "${KEY_OPTS[@]}" -b "$TMP/$name.batch" "$KEY_USER@$HOST" >"$TMP/$name.out" 2>&1 </dev/null
}
batch() { local name=$1; shift; printf '%s\n' "$@" > "$TMP/$name.batch"; }
# events_json [ARGS...] : the event log as JSON lines
events_json() { tg events list --limit 100000 --json "$@"; }
# wait_event JQ_FILTER [ARGS...] : polls (up to 10 s) until an event matches
wait_event() {
  local filter=$1; shift
  for _ in $(seq 100); do
    if events_json "$@" | jq -e -s "map(select($filter)) | length > 0" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  return 1
}
# listed NAME FILE : NAME is a line of an `ls -1` output
listed() { grep -Fxq -- "$1" "$2"; }

# ---------------------------------------------------------------- test data
BIG=$TMP/local/random.bin
head -c $((5 * 1048576)) /dev/urandom > "$BIG"
BIG_SHA=$(sha "$BIG")
UNAME='naïve résumé 日本語 Ωmega.txt'
UNI=$TMP/local/$UNAME
printf 'unicode content %s\n' "$(date +%s%N)" > "$UNI"
RES_HALF_DIR=$TMP/half; mkdir -p "$RES_HALF_DIR"
# A truncated copy under the final name, to be resumed with `reput` / `put -a`.
head -c $((5 * 1048576 / 2)) "$BIG" > "$RES_HALF_DIR/resume.bin"
head -c $((5 * 1048576 / 3)) "$BIG" > "$RES_HALF_DIR/resume2.bin"
SMALL=$TMP/local/small.txt
echo "hello from the key user $(date +%s%N)" > "$SMALL"

# ---------------------------------------------------------------- password login + basic operations
batch login "pwd" "ls -1"
if sftp_pw login; then pass "password login ($PASS_USER)"; else fail "password login ($PASS_USER)" "$(cat "$TMP/login.out")"; fi

batch ops \
  "mkdir e2e" \
  "put $BIG e2e/random.bin" \
  "put \"$UNI\" \"e2e/$UNAME\"" \
  "ls -1 e2e" \
  "get e2e/random.bin $TMP/back/random.bin" \
  "get \"e2e/$UNAME\" \"$TMP/back/$UNAME\""
if sftp_pw ops; then pass "mkdir, put 5 MiB, put Unicode name, ls, get (batch exits 0)"
else fail "mkdir, put 5 MiB, put Unicode name, ls, get (batch exits 0)" "$(cat "$TMP/ops.out")"; fi
sed -n '/^sftp> ls -1 e2e$/,/^sftp> get/p' "$TMP/ops.out" | sed '1d;$d' | sed 's#^e2e/##' > "$TMP/ls_e2e.txt"
check "ls shows the 5 MiB file" listed random.bin "$TMP/ls_e2e.txt"
if listed "$UNAME" "$TMP/ls_e2e.txt"; then pass "ls shows the Unicode name unchanged"
else fail "ls shows the Unicode name unchanged" "$(cat "$TMP/ls_e2e.txt")"; fi
check "stored 5 MiB file on disk has the same sha256" \
  test "$(sha "$HOME_A/e2e/random.bin" 2>/dev/null || echo missing)" = "$BIG_SHA"
check "downloaded 5 MiB file has the same sha256" \
  test "$(sha "$TMP/back/random.bin" 2>/dev/null || echo missing)" = "$BIG_SHA"
check "downloaded Unicode-named file has the same sha256" \
  test "$(sha "$TMP/back/$UNAME" 2>/dev/null || echo missing)" = "$(sha "$UNI")"

# ---------------------------------------------------------------- request sizes from limits@openssh.com
# Told no buffer size (-B), OpenSSH's sftp asks the server for its limits and sizes its reads and
# writes by them; its debug output names the sizes it chose.
batch limits "get e2e/random.bin $TMP/back/limits.bin"
SSHPASS=$PASS_PW sshpass -e sftp -vvv "${SSH_OPTS[@]}" "${PW_OPTS[@]}" -b "$TMP/limits.batch" \
  "$PASS_USER@$HOST" >"$TMP/limits.out" 2>&1 </dev/null || true
if grep -q 'buffer sizes 261120 / 261120; using 261120 / 261120' "$TMP/limits.out"; then
  pass "sftp sizes its requests by the server's limits (255 KiB)"
else fail "sftp sizes its requests by the server's limits (255 KiB)" "$(grep -i -E 'limits|extension|buffer' "$TMP/limits.out")"; fi
check "a download in 255 KiB reads has the same sha256" \
  test "$(sha "$TMP/back/limits.bin" 2>/dev/null || echo missing)" = "$BIG_SHA"

# ---------------------------------------------------------------- put -f: fsync@openssh.com
# Told -f, OpenSSH's sftp asks the server to sync each file before closing it, when the server offers
# fsync@openssh.com (silently skipped otherwise); a refusal prints "remote fsync".
batch fsync "put -f $BIG synced.bin"
SSHPASS=$PASS_PW sshpass -e sftp -vvv "${SSH_OPTS[@]}" "${PW_OPTS[@]}" -b "$TMP/fsync.batch" \
  "$PASS_USER@$HOST" >"$TMP/fsync.out" 2>&1 </dev/null || true
if grep -q 'Sent message fsync@openssh.com' "$TMP/fsync.out" && ! grep -q 'remote fsync' "$TMP/fsync.out"; then
  pass "put -f syncs the file through fsync@openssh.com"
else fail "put -f syncs the file through fsync@openssh.com" "$(grep -i -E 'fsync|extension' "$TMP/fsync.out")"; fi
check "a file put with -f has the same sha256 on disk" \
  test "$(sha "$HOME_A/synced.bin" 2>/dev/null || echo missing)" = "$BIG_SHA"

# ---------------------------------------------------------------- rename, rm, rmdir
batch rename \
  "rename \"e2e/$UNAME\" e2e/renamed.txt" \
  "ls -1 e2e"
if sftp_pw rename && grep -Fxq e2e/renamed.txt "$TMP/rename.out" && ! grep -Fq "$UNAME" <(sed -n '/^sftp> ls/,$p' "$TMP/rename.out" | sed 1d); then
  pass "rename (Unicode name -> renamed.txt)"
else fail "rename (Unicode name -> renamed.txt)" "$(cat "$TMP/rename.out")"; fi
check "renamed file on disk keeps its content" \
  test "$(sha "$HOME_A/e2e/renamed.txt" 2>/dev/null || echo missing)" = "$(sha "$UNI")"

batch rmdir \
  "rm e2e/renamed.txt" \
  "rm e2e/random.bin" \
  "rmdir e2e" \
  "ls -1"
if sftp_pw rmdir && ! grep -Fxq e2e <(sed -n '/^sftp> ls -1$/,$p' "$TMP/rmdir.out" | sed 1d) && [ ! -e "$HOME_A/e2e" ]; then
  pass "rm and rmdir"
else fail "rm and rmdir" "$(cat "$TMP/rmdir.out")"; fi

# ---------------------------------------------------------------- resume (reput) and put -a
batch resume1 \
  "put $RES_HALF_DIR/resume.bin resume.bin" \
  "ls -l resume.bin"
if sftp_pw resume1 && [ "$(stat -c %s "$HOME_A/resume.bin" 2>/dev/null || echo 0)" = $((5 * 1048576 / 2)) ]; then
  pass "resume: first half uploaded under the final name"
else fail "resume: first half uploaded under the final name" "$(cat "$TMP/resume1.out")"; fi
batch resume2 \
  "reput $BIG resume.bin" \
  "get resume.bin $TMP/back/resume.bin"
if sftp_pw resume2; then pass "reput exits 0"; else fail "reput exits 0" "$(cat "$TMP/resume2.out")"; fi
check "reput: file downloaded back has the full file's sha256" \
  test "$(sha "$TMP/back/resume.bin" 2>/dev/null || echo missing)" = "$BIG_SHA"

batch resume3 \
  "put $RES_HALF_DIR/resume2.bin resume2.bin" \
  "put -a $BIG resume2.bin" \
  "get resume2.bin $TMP/back/resume2.bin" \
  "rm resume.bin" \
  "rm resume2.bin"
if sftp_pw resume3 && [ "$(sha "$TMP/back/resume2.bin" 2>/dev/null || echo missing)" = "$BIG_SHA" ]; then
  pass "put -a (resume) completes a partial upload"
else fail "put -a (resume) completes a partial upload" "$(cat "$TMP/resume3.out")"; fi

# Append: OpenSSH's sftp has no append command (`put -a` means resume); test it only when
# this client's help text offers one.
batch help "help"
sftp_pw help || true
if grep -qi 'append' "$TMP/help.out"; then
  printf 'part one\n' > "$TMP/local/append1.txt"; printf 'part two\n' > "$TMP/local/append2.txt"
  APPEND_CMD=$(grep -i 'append' "$TMP/help.out" | head -1 | awk '{print $1}')
  batch append \
    "put $TMP/local/append1.txt append.txt" \
    "$APPEND_CMD $TMP/local/append2.txt append.txt" \
    "get append.txt $TMP/back/append.txt" \
    "rm append.txt"
  if sftp_pw append && [ "$(cat "$TMP/back/append.txt" 2>/dev/null)" = "$(printf 'part one\npart two')" ]; then
    pass "append ($APPEND_CMD)"
  else fail "append ($APPEND_CMD)" "$(cat "$TMP/append.out")"; fi
else
  echo "# skip - append: $(ssh -V 2>&1 | cut -d, -f1) sftp has no append mode (put -a means resume)"
fi

# ---------------------------------------------------------------- read-only subtree
printf 'must not land in /ro\n' > "$TMP/local/ro_x.txt"
batch ro \
  "ls -1 ro" \
  "get ro/seed.txt $TMP/back/seed.txt" \
  "-put $TMP/local/ro_x.txt ro/x.txt" \
  "-rm ro/seed.txt" \
  "ls -1 ro"
sftp_pw ro || true
check "/ro: list and download allowed" \
  test "$(sha "$TMP/back/seed.txt" 2>/dev/null || echo missing)" = "$(sha "$HOME_A/ro/seed.txt")"
if grep -q 'dest open.*ro/x.txt' "$TMP/ro.out" && [ ! -e "$HOME_A/ro/x.txt" ]; then
  pass "/ro: put is refused by the server and no file is created"
else fail "/ro: put is refused by the server and no file is created" "$(cat "$TMP/ro.out")"; fi
if wait_event '.event_type == "TransferDenied" and .path == "/ro/x.txt"' --user "$PASS_USER"; then
  pass "/ro: event log has TransferDenied for /ro/x.txt"
else fail "/ro: event log has TransferDenied for /ro/x.txt" "$(tg events list --user "$PASS_USER" | tail -8)"; fi
check "/ro: rm is refused and the file stays" test -f "$HOME_A/ro/seed.txt"

# ---------------------------------------------------------------- key login
batch key \
  "put $SMALL small.txt" \
  "get small.txt $TMP/back/small.txt" \
  "ls -1"
if sftp_key key; then pass "public key login ($KEY_USER, ed25519) with put/get"
else fail "public key login ($KEY_USER, ed25519) with put/get" "$(cat "$TMP/key.out")"; fi
check "key user: downloaded file has the same sha256" \
  test "$(sha "$TMP/back/small.txt" 2>/dev/null || echo missing)" = "$(sha "$SMALL")"
check "key user: file stored in the key user's home" test -f "$HOME_B/small.txt"

# ---------------------------------------------------------------- ciphers clients prefer
for cipher in aes128-gcm@openssh.com aes256-gcm@openssh.com chacha20-poly1305@openssh.com aes128-ctr; do
  batch "cipher-$cipher" "put $SMALL c.txt" "get c.txt $TMP/back/c.txt"
  rm -f "$TMP/back/c.txt"
  if sftp "${SSH_OPTS[@]}" "${KEY_OPTS[@]}" -c "$cipher" -b "$TMP/cipher-$cipher.batch" "$KEY_USER@$HOST" \
       >"$TMP/cipher-$cipher.out" 2>&1 </dev/null \
     && [ "$(sha "$TMP/back/c.txt" 2>/dev/null || echo missing)" = "$(sha "$SMALL")" ]; then
    pass "cipher $cipher: put/get round trip"
  else fail "cipher $cipher: put/get round trip" "$(cat "$TMP/cipher-$cipher.out")"; fi
done

# ---------------------------------------------------------------- scp (OpenSSH 9 uses SFTP underneath)
rm -f "$TMP/back/scp.bin"
if scp "${SSH_OPTS[@]}" "${KEY_OPTS[@]}" "$SMALL" "$KEY_USER@$HOST:scp.bin" >"$TMP/scp.out" 2>&1 </dev/null \
   && scp "${SSH_OPTS[@]}" "${KEY_OPTS[@]}" "$KEY_USER@$HOST:scp.bin" "$TMP/back/scp.bin" >>"$TMP/scp.out" 2>&1 </dev/null \
   && [ "$(sha "$TMP/back/scp.bin" 2>/dev/null || echo missing)" = "$(sha "$SMALL")" ]; then
  pass "scp up and down exit 0 with the same sha256"
else fail "scp up and down exit 0 with the same sha256" "$(cat "$TMP/scp.out")"; fi

# ---------------------------------------------------------------- legacy scp (-O: scp -t / scp -f on the server)
rm -rf "$TMP/back/legacy.bin" "$TMP/scpdir" "$TMP/back/scpdir"
mkdir -p "$TMP/scpdir/sub"; cp "$SMALL" "$TMP/scpdir/one.txt"; cp "$SMALL" "$TMP/scpdir/sub/two.txt"
if scp -O -p "${SSH_OPTS[@]}" "${KEY_OPTS[@]}" "$SMALL" "$KEY_USER@$HOST:legacy.bin" >"$TMP/legacy.out" 2>&1 </dev/null \
   && scp -O "${SSH_OPTS[@]}" "${KEY_OPTS[@]}" "$KEY_USER@$HOST:legacy.bin" "$TMP/back/legacy.bin" >>"$TMP/legacy.out" 2>&1 </dev/null \
   && [ "$(sha "$TMP/back/legacy.bin" 2>/dev/null || echo missing)" = "$(sha "$SMALL")" ]; then
  pass "scp -O up and down exit 0 with the same sha256"
else fail "scp -O up and down exit 0 with the same sha256" "$(cat "$TMP/legacy.out")"; fi
# 5 MiB: twenty chunks, each read from the channel while the one before is written (and back).
rm -f "$TMP/back/legacy-big.bin"
big_up=0
scp -O "${SSH_OPTS[@]}" "${KEY_OPTS[@]}" "$BIG" "$KEY_USER@$HOST:legacy-big.bin" >"$TMP/legacy-big.out" 2>&1 </dev/null || big_up=$?
# Checked before the download, which is recorded under the same path.
if [ "$big_up" -eq 0 ] && wait_event ".event_type == \"TransferCompleted\" and .protocol == \"scp\" and .path == \"/legacy-big.bin\" and .sha256 == \"$BIG_SHA\" and .bytes == $((5 * 1048576))" --user "$KEY_USER"; then
  pass "a 5 MiB scp -O upload is recorded with the file's sha256 and size"
else fail "a 5 MiB scp -O upload is recorded with the file's sha256 and size" \
  "rc=$big_up $(cat "$TMP/legacy-big.out") $(events_json --type TransferCompleted | jq -c '{path, protocol, bytes, sha256}')"; fi
if scp -O "${SSH_OPTS[@]}" "${KEY_OPTS[@]}" "$KEY_USER@$HOST:legacy-big.bin" "$TMP/back/legacy-big.bin" >>"$TMP/legacy-big.out" 2>&1 </dev/null \
   && [ "$(sha "$TMP/back/legacy-big.bin" 2>/dev/null || echo missing)" = "$BIG_SHA" ]; then
  pass "scp -O downloads the 5 MiB file with the same sha256"
else fail "scp -O downloads the 5 MiB file with the same sha256" "$(cat "$TMP/legacy-big.out")"; fi
# An upload cut off mid-way (the client killed while it sends, slowed to 2 Mbit/s) leaves no
# file and is recorded as aborted.
scp -O -l 2000 "${SSH_OPTS[@]}" "${KEY_OPTS[@]}" "$BIG" "$KEY_USER@$HOST:legacy-cut.bin" >"$TMP/legacy-cut.out" 2>&1 </dev/null &
cut_pid=$!
sleep 2
kill "$cut_pid" 2>/dev/null || true
wait "$cut_pid" 2>/dev/null || true
if wait_event '.event_type == "TransferAborted" and .protocol == "scp" and .path == "/legacy-cut.bin"' --user "$KEY_USER" \
   && [ ! -e "$HOME_B/legacy-cut.bin" ] && [ -z "$(find "$HOME_B" -maxdepth 1 -name '.tollgate-part-*')" ]; then
  pass "an scp -O upload cut off mid-way leaves no file and is recorded as aborted"
else fail "an scp -O upload cut off mid-way leaves no file and is recorded as aborted" \
  "$(ls -la "$HOME_B") $(events_json --user "$KEY_USER" | jq -c 'select(.path == "/legacy-cut.bin") | {event_type, detail}')"; fi
if scp -O -r "${SSH_OPTS[@]}" "${KEY_OPTS[@]}" "$TMP/scpdir" "$KEY_USER@$HOST:" >"$TMP/legacy-r.out" 2>&1 </dev/null \
   && scp -O -r "${SSH_OPTS[@]}" "${KEY_OPTS[@]}" "$KEY_USER@$HOST:scpdir" "$TMP/back/scpdir" >>"$TMP/legacy-r.out" 2>&1 </dev/null \
   && diff -r "$TMP/scpdir" "$TMP/back/scpdir" >>"$TMP/legacy-r.out" 2>&1; then
  pass "scp -O -r copies a directory tree both ways"
else fail "scp -O -r copies a directory tree both ways" "$(cat "$TMP/legacy-r.out")"; fi
set +e
scp -O "${SSH_OPTS[@]}" "${KEY_OPTS[@]}" "$SMALL" "$KEY_USER@$HOST:../escape.bin" >"$TMP/legacy-esc.out" 2>&1 </dev/null
esc_rc=$?
ssh "${SSH_OPTS[@]/-P/-p}" "${KEY_OPTS[@]}" "$KEY_USER@$HOST" "cat /etc/passwd" >"$TMP/exec.out" 2>&1 </dev/null
exec_rc=$?
set -e
if [ "$esc_rc" -ne 0 ] && grep -q "escapes" "$TMP/legacy-esc.out"; then pass "scp -O to ../ is refused with a clear message"
else fail "scp -O to ../ is refused with a clear message" "$(cat "$TMP/legacy-esc.out")"; fi
if [ "$exec_rc" -ne 0 ] && ! grep -q "root:" "$TMP/exec.out"; then pass "other exec requests are refused"
else fail "other exec requests are refused" "$(cat "$TMP/exec.out")"; fi
if wait_event '.event_type == "CommandRefused" and .payload.CommandRefused.command == "cat /etc/passwd"' --user "$KEY_USER"; then
  pass "a refused exec request is recorded as CommandRefused"
else fail "a refused exec request is recorded as CommandRefused" "$(tg events list --user "$KEY_USER" --type CommandRefused)"; fi
if wait_event '.event_type == "TransferCompleted" and .protocol == "scp" and .path == "/legacy.bin"' --user "$KEY_USER"; then
  pass "legacy scp transfers are recorded with the protocol scp"
else fail "legacy scp transfers are recorded with the protocol scp" "$(events_json --type TransferCompleted | jq -c '{path, protocol}')"; fi

# ---------------------------------------------------------------- SSH checksum commands
set +e
ssh "${SSH_OPTS[@]/-P/-p}" "${KEY_OPTS[@]}" "$KEY_USER@$HOST" "sha256sum legacy.bin" >"$TMP/sum.out" 2>"$TMP/sum.err" </dev/null
sum_rc=$?
ssh "${SSH_OPTS[@]/-P/-p}" "${KEY_OPTS[@]}" "$KEY_USER@$HOST" "md5sum legacy.bin" >"$TMP/md5.out" 2>"$TMP/md5.err" </dev/null
md5_rc=$?
ssh "${SSH_OPTS[@]/-P/-p}" "${KEY_OPTS[@]}" "$KEY_USER@$HOST" "sha256sum no-such-file" >"$TMP/nosum.out" 2>"$TMP/nosum.err" </dev/null
nosum_rc=$?
set -e
if [ "$sum_rc" -eq 0 ] && [ "$(cat "$TMP/sum.out")" = "$(sha "$SMALL")  legacy.bin" ]; then
  pass "ssh sha256sum prints the file's SHA-256 as coreutils does"
else fail "ssh sha256sum prints the file's SHA-256 as coreutils does" "rc=$sum_rc $(cat "$TMP/sum.out" "$TMP/sum.err")"; fi
if [ "$md5_rc" -eq 0 ] && [ "$(cat "$TMP/md5.out")" = "$(md5sum "$SMALL" | cut -d' ' -f1)  legacy.bin" ]; then
  pass "ssh md5sum prints the file's MD5 as coreutils does"
else fail "ssh md5sum prints the file's MD5 as coreutils does" "rc=$md5_rc $(cat "$TMP/md5.out" "$TMP/md5.err")"; fi
if [ "$nosum_rc" -eq 1 ] && grep -q "no-such-file" "$TMP/nosum.err" && [ ! -s "$TMP/nosum.out" ]; then
  pass "ssh sha256sum of a missing file exits 1 with the error on stderr"
else fail "ssh sha256sum of a missing file exits 1 with the error on stderr" "rc=$nosum_rc $(cat "$TMP/nosum.out" "$TMP/nosum.err")"; fi

# ---------------------------------------------------------------- wrong password
batch wrong "ls"
set +e; sftp_pw wrong "not-$PASS_PW"; wrong_rc=$?; set -e
if [ "$wrong_rc" -ne 0 ]; then pass "wrong password is refused (exit $wrong_rc)"
else fail "wrong password is refused" "$(cat "$TMP/wrong.out")"; fi
if wait_event '.event_type == "LoginFailed"' --user "$PASS_USER"; then
  pass "wrong password produces a LoginFailed event"
else fail "wrong password produces a LoginFailed event" "$(tg events list --type LoginFailed)"; fi

# ---------------------------------------------------------------- event log and audit trail
if wait_event ".event_type == \"TransferCompleted\" and .path == \"/e2e/random.bin\" and .sha256 == \"$BIG_SHA\" and .bytes == $((5 * 1048576))" --user "$PASS_USER"; then
  pass "TransferCompleted for the 5 MiB upload carries the file's sha256"
else
  fail "TransferCompleted for the 5 MiB upload carries the file's sha256 ($BIG_SHA)" \
    "$(events_json --type TransferCompleted | jq -c '{path, bytes, sha256}')"
fi
if wait_event ".event_type == \"TransferCompleted\" and .path == \"/small.txt\"" --user "$KEY_USER"; then
  pass "TransferCompleted for the key user's upload"
else fail "TransferCompleted for the key user's upload" "$(tg events list --user "$KEY_USER")"; fi

set +e; tg audit verify > "$TMP/audit.out"; audit_rc=$?; set -e
if [ "$audit_rc" -eq 0 ] && grep -q '^OK' "$TMP/audit.out"; then pass "audit verify: $(head -1 "$TMP/audit.out")"
else fail "audit verify (exit $audit_rc)" "$(cat "$TMP/audit.out")" "$(tail -5 "$TMP/cli.err" 2>/dev/null)"; fi

check "server still running" kill -0 "$SERVER_PID"

# ---------------------------------------------------------------- out of file descriptors
# A server that has run out of file descriptors cannot accept a connection; once some are free again
# it must accept the next as before. A second server, on the same data directory, runs with a low
# limit while TCP connections that never send an SSH greeting take every descriptor it has left.
LOW_FDS=256
mkdir -p "$TMP/low_fd"
MAIN_PID=$SERVER_PID
serve_tollgate "$BIN" "$TMP/low_fd" "$LOW_FDS"
LOW_FD_PID=$SERVER_PID SERVER_PID=$MAIN_PID
LOW_ADDR=$(listening "$TMP/low_fd" sftp "$LOW_FD_PID")
if [ -z "$LOW_ADDR" ]; then
  fail "a server limited to $LOW_FDS descriptors starts" "$(tail -20 "$TMP/low_fd/serve.err")"
else
  out_of_descriptors "$TMP/low_fd" "$LOW_ADDR" "$LOW_FDS" "cannot accept an SSH connection"
  batch low_fd "ls /" "bye"
  if PORT=${LOW_ADDR##*:} eventually sftp_pw low_fd; then
    pass "with descriptors free again, the server accepts an sftp login"
  else fail "with descriptors free again, the server accepts an sftp login" \
    "$(cat "$TMP/low_fd/clients.out" "$TMP/low_fd.out")" "$(tail -5 "$TMP/low_fd/serve.err")"; fi
  stop "$LOW_FD_PID"
fi

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
