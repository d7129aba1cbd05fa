#!/usr/bin/env bash
# tests/multihost/run.sh CASE RESHARD SOURCE_DIR
# `reshard run` across hosts made of network namespaces (multihost.sh), Open MPI over TCP.
# Exit 0: passed; 77: skipped (the reason is printed); anything else: failed.
#
# CASE:
#   public_3hosts  every public case of at most 6 devices, 6 ranks dealt round robin over 3 hosts,
#                  --check
#   public_2hosts  every public case of more devices, on 2 hosts at an odd rank count (devices+1,
#                  split 5+4 or 9+8), --check
#   weight_sync    run --batch benchmarks/suites/weight_sync.txt --check: the trainer (ranks 0-3)
#                  on h1, the inference replicas (ranks 4-7) on h2
#   link_down      h2's link goes down mid-run: the job ends within 40 s, h2's silent ranks named
#   host_killed    every process of h2 killed (kill -9) mid-run: the job ends, h2 named
#   throttle       h2's link slowed to 20 Mbit/s mid-run (tc tbf): the job finishes, --check passes
#   delay          200 ms added on h2's link mid-run (tc netem, or, where the kernel has no netem, a
#                  user-space delay line in h2, delayline.py, and ping must show the round trip
#                  grown by 190 ms or more): the job finishes, --check passes
#   loss           5% of h2's packets dropped mid-run (tc netem, or nftables in h2 where the kernel
#                  has no netem; then at least one drop is asserted): the job finishes, --check passes
# Every mpirun is bounded by `timeout`; the namespaces are removed on any exit (multihost.sh).
set -uo pipefail
CASE=${1:?case}; RESHARD=${2:?path to reshard}; SRC=${3:?source dir}
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/multihost.sh"
unset OMPI_MCA_btl  # scripts/env.sh's shared-memory-only setting; these runs choose tcp,self
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export RESHARD_TIMEOUT_S=${RESHARD_TIMEOUT_S:-60}
[ -x "$RESHARD" ] || mh_fail "no reshard binary at $RESHARD"
mh_require

# The hosts every rank ran on, as "h1 h1 h2 ...", by rank: proves the job spans the hosts.
ranks_on_hosts() {
  mh_mpirun "$1" --tag-output hostname 2>&1 | sed -n 's/^\[1,\([0-9]*\)\]<stdout>:\(.*\)$/\1 \2/p' | sort -n | awk '{printf "%s%s", sep, $2; sep=" "}'
}

expect_hosts() {  # expect_hosts NP "h1 h1 h2 ..."
  local got; got=$(ranks_on_hosts "$1")
  [ "$got" = "$2" ] || mh_fail "ranks by host at np $1: expected '$2', got '$got'"
  echo "np $1: ranks on hosts $got"
}

# run_cases FILTER: each public case whose device count passes FILTER (an awk condition on n),
# at the np and slots `np_for N` prints ("NP SLOTS...").
run_cases() {
  local filter=$1 failed=0 count=0 name mesh from to n np slots out
  local tx_before; tx_before=$(mh_rx_bytes 2)
  while IFS='|' read -r name mesh from to; do
    name=$(echo $name); mesh=$(echo $mesh); from=$(echo $from); to=$(echo ${to%%#*})
    n=$(echo "$mesh" | tr ',' '\n' | awk -F= '{p *= $2} BEGIN {p = 1} END {print p}')
    awk -v n="$n" "BEGIN { exit !($filter) }" || continue
    read -r np slots <<<"$(np_for "$n")"
    mh_hostfile $slots
    count=$((count + 1))
    if out=$(mh_mpirun "$np" "$RESHARD" run --mesh "$mesh" --from "$from" --to "$to" --check 2>&1) &&
       grep -q "check: ok" <<<"$out"; then
      echo "ok   $name (mesh $mesh, np $np, slots $slots)"
    else
      echo "FAIL $name (mesh $mesh, np $np, slots $slots):"; echo "$out" | tail -20
      failed=$((failed + 1))
    fi
  done < <(grep -v '^\s*#' "$SRC/tests/cases/public.txt" | grep '|')
  [ "$count" -gt 0 ] || mh_fail "no public case selected"
  [ "$(mh_rx_bytes 2)" -gt "$tx_before" ] || mh_fail "nothing crossed h2's link"
  [ "$failed" = 0 ] || mh_fail "$failed of $count public cases failed across hosts"
  echo "PASS: $count public cases across hosts"
}

# A long run: many iterations of a 4 MiB all-to-all on 4 ranks, ranks 0-1 on h1 and 2-3 on h2.
LONG=(run --mesh x=4 --from "f32[1024{x},1024]" --to "f32[1024,1024{x}]")

# start_long ITERS: the long run in the background (pid JOB, output $MH_DIR/job.out), started
# once data moves between the hosts.
start_long() {
  mh_hostfile 2 2
  mh_mpirun 4 "$RESHARD" "${LONG[@]}" --check --iters "$1" >"$MH_DIR/job.out" 2>&1 &
  JOB=$!
  mh_wait_rx 2 $((4 << 20)) 30 "$JOB"
}

# finish_job LIMIT_S: waits for the job; sets RC and ELAPSED (seconds since FAULT_AT).
finish_job() {
  local limit=$1
  while kill -0 "$JOB" 2>/dev/null; do
    awk -v s="$(mh_since "$FAULT_AT")" -v d="$limit" 'BEGIN { exit !(s > d) }' && break
    sleep 0.1
  done
  if kill -0 "$JOB" 2>/dev/null; then
    cat "$MH_DIR/job.out"; mh_fail "the job still runs ${limit} s after the fault (a hang)"
  fi
  wait "$JOB"; RC=$?
  ELAPSED=$(mh_since "$FAULT_AT")
  cat "$MH_DIR/job.out"
}

# degrade APPLY "WHAT": the long run, with h2's link (both directions) degraded mid-run by the
# function APPLY (tc_both or nft_loss below, with their arguments in APPLY_ARGS).
degrade() {
  local apply=$1 what=$2
  export RESHARD_TIMEOUT_S=60
  MH_RUN_TIMEOUT=120 start_long "${ITERS:-40}"
  FAULT_AT=$(mh_now)
  "$apply" "${APPLY_ARGS[@]}"
  kill -0 "$JOB" 2>/dev/null || mh_fail "the job ended before the fault was applied: not mid-run"
  echo "$what applied to h2's link mid-run"
  finish_job 110
  [ "$RC" = 0 ] || mh_fail "the job exited $RC under $what"
  grep -q "check: ok" "$MH_DIR/job.out" || mh_fail "no 'check: ok' under $what"
  echo "PASS: finished correctly under $what, ${ELAPSED} s after it was applied"
}

# tc_both TC...: the qdisc TC on h2's eth0 (what h2 sends) and on its switch port (what it gets).
tc_both() {
  ip netns exec "${MH_P}h2" tc qdisc add dev eth0 root "$@" || mh_fail "tc qdisc add ... $* failed"
  ip netns exec "${MH_P}sw" tc qdisc add dev "${MH_P}h2s" root "$@" || mh_fail "tc on the switch port failed"
}

# nft_loss PERCENT: without netem, nftables inside h2 drops PERCENT% of the packets h2's eth0
# receives and of those it sends (numgen random: each packet independently). Named counters count
# the packets seen on eth0 and those dropped, so the test can prove that the loss really happened.
nft_loss() {
  ip netns exec "${MH_P}h2" nft -f - <<EOF || mh_fail "nft could not load the loss table"
table inet rsmh_loss {
  counter seen { }
  counter dropped { }
  chain input { type filter hook input priority 0; policy accept;
    iifname "eth0" counter name "seen"
    iifname "eth0" numgen random mod 100 < $1 counter name "dropped" drop
  }
  chain output { type filter hook output priority 0; policy accept;
    oifname "eth0" counter name "seen"
    oifname "eth0" numgen random mod 100 < $1 counter name "dropped" drop
  }
}
EOF
}

# nft_packets COUNTER: packets the loss table in h2 has counted so far.
nft_packets() {
  ip netns exec "${MH_P}h2" nft list counter inet rsmh_loss "$1" | awk '$1 == "packets" { print $2 }'
}

must() { "$@" || mh_fail "'$*' failed"; }  # a step mid-run: failing it fails the test

# delay_line_prepare MS: without netem, a user-space delay line (delayline.py) inside h2: a TUN
# device, dly0, that becomes the route from h2 to h1 at delay_line; what the script writes back
# after MS comes in on dly0 and is routed (table 215, chosen by `ip rule iif dly0`) out of eth0.
# Each packet h2 sends to h1 is held MS once, so the round trip grows by MS; h1's replies travel
# the veth unchanged. Prepared before the job starts, so that applying it mid-run is one route
# (starting Python under load took long enough for a short job to end first).
delay_line_prepare() {
  local ms=$1 ns="${MH_P}h2" t0
  ip netns exec "$ns" timeout -k 2 140 python3 "$HERE/delayline.py" dly0 "$ms" 130 >"$MH_DIR/delayline.out" 2>&1 &
  DELAY_LINE=$! t0=$(mh_now)
  until grep -q '^ready$' "$MH_DIR/delayline.out" 2>/dev/null; do
    awk -v s="$(mh_since "$t0")" 'BEGIN { exit !(s > 10) }' &&
      mh_fail "the delay line did not start in 10 s: $(cat "$MH_DIR/delayline.out")"
    sleep 0.05
  done
  # accept_local: what comes back carries h2's own address as source, which the kernel otherwise
  # takes for a spoofed (martian) packet; ip_forward: it leaves by another device than it came in.
  must ip -n "$ns" link set dly0 up txqueuelen 10000
  must ip netns exec "$ns" sysctl -q -w net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 \
    net.ipv4.conf.dly0.rp_filter=0 net.ipv4.conf.dly0.accept_local=1
  must ip -n "$ns" rule add iif dly0 lookup 215 pref 100
  must ip -n "$ns" route add 10.215.0.1 dev eth0 table 215
}

delay_line() {
  must ip -n "${MH_P}h2" route add 10.215.0.1 dev dly0  # from here on, h2's packets for h1 are held
}

# min_rtt: the least of 5 round trips from h2 to h1 (ping), in ms.
min_rtt() {
  ip netns exec "${MH_P}h2" ping -n -c 5 -i 0.2 -W 2 -q 10.215.0.1 | awk '/^rtt|^round-trip/ { split($0, a, "= "); split(a[2], v, "/"); print v[1] }'
}

case $CASE in
  public_3hosts)
    mh_setup 3
    mh_hostfile 2 2 2
    export MH_MAP_BY=node  # ranks 0, 1, 2 on h1, h2, h3: a 4-device mesh spans all three
    expect_hosts 6 "h1 h2 h3 h1 h2 h3"
    np_for() { echo "6 2 2 2"; }
    run_cases "n <= 6"
    ;;
  public_2hosts)
    mh_setup 2
    mh_hostfile 5 4
    expect_hosts 9 "h1 h1 h1 h1 h1 h2 h2 h2 h2"
    np_for() { local np=$(($1 + 1)); echo "$np $(((np + 1) / 2)) $((np / 2))"; }
    run_cases "n > 6"
    ;;
  weight_sync)
    mh_setup 2
    mh_hostfile 4 4
    expect_hosts 8 "h1 h1 h1 h1 h2 h2 h2 h2"
    out=$(mh_mpirun 8 "$RESHARD" run --batch "$SRC/benchmarks/suites/weight_sync.txt" --check 2>&1)
    rc=$?
    echo "$out" | tail -6
    [ "$rc" = 0 ] || mh_fail "the batch exited $rc"
    grep -q "check: ok" <<<"$out" || mh_fail "no 'check: ok' from the batch"
    echo "PASS: weight_sync batch from h1's trainer to h2's replicas"
    ;;
  link_down)
    # The ranks' watchdog (3 s) fires first; the ranks on h1 name the silent ones and abort the
    # job. mpirun's abort then needs the daemon on h2: its TCP connection fails after ~6 s.
    mh_setup 2
    export RESHARD_TIMEOUT_S=3
    start_long 1000000
    FAULT_AT=$(mh_now)
    ip -n "${MH_P}h2" link set eth0 down
    echo "h2's link down mid-run"
    finish_job 40
    [ "$RC" != 0 ] || mh_fail "the job exited 0 with h2 unreachable"
    # A rank on h1 names the silent ones: a roll call lists exactly those that do not answer
    # ("no answer from ranks 2, 3"), and may name no reachable rank; a point-to-point round lists
    # the peers whose messages have not arrived ("nothing received from rank 1, 2, 3"), which can
    # include a rank of h1 whose message is still in flight: it must include one of h2's.
    own=$(grep -E "^reshard: rank [01]: " "$MH_DIR/job.out")
    roll=$(grep -oE "no answer from ranks? [0-9]+(, [0-9]+)*" <<<"$own" | grep -oE "[0-9]+" | sort -u | tr '\n' ' ')
    p2p=$(grep -oE "nothing received from ranks? [0-9]+(, [0-9]+)*" <<<"$own" | grep -oE "[0-9]+" | sort -u | tr '\n' ' ')
    for r in $roll; do [ "$r" = 2 ] || [ "$r" = 3 ] || mh_fail "the roll call named rank $r (on h1, reachable)"; done
    named=$(echo $roll $p2p | tr ' ' '\n' | sort -u | tr '\n' ' ')
    grep -qE "(^| )(2|3)( |$)" <<<"$named" || mh_fail "no rank on h1 named one of h2's ranks (named: '$named')"
    echo "PASS: link down -> job ended (exit $RC) in ${ELAPSED} s, ranks named: $named"
    ;;
  host_killed)
    mh_setup 2
    export RESHARD_TIMEOUT_S=3
    start_long 1000000
    FAULT_AT=$(mh_now)
    kill -9 $(ip netns pids "${MH_P}h2")
    echo "every process on h2 killed (kill -9) mid-run"
    finish_job 40
    [ "$RC" != 0 ] || mh_fail "the job exited 0 with h2's processes killed"
    grep -Eq "on node h2|node: h2|on host h2" "$MH_DIR/job.out" || mh_fail "h2 is not named"
    echo "PASS: host killed -> job ended (exit $RC) in ${ELAPSED} s, h2 named"
    ;;
  throttle)
    mh_setup 2
    APPLY_ARGS=(tbf rate 20mbit burst 64kb latency 200ms)
    ITERS=16 degrade tc_both "a 20 Mbit/s limit (tbf)"
    ;;
  delay)
    # netem where the kernel has it; the user-space delay line in h2 otherwise (docs/hardening.md).
    mh_setup 2
    if [ "$MH_NETEM" = 1 ]; then
      APPLY_ARGS=(netem delay 200ms)
      ITERS=14 degrade tc_both "200 ms of added delay (netem)"
    else
      for tool in python3 ping; do
        command -v "$tool" >/dev/null || mh_skip "no sch_netem, and '$tool' for the user-space delay line is not installed"
      done
      [ -c /dev/net/tun ] || mh_skip "no sch_netem, and no /dev/net/tun for the user-space delay line"
      before=$(min_rtt)
      [ -n "$before" ] || mh_fail "ping from h2 to h1 failed before the fault"
      delay_line_prepare 200
      APPLY_ARGS=()
      ITERS=14 degrade delay_line "200 ms of added delay (user-space delay line, h2 to h1)"
      after=$(min_rtt)
      [ -n "$after" ] || mh_fail "ping from h2 to h1 failed through the delay line"
      echo "round trip h2-h1 (least of 5 pings): ${before} ms before, ${after} ms through the delay line"
      kill "$DELAY_LINE" && wait "$DELAY_LINE"  # SIGTERM: it exits quietly (teardown would kill -9)
      awk -v a="$after" -v b="$before" 'BEGIN { exit !(a - b >= 190) }' ||
        mh_fail "the delay line added under 190 ms to the round trip (${before} -> ${after} ms)"
    fi
    ;;
  loss)
    # netem where the kernel has it; nftables inside h2 otherwise (docs/hardening.md).
    mh_setup 2
    if [ "$MH_NETEM" = 1 ]; then
      APPLY_ARGS=(netem loss 5%)
      ITERS=20 degrade tc_both "5% packet loss (netem)"
    else
      [ "$MH_NFT" = 1 ] || mh_skip "neither tc qdisc netem (no sch_netem) nor nftables ($MH_NFT_WHY) can drop packets here"
      APPLY_ARGS=(5)
      ITERS=20 degrade nft_loss "5% packet loss (nftables numgen, both directions)"
      seen=$(nft_packets seen); dropped=$(nft_packets dropped)
      [ "${dropped:-0}" -gt 0 ] || mh_fail "the nftables loss rule dropped no packet: the run was not degraded"
      echo "nftables dropped $dropped of the $seen packets h2's eth0 saw after the fault" \
        "($(awk -v d="$dropped" -v s="$seen" 'BEGIN { printf "%.1f", 100 * d / s }')%)"
    fi
    ;;
  *) mh_fail "unknown case '$CASE'" ;;
esac
