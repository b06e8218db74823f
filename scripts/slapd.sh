#!/usr/bin/env bash
# A throwaway OpenLDAP slapd on loopback, the directory of the LDAP adapter
# tests (adapters/identity/tests/ldap.rs).
#
#   bash scripts/slapd.sh start DIR   # prints `export TOLLGATE_TEST_LDAP...=...` lines
#   bash scripts/slapd.sh stop DIR    # stops that slapd and removes DIR
#
# `start` installs slapd and ldap-utils with apt-get if they are missing
# (without configuring or starting the system's own slapd), then builds a
# directory of its own in DIR: a slapd.conf, an MDB database loaded with
# slapadd, a self-signed CA (DIR/ca.pem) and a server certificate for
# 127.0.0.1 and localhost. It starts slapd in the foreground of its own
# session on two free ports of 127.0.0.1, plain LDAP (StartTLS offered) and
# LDAPS, waits until both answer, and prints on stdout (nothing else goes
# there):
#
#   export TOLLGATE_TEST_LDAP_URL=ldap://127.0.0.1:PORT
#   export TOLLGATE_TEST_LDAPS_URL=ldaps://127.0.0.1:PORT
#   export TOLLGATE_TEST_LDAP_CA=DIR/ca.pem
#   export TOLLGATE_TEST_LDAP_BASE=dc=example,dc=org
#
# Starting again on a DIR whose slapd still runs prints the same lines.
# Progress goes to stderr, slapd's own output to DIR/slapd.log. The system's
# /etc/ldap configuration is never read or changed. The directory:
#
#   dc=example,dc=org                    admin cn=admin,dc=example,dc=org / adminpass
#   uid=alice,ou=users,dc=example,dc=org / alicepass
#   uid=bob,ou=users,dc=example,dc=org   / bobpass
#   uid=carol,ou=users,dc=example,dc=org / carolpass (in no group)
#   cn=sftpusers,ou=groups,dc=example,dc=org (groupOfNames: alice, bob)
#   cn=auditors,ou=groups,dc=example,dc=org  (groupOfNames: alice)
#   cn=operators,ou=groups,dc=example,dc=org (groupOfUniqueNames: bob)
#
# The memberof overlay keeps each user's memberOf values for the
# groupOfNames groups (as Active Directory does), so the groups are added
# through slapd once it runs; the groupOfUniqueNames group appears in no
# memberOf and is found only by a group search.
set -Eeuo pipefail

SLAPD=/usr/sbin/slapd
BASE=dc=example,dc=org

log() { echo "slapd.sh: $*" >&2; }
usage() { echo "usage: slapd.sh start|stop DIR" >&2; exit 2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# install : slapd and ldap-utils from Debian, with the package's own
# directory setup and service start turned off.
install() {
  [ -x "$SLAPD" ] && [ -x /usr/sbin/slapadd ] && [ -x /usr/sbin/slappasswd ] \
    && command -v ldapsearch >/dev/null && return 0
  log "installing slapd and ldap-utils"
  echo "slapd slapd/no_configuration boolean true" | as_root debconf-set-selections
  # Keep the package from starting the system's slapd; a policy already in
  # place is left as it is.
  local policy=/usr/sbin/policy-rc.d created_policy=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
    as_root chmod 755 "$policy"
    created_policy=1
  fi
  local status=0
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slapd ldap-utils >&2 || {
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 &&
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slapd ldap-utils >&2
  } || status=$?
  [ -z "$created_policy" ] || as_root rm -f "$policy"
  [ "$status" -eq 0 ] || { log "installing slapd failed"; exit 1; }
  [ -x "$SLAPD" ] || { log "$SLAPD not found after installation"; exit 1; }
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# ours DIR : the PID of the slapd this script started in DIR, if it runs.
ours() {
  local pid
  [ -f "$1/slapd.pid" ] || return 1
  pid=$(cat "$1/slapd.pid")
  [ -n "$pid" ] && grep -qF -- "$1/slapd.conf" "/proc/$pid/cmdline" 2>/dev/null || return 1
  echo "$pid"
}

# stop_slapd DIR : SIGTERM to the slapd started in DIR, SIGKILL after 10 s.
stop_slapd() {
  local pid _
  pid=$(ours "$1") || { rm -f "$1/slapd.pid"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$1/slapd.pid"
}

# certificates DIR : a CA and a server certificate for 127.0.0.1/localhost.
certificates() {
  local dir=$1
  openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" -days 7 -subj "/CN=Tollgate test LDAP CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$dir/server.key" -out "$dir/server.csr" -subj "/CN=localhost" 2>/dev/null
  cat >"$dir/server.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost
EXT
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -CAcreateserial -days 7 -extfile "$dir/server.ext" -out "$dir/server.pem" 2>/dev/null
  chmod 600 "$dir/ca.key" "$dir/server.key"
}

write_config() {
  local dir=$1 admin_hash=$2
  cat >"$dir/slapd.conf" <<CONF
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
pidfile $dir/slapd.run.pid
argsfile $dir/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
loglevel stats
TLSCACertificateFile $dir/ca.pem
TLSCertificateFile $dir/server.pem
TLSCertificateKeyFile $dir/server.key
database mdb
maxsize 104857600
suffix "$BASE"
rootdn "cn=admin,$BASE"
rootpw $admin_hash
directory $dir/db
index objectClass eq
index uid eq
index member eq
index uniqueMember eq
overlay memberof
memberof-group-oc groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
memberof-refint true
access to attrs=userPassword
    by self write
    by anonymous auth
    by * none
access to *
    by * read
CONF
}

# person UID NAME NUMBER : an LDIF entry for a user whose password is
# UIDpass.
person() {
  cat <<LDIF
dn: uid=$1,ou=users,$BASE
objectClass: inetOrgPerson
objectClass: posixAccount
uid: $1
cn: $2 Example
sn: Example
mail: $1@example.org
uidNumber: $3
gidNumber: 3001
homeDirectory: /srv/sftp/$1
loginShell: /bin/false
userPassword: $(/usr/sbin/slappasswd -s "$1pass")

LDIF
}

write_data() {
  {
    cat <<LDIF
dn: $BASE
objectClass: dcObject
objectClass: organization
dc: example
o: Example Org

dn: ou=users,$BASE
objectClass: organizationalUnit
ou: users

dn: ou=groups,$BASE
objectClass: organizationalUnit
ou: groups

LDIF
    person alice Alice 2001
    person bob Bob 2002
    person carol Carol 2003
  } >"$1/data.ldif"
  cat >"$1/groups.ldif" <<LDIF
dn: cn=sftpusers,ou=groups,$BASE
objectClass: groupOfNames
cn: sftpusers
member: uid=alice,ou=users,$BASE
member: uid=bob,ou=users,$BASE

dn: cn=auditors,ou=groups,$BASE
objectClass: groupOfNames
cn: auditors
member: uid=alice,ou=users,$BASE

dn: cn=operators,ou=groups,$BASE
objectClass: groupOfUniqueNames
cn: operators
uniqueMember: uid=bob,ou=users,$BASE
LDIF
}

# answers DIR URL : whether slapd answers a base search at URL (over TLS
# checked against DIR/ca.pem; -ZZ demands StartTLS on ldap://).
answers() {
  local extra=()
  case $2 in ldap://*) extra=(-ZZ) ;; esac
  LDAPTLS_CACERT="$1/ca.pem" LDAPTLS_REQCERT=demand \
    ldapsearch -x -o nettimeout=2 -H "$2" "${extra[@]}" -b "$BASE" -s base -LLL dn \
    >/dev/null 2>&1
}

start() {
  local dir=$1
  if [ -f "$dir/env" ] && ours "$dir" >/dev/null; then
    cat "$dir/env"
    return 0
  fi
  install
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  stop_slapd "$dir"
  rm -rf "$dir/db" "$dir/env"
  mkdir -p "$dir/db"

  certificates "$dir"
  write_config "$dir" "$(/usr/sbin/slappasswd -s adminpass)"
  write_data "$dir"
  /usr/sbin/slaptest -Q -u -f "$dir/slapd.conf"
  /usr/sbin/slapadd -q -f "$dir/slapd.conf" -l "$dir/data.ldif"

  # slapd cannot report ports it chose itself, so pick free ones and try
  # again with others should something take them first.
  local port tls_port pid attempt up _
  for attempt in 1 2 3 4 5; do
    port=$(free_port); tls_port=$(free_port)
    [ "$port" != "$tls_port" ] || continue
    # -d 0: stay in the foreground, so the recorded PID is slapd's.
    (exec setsid "$SLAPD" -d 0 -f "$dir/slapd.conf" \
      -h "ldap://127.0.0.1:$port/ ldaps://127.0.0.1:$tls_port/" \
      >"$dir/slapd.log" 2>&1 </dev/null) &
    pid=$!
    echo "$pid" >"$dir/slapd.pid"
    up=
    for _ in $(seq 150); do
      if answers "$dir" "ldap://127.0.0.1:$port" && answers "$dir" "ldaps://127.0.0.1:$tls_port"; then
        up=1; break
      fi
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    if [ -n "$up" ]; then
      ldapadd -x -H "ldap://127.0.0.1:$port" -D "cn=admin,$BASE" -w adminpass \
        -f "$dir/groups.ldif" >/dev/null \
        || { log "adding the groups failed"; stop_slapd "$dir"; exit 1; }
      cat >"$dir/env" <<EOF
export TOLLGATE_TEST_LDAP_URL=ldap://127.0.0.1:$port
export TOLLGATE_TEST_LDAPS_URL=ldaps://127.0.0.1:$tls_port
export TOLLGATE_TEST_LDAP_CA=$dir/ca.pem
export TOLLGATE_TEST_LDAP_BASE=$BASE
EOF
      log "slapd (pid $pid) on ldap://127.0.0.1:$port and ldaps://127.0.0.1:$tls_port, base $BASE (attempt $attempt; log in $dir/slapd.log)"
      cat "$dir/env"
      return 0
    fi
    stop_slapd "$dir"
  done
  log "slapd did not start; its log:"
  tail -n 20 "$dir/slapd.log" | sed 's/^/  /' >&2 || true
  exit 1
}

[ $# -eq 2 ] || usage
case $1 in
  start) start "$2" ;;
  stop)
    [ -d "$2" ] || exit 0
    dir=$(cd "$2" && pwd)
    stop_slapd "$dir"
    rm -rf "$dir"
    ;;
  *) usage ;;
esac
