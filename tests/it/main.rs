//! End-to-end tests: the real composition root and the real binary, driven
//! by real clients over real sockets (russh, russh-sftp) and real databases.
//!
//! `TOLLGATE_TEST_POSTGRES_URL` (a server URL such as
//! `postgres://postgres@127.0.0.1:5432`) runs every server test against
//! PostgreSQL too, each in a database of its own; `scripts/ci` sets it and
//! `TOLLGATE_TEST_REQUIRE_SERVICES=1`. `TEST_LOG=1` shows tracing output.

mod access;
mod architecture;
mod certificates;
mod cli;
mod compliance;
mod defender;
mod event_log;
mod ftp;
mod http;
mod kafka;
mod ldap;
mod mounts;
mod parity;
mod passwords;
mod quota;
mod sftp;
mod stream;
mod support;
mod tidy;
mod totp;
mod webhooks;
