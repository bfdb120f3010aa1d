#!/usr/bin/env bash
# POST /v1/payments against PostgreSQL (see bench/README.md): builds release, starts a throw-away
# PostgreSQL 15 server (tools/pg-test-server.sh: loopback, fsync on), paymux-sandbox, two paymux
# instances on the same database and trivial-server on free loopback ports, then measures with wrk
#   a) GET on trivial-server: the same-run baseline that POST rates are put against,
#   b) POST /v1/payments to one instance (the other idle), at several connection counts,
#   c) the same to both instances at once (two wrk processes, half the connections each),
# and prints a summary: req/s, p50/p99, the ratio to the baseline and of two instances to one.
#
# Environment (all optional): as bench/run.sh's (BENCH_SECONDS=10, BENCH_WARMUP=2,
# BENCH_GET_CONNECTIONS=64, BENCH_POST_CONNECTIONS="16 32 48 56 64", BENCH_WRK_THREADS=1, BENCH_THREADS=2,
# BENCH_TMPDIR, BENCH_KEEP=1, BENCH_SKIP_BUILD=1 with BENCH_BUILD_DIR, BENCH_NICE); and
#   BENCH_PG_URL=postgresql://...   use that (empty) database instead of starting a server
#
# Exit status: 0 when every run was valid (no non-2xx, no socket errors, payments in the db agree
# with wrk's counts); 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

BENCH_NAME=bench-pg
source bench/lib.sh

# --- build, database, processes -------------------------------------------------------------------
bench_build
command -v psql >/dev/null || die "psql is not installed (tools/deps.sh bench)"
bench_run_dir paymux-bench-pg

PG_DIR=""
if [[ -n "${BENCH_PG_URL:-}" ]]; then
  PG_URL=$BENCH_PG_URL
else
  # Its own folder: as root the server runs as another user, who must be able to enter it.
  PG_DIR=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/paymux-bench-pg-db.XXXXXX")
  PG_URL=$(bash tools/pg-test-server.sh start "$PG_DIR") || die "cannot start PostgreSQL"
fi
# Called once the servers are stopped (by bench_cleanup; `rc` is its exit status).
bench_after_stop() {
  [[ -n "$PG_DIR" ]] || return 0
  bash tools/pg-test-server.sh stop "$PG_DIR" >/dev/null 2>&1 || true
  if [[ "${BENCH_KEEP:-0}" == 1 || ${rc:-1} -ne 0 ]]; then log "PostgreSQL data kept: $PG_DIR"; else rm -rf "$PG_DIR"; fi
}

read -r SANDBOX_PORT PORT_1 PORT_2 TRIVIAL_PORT < <(free_ports 4)
SANDBOX="http://127.0.0.1:$SANDBOX_PORT"
PAYMUX_1="http://127.0.0.1:$PORT_1"
PAYMUX_2="http://127.0.0.1:$PORT_2"
TRIVIAL="http://127.0.0.1:$TRIVIAL_PORT"
paymux_config "$PORT_1" "$PG_URL" >"$RUN_DIR/paymux-1.yaml"
paymux_config "$PORT_2" "$PG_URL" >"$RUN_DIR/paymux-2.yaml"

start_sandbox "$SANDBOX_PORT"
# Both at once: their migrations run once, whichever takes the lock.
start paymux-1 "$BIN/paymux" --config "$RUN_DIR/paymux-1.yaml"
start paymux-2 "$BIN/paymux" --config "$RUN_DIR/paymux-2.yaml"
start trivial "$BIN/bench/trivial-server" --port "$TRIVIAL_PORT" --threads "$SERVER_THREADS"
wait_ready sandbox "$sandbox_pid" "$SANDBOX/_sandbox/healthz"
wait_ready paymux-1 "$paymux_1_pid" "$PAYMUX_1/readyz"
wait_ready paymux-2 "$paymux_2_pid" "$PAYMUX_2/readyz"
wait_ready trivial "$trivial_pid" "$TRIVIAL/"
log "sandbox $SANDBOX, paymux $PAYMUX_1 and $PAYMUX_2, trivial-server $TRIVIAL, $PG_URL; run directory $RUN_DIR ($FS_TYPE)"

# CPU by role: both paymux instances together, and the PostgreSQL server with its backends.
CPU_ROLES=(paymux sandbox trivial postgres)
role_pids() {
  case "$1" in
    paymux) echo "$paymux_1_pid $paymux_2_pid" ;;
    postgres)
      [[ -n "$PG_DIR" ]] || return 0
      local pm
      pm=$(head -1 "$PG_DIR/data/postmaster.pid" 2>/dev/null) || return 0
      # shellcheck disable=SC2046  # one pid per word
      echo "$pm" $(pgrep -P "$pm" || true) ;;
    *) local v="${1}_pid"; echo "${!v:-}" ;;
  esac
}
count_payments() { psql -X -At -d "$PG_URL" -c "SELECT count(*) FROM payments"; }

# --- a) the baseline: GET on trivial-server --------------------------------------------------------
GET_LUA="$ROOT/bench/get.lua"
if ((WARMUP > 0)); then
  run_wrk "$RUN_DIR/warm-trivial.txt" "$GET_CONNS" "$WARMUP" -s "$GET_LUA" "$TRIVIAL/v1/payments/pay_x" -- "$TOKEN"
fi
log "GET trivial-server: wrk -t$WRK_THREADS -c$GET_CONNS -d${SECS}s"
run_wrk "$RUN_DIR/get-trivial.txt" "$GET_CONNS" "$SECS" -s "$GET_LUA" "$TRIVIAL/v1/payments/pay_x" -- "$TOKEN"
check_clean "GET trivial-server" "$RUN_DIR/get-trivial.txt"
T_RPS=$(field "$RUN_DIR/get-trivial.txt" rps)

# --- b) and c) POST /v1/payments to one instance, then to both ---------------------------------------
POST_LUA="$ROOT/bench/post_payments.lua"
RUN_ID="pg-$(date +%s)-$$-$RANDOM"
# post_two OUT CONNS: both instances at once, half the connections each; OUT gets a BENCH line of the
# two together (requests and rates added, each percentile the higher of the two) and the CPU line.
post_two() {
  local out=$1 c=$2
  local c1=$(((c + 1) / 2)) c2=$((c / 2)) before after p1 p2
  before=$(cpu_snapshot)
  wrk_once "$out.1" "$c1" "$SECS" -s "$POST_LUA" "$PAYMUX_1" -- "$TOKEN" "$RUN_ID-two-c$c-1" & p1=$!
  wrk_once "$out.2" "$c2" "$SECS" -s "$POST_LUA" "$PAYMUX_2" -- "$TOKEN" "$RUN_ID-two-c$c-2" & p2=$!
  wait "$p1" || die "wrk against $PAYMUX_1 failed"
  wait "$p2" || die "wrk against $PAYMUX_2 failed"
  after=$(cpu_snapshot)
  check_clean "POST two instances c=$c (first)" "$out.1"
  check_clean "POST two instances c=$c (second)" "$out.2"
  {
    local k sum=""
    for k in requests rps non2xx connect read write timeout; do
      sum+=" $k=$(awk -v a="$(field "$out.1" "$k")" -v b="$(field "$out.2" "$k")" -v k="$k" \
                  'BEGIN { printf (k == "rps" ? "%.1f" : "%d"), a + b }')"
    done
    for k in p50_us p90_us p99_us max_us; do
      sum+=" $k=$(awk -v a="$(field "$out.1" "$k")" -v b="$(field "$out.2" "$k")" 'BEGIN { print (a > b ? a : b) }')"
    done
    echo "BENCH$sum"
    cpu_line "$before" "$after" $(($(wrk_ticks "$out.1") + $(wrk_ticks "$out.2")))
  } >"$out"
}

declare -A RPS P50 P99 REQ DB
for n in 1 2; do
  for c in $POST_CONNS; do
    out="$RUN_DIR/post-n$n-c$c.txt"
    before=$(count_payments)
    if ((n == 1)); then
      log "POST /v1/payments, one instance: wrk -t$WRK_THREADS -c$c -d${SECS}s"
      run_wrk "$out" "$c" "$SECS" -s "$POST_LUA" "$PAYMUX_1" -- "$TOKEN" "$RUN_ID-one-c$c"
      check_clean "POST one instance c=$c" "$out"
    else
      log "POST /v1/payments, two instances: two wrk -t$WRK_THREADS, $c connections in all, -d${SECS}s"
      post_two "$out" "$c"
    fi
    alive
    # Requests still in flight when wrk stopped may complete afterwards: let paymux settle.
    sleep 1
    made=$(($(count_payments) - before))
    completed=$(field "$out" requests)
    check_rows "POST n=$n c=$c" "$made" "$completed" "$c"
    RPS[$n,$c]=$(field "$out" rps)
    P50[$n,$c]=$(field "$out" p50_us)
    P99[$n,$c]=$(field "$out" p99_us)
    REQ[$n,$c]=$completed
    DB[$n,$c]=$made
  done
done

# --- summary ---------------------------------------------------------------------------------------
best() {
  local n=$1 pick="" c
  for c in $POST_CONNS; do
    if [[ -z "$pick" ]] || awk -v a="${RPS[$n,$c]}" -v x="${RPS[$n,$pick]}" 'BEGIN { exit !(a > x) }'; then pick=$c; fi
  done
  echo "$pick"
}
B1=$(best 1)
B2=$(best 2)
GT="$RUN_DIR/get-trivial.txt"
{
  echo
  echo "================ paymux benchmark: PostgreSQL ================"
  if [[ -n "$PG_DIR" ]]; then
    echo "machine: $(nproc) cores, $(uname -r); PostgreSQL 15 (fsync on) in $PG_DIR on $(stat -f -c %T "$PG_DIR")"
  else
    echo "machine: $(nproc) cores, $(uname -r); database $PG_URL (BENCH_PG_URL)"
  fi
  echo "wrk -t$WRK_THREADS, ${SECS}s per run; paymux and trivial-server $SERVER_THREADS threads, sandbox 1; nice $NICE"
  echo
  echo "baseline: GET on trivial-server, $GET_CONNS connections: ${T_RPS} req/s," \
       "p99 $(ms "$(field "$GT" p99_us)") ms, other load $(other_load "$GT")"
  echo
  echo "POST /v1/payments (PostgreSQL, Glocash sandbox); no non-2xx, db rows checked against responses"
  printf '  %9s %5s %9s %8s %8s %8s %10s %9s %9s %11s %9s %10s\n' instances conns req/s /trivial "p50 ms" "p99 ms" \
    responses "db rows" "paymux us" "postgres us" ceiling "other load"
  for n in 1 2; do
    for c in $POST_CONNS; do
      f="$RUN_DIR/post-n$n-c$c.txt"
      printf '  %9s %5s %9s %8s %8s %8s %10s %9s %9s %11s %9s %10s\n' "$n" "$c" "${RPS[$n,$c]}" \
        "$(ratio "${RPS[$n,$c]}" "$T_RPS")" "$(ms "${P50[$n,$c]}")" "$(ms "${P99[$n,$c]}")" "${REQ[$n,$c]}" \
        "${DB[$n,$c]}" "$(us_per_req "$f" paymux)" "$(us_per_req "$f" postgres)" "$(ceiling "$f")" "$(other_load "$f")"
    done
  done
  echo "  (two instances: two wrk processes with half the connections each; rates added, p50/p99 the higher"
  echo "   of the two; paymux us: both instances' CPU per request; postgres us: the server and its backends')"
  for c in $POST_CONNS; do
    echo "  c=$c: two instances / one: $(ratio "${RPS[2,$c]}" "${RPS[1,$c]}")"
  done
  echo "  best: one instance c=$B1 ${RPS[1,$B1]} req/s (p99 $(ms "${P99[1,$B1]}") ms);" \
       "two instances c=$B2 ${RPS[2,$B2]} req/s (p99 $(ms "${P99[2,$B2]}") ms)"
  echo
  echo "SUMMARY pg_trivial_rps=$T_RPS one_best_conns=$B1 one_best_rps=${RPS[1,$B1]}" \
       "one_best_p99_ms=$(ms "${P99[1,$B1]}") one_best_ratio=$(ratio "${RPS[1,$B1]}" "$T_RPS")" \
       "two_best_conns=$B2 two_best_rps=${RPS[2,$B2]} two_best_p99_ms=$(ms "${P99[2,$B2]}")" \
       "two_best_ratio=$(ratio "${RPS[2,$B2]}" "$T_RPS") two_over_one=$(ratio "${RPS[2,$B2]}" "${RPS[1,$B1]}")"
  echo "=============================================================="
}
