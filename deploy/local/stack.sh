#!/usr/bin/env bash
# Local stack for feepay: Apache Kafka (one KRaft node, SASL/SCRAM and ACLs), PostgreSQL
# and an SMTP sink (maildev). Installs what is missing, starts what is not running,
# idempotently.
#
#   deploy/local/stack.sh up       install if needed, start
#   deploy/local/stack.sh down     stop what this script started (PostgreSQL is left alone
#                                  unless this script started it); the broker's data stays
#   deploy/local/stack.sh clean    down, then remove the broker's data and users (.local/kafka)
#   deploy/local/stack.sh status   what is running
#   deploy/local/stack.sh smtp-stop | smtp-start   (fault tests)
#   deploy/local/stack.sh kafka-pin  rewrite deploy/local/kafka/SHA256SUMS (after a version change)
#
# Topics and ACLs are not made here: `receiptctl broker setup` makes those of a deployment
# (make run does), the tests and the benchmark make their own.
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
say() { printf '[stack] %s\n' "$*"; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { # port seconds name
  for _ in $(seq 1 $(( $2 * 10 ))); do port_open "$1" && return 0; sleep 0.1; done
  say "$3 did not open port $1 within $2 s; see $LOGS"; return 1
}
alive() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

# Apache Kafka from Maven Central (deploy/local/kafka/pom.xml, checked against
# deploy/local/kafka/SHA256SUMS), one KRaft node: SASL/SCRAM-SHA-512 on 127.0.0.1:9092, the
# same over TLS on 127.0.0.1:9095 (certificate in .local/kafka/tls), ACLs enforced. Data,
# users' passwords and the node's configuration live in .local/kafka: `down` keeps them,
# `clean` removes them.
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$ROOT/deploy/local/kafka/pom.xml")"
KAFKA_LIBS="$TOOLS/kafka-$KAFKA_VERSION/libs"
KAFKA_DIR="$ROOT/.local/kafka"
KAFKA_USERS=(admin feepay-issuer feepay-notifier feepay-assessor feepay-centre)
KAFKA_HEAP="${FEEPAY_KAFKA_HEAP:-512m}"
BROKER_TLS_PORT="${FEEPAY_BROKER_TLS_PORT:-9095}"

need_java() {
  if java -version 2>&1 | grep -qE 'version "(1[7-9]|[2-9][0-9])'; then return 0; fi
  say "installing a Java runtime (Debian package openjdk-17-jre-headless) for Kafka"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless >/dev/null
}

install_broker() {
  need_java
  if [ -d "$KAFKA_LIBS" ] && (cd "$KAFKA_LIBS" && sha256sum --quiet -c "$ROOT/deploy/local/kafka/SHA256SUMS" >/dev/null 2>&1); then return 0; fi
  if ! command -v mvn >/dev/null 2>&1; then
    say "installing Maven (Debian package) to fetch Kafka from Maven Central"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq maven >/dev/null
  fi
  say "fetching Apache Kafka $KAFKA_VERSION from Maven Central"
  local tmp="$KAFKA_LIBS.tmp"; rm -rf "$tmp"
  mvn -B -q -Dstyle.color=never -f "$ROOT/deploy/local/kafka/pom.xml" -Dmaven.repo.local="$TOOLS/m2" \
    dependency:copy-dependencies -DoutputDirectory="$tmp" >"$LOGS/kafka-fetch.log" 2>&1 \
    || { say "Maven could not fetch Kafka; see $LOGS/kafka-fetch.log"; return 1; }
  if ! (cd "$tmp" && sha256sum --quiet -c "$ROOT/deploy/local/kafka/SHA256SUMS"); then
    say "the fetched jars do not match deploy/local/kafka/SHA256SUMS; refusing to run them"; return 1
  fi
  local extra; extra="$(cd "$tmp" && ls *.jar | sort | comm -23 - <(awk '{print $2}' "$ROOT/deploy/local/kafka/SHA256SUMS" | sort))"
  [ -z "$extra" ] || { say "jars not in SHA256SUMS: $extra"; return 1; }
  rm -rf "$KAFKA_LIBS"; mv "$tmp" "$KAFKA_LIBS"
}

# After a version change: fetch, then record the checksums of what Maven resolved.
pin_broker() {
  local tmp="$TOOLS/kafka-pin"; rm -rf "$tmp"
  mvn -B -q -Dstyle.color=never -f "$ROOT/deploy/local/kafka/pom.xml" -Dmaven.repo.local="$TOOLS/m2" \
    dependency:copy-dependencies -DoutputDirectory="$tmp"
  (cd "$tmp" && sha256sum *.jar | sort -k2) >"$ROOT/deploy/local/kafka/SHA256SUMS"
  rm -rf "$tmp"; say "wrote deploy/local/kafka/SHA256SUMS ($(wc -l <"$ROOT/deploy/local/kafka/SHA256SUMS") jars)"
}

kafka_tool() { # main class, arguments...
  java -Xmx256m -cp "$KAFKA_LIBS/*" -Dlog4j2.configurationFile="$ROOT/deploy/local/kafka/log4j2-tools.yaml" "$@"
}

password() { cat "$KAFKA_DIR/users/$1.password"; }

# A password per broker user, made once; the services read theirs from the file.
make_users() {
  mkdir -p "$KAFKA_DIR/users"; chmod 700 "$KAFKA_DIR/users"
  for u in "${KAFKA_USERS[@]}"; do
    [ -s "$KAFKA_DIR/users/$u.password" ] && continue
    (umask 077; head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$KAFKA_DIR/users/$u.password")
  done
  cat >"$KAFKA_DIR/admin.properties" <<PROPS
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$(password admin)";
PROPS
  chmod 600 "$KAFKA_DIR/admin.properties"
}

# The TLS listener's certificate, from a CA of this checkout (clients trust ca.pem).
make_tls() {
  local d="$KAFKA_DIR/tls"; [ -s "$d/broker.pem" ] && return 0
  mkdir -p "$d"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=feepay local Kafka CA" \
    -keyout "$d/ca.key" -out "$d/ca.pem" >/dev/null 2>&1
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$d/broker.key" -out "$d/broker.csr" >/dev/null 2>&1
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$d/san.ext"
  openssl x509 -req -in "$d/broker.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial -days 3650 \
    -extfile "$d/san.ext" -out "$d/broker.crt" >/dev/null 2>&1
  # Kafka reads PEM key stores: the key (PKCS#8, unencrypted) followed by the chain.
  openssl pkcs8 -topk8 -nocrypt -in "$d/broker.key" -out "$d/broker.p8" >/dev/null 2>&1
  cat "$d/broker.p8" "$d/broker.crt" "$d/ca.pem" >"$d/broker.pem"
  chmod 600 "$d"/*.key "$d"/*.p8 "$d/broker.pem"
}

write_node_config() {
  local node="$KAFKA_DIR/node1"; mkdir -p "$node"
  sed -e "s|@NODE_ID@|1|; s|@VOTERS@|1@127.0.0.1:$((BROKER_PORT + 1))|" \
      -e "s|@CLIENT_PORT@|$BROKER_PORT|; s|@ADVERTISED_PORT@|$BROKER_PORT|" \
      -e "s|@REPLICATION_PORT@|$((BROKER_PORT + 2))|; s|@CONTROLLER_PORT@|$((BROKER_PORT + 1))|" \
      -e "s|@EXTRA_LISTENERS@|,TLS://127.0.0.1:$BROKER_TLS_PORT|; s|@EXTRA_ADVERTISED@|,TLS://127.0.0.1:$BROKER_TLS_PORT|" \
      -e "s|@ADMIN_PASSWORD@|$(password admin)|; s|@DATA_DIR@|$node/data|" \
      -e "s|@REPLICATION@|1|g; s|@MIN_ISR@|1|g; s|@CONSUMER_SESSION_MS@|10000|" \
      "$ROOT/deploy/local/kafka/server.properties.in" >"$node/server.properties"
  cat >>"$node/server.properties" <<PROPS

# TLS listener (certificate from .local/kafka/tls, made by deploy/local/stack.sh).
listener.name.tls.ssl.keystore.type=PEM
listener.name.tls.ssl.keystore.location=$KAFKA_DIR/tls/broker.pem
PROPS
  chmod 600 "$node/server.properties"
}

start_broker() {
  install_broker
  if port_open "$BROKER_PORT"; then say "broker already listening on 127.0.0.1:$BROKER_PORT"; return 0; fi
  make_users; make_tls; write_node_config
  local node="$KAFKA_DIR/node1"
  if [ ! -f "$node/data/meta.properties" ]; then
    local scram=(); for u in "${KAFKA_USERS[@]}"; do scram+=(--add-scram "SCRAM-SHA-512=[name=$u,password=$(password "$u")]"); done
    say "formatting the Kafka node's storage (.local/kafka/node1/data) with ${#KAFKA_USERS[@]} SCRAM users"
    kafka_tool kafka.tools.StorageTool format -t "$(kafka_tool kafka.tools.StorageTool random-uuid)" \
      -c "$node/server.properties" "${scram[@]}" >"$LOGS/kafka-format.log" 2>&1 \
      || { say "formatting failed; see $LOGS/kafka-format.log"; return 1; }
    for u in "${KAFKA_USERS[@]}"; do touch "$KAFKA_DIR/users/$u.registered"; done
  fi
  say "starting Apache Kafka $KAFKA_VERSION on 127.0.0.1:$BROKER_PORT (SASL/SCRAM), TLS on $BROKER_TLS_PORT, heap $KAFKA_HEAP"
  nohup java -Xms"$KAFKA_HEAP" -Xmx"$KAFKA_HEAP" -XX:+UseG1GC -cp "$KAFKA_LIBS/*" \
    -Dlog4j2.configurationFile="$ROOT/deploy/local/kafka/log4j2.yaml" kafka.Kafka "$node/server.properties" \
    >"$LOGS/broker.log" 2>&1 &
  echo $! >"$RUN/broker.pid"
  # Ready when its metadata answers an authenticated client (the admin's topic listing).
  for _ in $(seq 1 120); do
    alive broker || { say "the broker exited; see $LOGS/broker.log"; return 1; }
    if kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$BROKER_PORT" \
         --command-config "$KAFKA_DIR/admin.properties" --list >/dev/null 2>&1; then
      register_new_users; say "broker ready"; return 0
    fi
    sleep 1
  done
  say "the broker's metadata did not answer within 2 minutes; see $LOGS/broker.log"; return 1
}

# Users added to KAFKA_USERS after the storage was formatted.
register_new_users() {
  for u in "${KAFKA_USERS[@]}"; do
    [ -f "$KAFKA_DIR/users/$u.registered" ] && continue
    kafka_tool org.apache.kafka.tools.ConfigCommand --bootstrap-server "127.0.0.1:$BROKER_PORT" \
      --command-config "$KAFKA_DIR/admin.properties" --alter --entity-type users --entity-name "$u" \
      --add-config "SCRAM-SHA-512=[password=$(password "$u")]" >/dev/null && touch "$KAFKA_DIR/users/$u.registered"
    say "broker user $u added"
  done
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
  nohup "$TOOLS/node_modules/.bin/maildev" --smtp "$SMTP_PORT" --web "$SMTP_WEB_PORT" --ip 127.0.0.1 --web-ip 127.0.0.1 \
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

# The benchmark's SMTP server: Postfix's smtp-sink and smtp-source, unpacked from Debian's
# postfix package under .tools/postfix (no mail system is configured or started).
install_smtp_sink() {
  [ -x "$TOOLS/postfix/usr/sbin/smtp-sink" ] && return 0
  say "installing Postfix's smtp-sink and smtp-source (Debian package postfix, unpacked) for the benchmark"
  local tmp; tmp="$(mktemp -d)"
  (cd "$tmp" && apt-get download postfix >/dev/null 2>&1) \
    || (apt-get update -qq && cd "$tmp" && apt-get download postfix >/dev/null)
  dpkg-deb -x "$tmp"/postfix_*.deb "$TOOLS/postfix"
  rm -rf "$tmp"
  LD_LIBRARY_PATH="$TOOLS/postfix/usr/lib/postfix" ldd "$TOOLS/postfix/usr/sbin/smtp-sink" | grep -q "not found" \
    && { echo "smtp-sink misses libraries: $(LD_LIBRARY_PATH="$TOOLS/postfix/usr/lib/postfix" ldd "$TOOLS/postfix/usr/sbin/smtp-sink" | grep 'not found')" >&2; exit 1; }
  return 0
}

stop_one() { # name [seconds to wait before SIGKILL]
  if alive "$1"; then
    kill "$(cat "$RUN/$1.pid")" 2>/dev/null || true
    for _ in $(seq 1 $(( ${2:-5} * 10 ))); do alive "$1" || break; sleep 0.1; done
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
  up) start_postgres; start_broker; start_smtp; install_browser; install_signing_tools; install_bench_smtp; status ;;
  down|clean)
    stop_one smtp; stop_one broker 60
    if [ "$1" = clean ]; then rm -rf "$KAFKA_DIR"; say "removed the broker's data and users (.local/kafka)"; fi
    if [ -f "$RUN/postgres.started-by-stack" ]; then
      pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main stop || true
      rm -f "$RUN/postgres.started-by-stack"; say "stopped PostgreSQL"
    fi ;;
  status) status ;;
  smtp-stop) stop_one smtp ;;
  smtp-start) start_smtp ;;
  kafka-pin) pin_broker ;;
  bench-tools) install_bench_smtp; install_smtp_sink ;;
  browser) install_browser ;;
  signing-tools) install_signing_tools ;;
  *) echo "usage: $0 up|down|clean|status|smtp-stop|smtp-start|kafka-pin|bench-tools|browser|signing-tools" >&2; exit 2 ;;
esac
