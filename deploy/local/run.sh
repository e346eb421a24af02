#!/usr/bin/env bash
# `make run`: loads the reference data, makes a local test CA and a certificate per
# collecting agency (the Bắc Ninh centre's key inside a SoftHSM2 token, the others in
# PKCS#12 files), starts every service
# against the local stack, publishes the demo and prints what happened. The services keep
# running until Ctrl-C, which stops them cleanly (SIGTERM, drain, exit).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
BIN="${FEEPAY_BIN:-target/release}"
LOGS="$ROOT/.local/logs"
mkdir -p "$LOGS"

export FEEPAY_LOG_FORMAT="${FEEPAY_LOG_FORMAT:-json}"
export FEEPAY_SIGNERS_DIR="${FEEPAY_SIGNERS_DIR:-$ROOT/.local/signers}"
export FEEPAY_TEST_CA_DIR="${FEEPAY_TEST_CA_DIR:-$ROOT/.local/pki}"
export FEEPAY_TRUST_ANCHORS="${FEEPAY_TRUST_ANCHORS:-$FEEPAY_TEST_CA_DIR/ca.pem}"
export SOFTHSM2_CONF="${SOFTHSM2_CONF:-$ROOT/.local/softhsm/softhsm2.conf}"
export FEEPAY_TEMPLATES_DIR="${FEEPAY_TEMPLATES_DIR:-$ROOT/deploy/templates/email}"
export FEEPAY_KAFKA_SESSION_TIMEOUT_MS="${FEEPAY_KAFKA_SESSION_TIMEOUT_MS:-6000}"

say() { printf '\n\033[1m%s\033[0m\n' "$*"; }

# The local broker (deploy/local/stack.sh): SASL/SCRAM with one user per role, each with
# only the ACLs of its role; passwords in .local/kafka/users. `as_user USER cmd...` runs a
# command as that broker user (the lookup service has none).
as_user() { "$ROOT/deploy/local/as-user" "$@"; }

say "1/4 reference data and signing certificates (local test CA)"
# Topics and ACLs, as the broker's administrator: one broker, so one replica of each.
as_user admin "$BIN/receiptctl" broker setup --replication 1 --min-insync 1
"$BIN/receiptctl" migrate
# Each service connects with a login of its own group role (README, "Database roles and
# secrets"), as in production: the demo runs with the rights the services really have.
# Loopback connections are trusted by the local cluster, so the logins need no password.
owner_url="${FEEPAY_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/feepay?sslmode=disable}"
login_url() { printf '%s' "$owner_url" | sed -E "s#://[^@/]*@#://$1@#"; }
for svc in issuer assessor notifier lookup; do
  psql -q -v ON_ERROR_STOP=1 "$owner_url" -c "DO \$\$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'feepay_${svc}_login') THEN
      CREATE ROLE feepay_${svc}_login LOGIN IN ROLE feepay_${svc};
    END IF; END \$\$"
done
"$BIN/receiptctl" reference load --dir deploy/reference
# Each collector registered its series with the tax authority (01/ĐKTĐ-CTĐT) and recorded
# the acceptance notice 01/TB-ĐKĐT (Circular 91/2026/TT-BTC Art. 17): sample notices.
for s in BN.TTPVHCC:AA BN.CA:CA BN.STP:TP BN.KINHBAC:KB BN.TUSON:TS BN.TIENDU:TD HP.TTPVHCC:HP HP.HAIDUONG:HD HP.HONGBANG:HB; do
  "$BIN/receiptctl" series register --agency "${s%%:*}" --letters "${s##*:}" \
    --notice "01/TB-ĐKĐT số ${s%%:*}/TB-CT ngày 25/06/2026 (mẫu)" --accepted-on 2026-06-25 | tail -n 1
done
"$BIN/receiptctl" keys init-ca
# The Bắc Ninh centre signs with a key generated inside a PKCS#11 token (SoftHSM2), as a
# centre with a USB token or an HSM would.
if [ ! -e "$FEEPAY_SIGNERS_DIR/BN.TTPVHCC.pkcs11.toml" ] && command -v softhsm2-util >/dev/null 2>&1; then
  mkdir -p "$ROOT/.local/softhsm/tokens" "$FEEPAY_SIGNERS_DIR"
  [ -f "$SOFTHSM2_CONF" ] || printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
    "$ROOT/.local/softhsm/tokens" >"$SOFTHSM2_CONF"
  pin="$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  umask 077; printf '%s' "$pin" >"$ROOT/.local/softhsm/demo.pin"; umask 022
  softhsm2-util --init-token --free --label feepay-demo --so-pin "$pin" --pin "$pin" >/dev/null
  "$BIN/receiptctl" keys token --agency BN.TTPVHCC --token feepay-demo --pin-file "$ROOT/.local/softhsm/demo.pin"
fi
"$BIN/receiptctl" keys generate | tail -n 1
"$BIN/receiptctl" keys list || true

say "2/4 starting the services (logs in .local/logs/)"
pids=()
stop() {
  trap - INT TERM EXIT
  if [ ${#pids[@]} -gt 0 ]; then
    say "stopping the services"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
    echo "all services stopped; the local stack is still up (make down stops it)"
  fi
}
trap stop INT TERM EXIT
for svc in issuer assessor notifier; do
  # Not through the as_user function: a function in the background is a subshell, and its
  # pid, not the service's, would be the one stopped. as-user execs into the service.
  FEEPAY_DATABASE_URL="$(login_url "feepay_${svc}_login")" \
    "$ROOT/deploy/local/as-user" "feepay-$svc" "$BIN/feepay-$svc" >"$LOGS/$svc.log" 2>&1 &
  pids+=($!)
  echo "feepay-$svc pid $! (broker user feepay-$svc, database login feepay_${svc}_login)"
done
FEEPAY_DATABASE_URL="$(login_url feepay_lookup_login)" "$BIN/feepay-lookup" >"$LOGS/lookup.log" 2>&1 &
pids+=($!)
echo "feepay-lookup pid $! (no broker user, read-only database login feepay_lookup_login)"

declare -A ports=([issuer]=9101 [assessor]=9102 [notifier]=9103 [lookup]=9104)
for svc in issuer assessor notifier lookup; do
  for _ in $(seq 1 120); do
    curl -fs "http://127.0.0.1:${ports[$svc]}/readyz" >/dev/null 2>&1 && break
    sleep 0.5
  done
  if curl -fs "http://127.0.0.1:${ports[$svc]}/readyz" >/dev/null 2>&1; then
    echo "feepay-$svc ready on :${ports[$svc]}"
  else
    echo "feepay-$svc is not ready after 60 s; last log lines:"; tail -n 5 "$LOGS/$svc.log"
  fi
done

say "3/4 the demo: payments in Bắc Ninh and Hải Phòng"
# The demo plays a centre's system: it publishes payments as the centre's broker user.
as_user feepay-centre "$BIN/receiptctl" demo

say "4/4 where to look"
cat <<MSG
  emails (SMTP sink web UI)   http://127.0.0.1:1080
  citizens' lookup            http://127.0.0.1:8080 (the emails' links and QR codes lead here)
  metrics                     http://127.0.0.1:9101/metrics (issuer)
                              http://127.0.0.1:9102/metrics (assessor)
                              http://127.0.0.1:9103/metrics (notifier)
                              http://127.0.0.1:9104/metrics (lookup)
  health                      http://127.0.0.1:9101/readyz ...
  receipts                    $BIN/receiptctl receipts list
  signing certificates        $BIN/receiptctl keys list   (and keys registration: what to declare on 01/ĐKTĐ-CTĐT)
  audit a series              $BIN/receiptctl audit --agency BN.TTPVHCC --template EBL01 --symbol $(TZ=Asia/Ho_Chi_Minh date +%y)TAA
  series and registrations    $BIN/receiptctl series list
  what would it cost          $BIN/receiptctl assess --agency BN.TTPVHCC --fee LP-CANCUOC-DOI --fee P-CHUNGTHUC:5 --channel fully_online
  reconcile today             $BIN/receiptctl reconcile --date $(TZ=Asia/Ho_Chi_Minh date +%F)
  usage (internal table)      $BIN/receiptctl report usage --from $(TZ=Asia/Ho_Chi_Minh date +%Y-01-01) --to $(TZ=Asia/Ho_Chi_Minh date +%F)
  for the tax authority       $BIN/receiptctl tax list   (01/TH-BLĐT daily summaries, 04/SS-CTĐT notices; tax export --dir DIR; tax registration --agency BN.TTPVHCC)
  correct a receipt           $BIN/receiptctl receipts correct CODE --reason "Sai họ tên" --payer-name "..."   (notify or replace, Circular 91 Art. 20)
  dead letters                $BIN/receiptctl dead-letters list   (on record in PostgreSQL, scoped by agency; replay ID --edited FILE)
  broker ACLs                 $BIN/receiptctl broker acls   (as Kafka's own commands, for a cluster of your own)
  logs                        .local/logs/{issuer,assessor,notifier,lookup}.log

The services keep running; publish more events (proto/README.md has examples).
Press Ctrl-C to stop them.
MSG
if [ -n "${FEEPAY_DEMO_EXIT:-}" ]; then exit 0; fi
wait "${pids[@]}"
