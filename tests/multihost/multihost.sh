# Sourced by tests/multihost/run.sh: hosts made of network namespaces on one machine.
#
# Layout (N = 2 or 3 hosts), every name carrying this test's prefix rsmh<pid>:
#   <P>sw           a "switch": a namespace holding one bridge, br0
#   <P>h1 .. <P>hN  the hosts: lo, and eth0 = one end of a veth whose other end is a port of br0
#   addresses       10.215.0.<i>/24 on host i's eth0, nothing else; no route leaves the namespaces
#   host names      h1 .. hN, in /etc/netns/<P>h<i>/hosts (ip netns exec mounts it over /etc/hosts)
#                   and as each process's hostname (a UTS namespace of its own, unshare --uts)
# mpirun runs on h1, as it would on a cluster's first node. Open MPI starts its daemons (orted)
# on the other hosts through plm_rsh_agent = $MH_DIR/agent, a stand-in for ssh that enters the
# host's namespace; all MPI traffic (btl) and all launcher traffic (oob) go over TCP on eth0.
#
# Teardown always runs (trap): every process left in the namespaces is killed by id, then the
# namespaces, their veths and their hosts files go. A test killed outright (SIGKILL) cannot run
# its trap: the next run removes namespaces whose owner pid is gone (mh_reap_stale).

MH_SUBNET=10.215.0.0/24
MH_SKIP=77   # CTest's SKIP_RETURN_CODE for this label

mh_skip() { echo "SKIP: $*"; exit "$MH_SKIP"; }
mh_fail() { echo "FAIL: $*"; exit 1; }
mh_now() { date +%s.%N; }
mh_since() { awk -v a="$1" -v b="$(mh_now)" 'BEGIN { printf "%.2f", b - a }'; }

# Can namespaces be made here? Root (or CAP_NET_ADMIN), ip, unshare, mpirun, orted.
mh_require() {
  for tool in ip unshare mpirun orted timeout awk; do
    command -v "$tool" >/dev/null || mh_skip "'$tool' is not installed"
  done
  [ "$(id -u)" = 0 ] || mh_skip "not root: network namespaces need CAP_NET_ADMIN"
  local probe="rsmh$$probe"
  if ! ip netns add "$probe" 2>/dev/null; then
    mh_skip "'ip netns add' failed: no CAP_NET_ADMIN or no network namespaces in this kernel"
  fi
  ip netns del "$probe"
  unshare --uts true 2>/dev/null || mh_skip "'unshare --uts' failed: no UTS namespaces for the hosts' names"
}

mh_ns_teardown() {  # mh_ns_teardown NS...: kill what runs there (by pid), delete the namespace
  local ns pids
  for ns in "$@"; do
    ip netns list | awk '{print $1}' | grep -qx "$ns" || continue
    pids=$(ip netns pids "$ns" 2>/dev/null)
    [ -n "$pids" ] && kill -9 $pids 2>/dev/null
    ip netns del "$ns" 2>/dev/null
    rm -rf "/etc/netns/$ns"
  done
}

# Namespaces of earlier runs whose owner (the pid in their name) is gone.
mh_reap_stale() {
  local ns owner
  for ns in $(ip netns list | awk '{print $1}' | grep -E '^rsmh[0-9]+(sw|h[0-9]+)$'); do
    owner=${ns#rsmh}; owner=${owner%sw}; owner=${owner%h[0-9]*}
    kill -0 "$owner" 2>/dev/null || mh_ns_teardown "$ns"
  done
}

mh_teardown() {
  local i
  [ -n "${MH_P:-}" ] || return 0
  for i in $(seq 1 "${MH_HOSTS:-0}"); do mh_ns_teardown "${MH_P}h$i"; done
  mh_ns_teardown "${MH_P}sw"
  [ -n "${MH_DIR:-}" ] && rm -rf "$MH_DIR"
  MH_P=
}

# mh_try CMD...: a setup step; if the kernel refuses it (no veth, no bridge), the test is skipped.
mh_try() {
  local err
  err=$("$@" 2>&1) || mh_skip "cannot build the hosts: '$*' failed: $err"
}

# mh_setup N: N hosts on one switch; sets MH_P, MH_DIR, MH_HOSTS, MH_NETEM, MH_NFT (and MH_NFT_WHY).
mh_setup() {
  MH_HOSTS=$1
  MH_P="rsmh$$"
  MH_DIR=$(mktemp -d /tmp/rsmh.XXXXXX)
  trap mh_teardown EXIT
  trap 'exit 143' INT TERM   # runs the EXIT trap
  mh_reap_stale
  mh_try ip netns add "${MH_P}sw"
  mh_try ip -n "${MH_P}sw" link add br0 type bridge
  mh_try ip -n "${MH_P}sw" link set br0 up
  local i hosts="127.0.0.1 localhost"
  for i in $(seq 1 "$MH_HOSTS"); do hosts="$hosts
10.215.0.$i h$i"; done
  for i in $(seq 1 "$MH_HOSTS"); do
    local ns="${MH_P}h$i"
    mh_try ip netns add "$ns"
    mkdir -p "/etc/netns/$ns"
    printf '%s\n' "$hosts" >"/etc/netns/$ns/hosts"
    mh_try ip link add "${MH_P}h${i}e" type veth peer name "${MH_P}h${i}s"
    mh_try ip link set "${MH_P}h${i}e" netns "$ns"
    mh_try ip link set "${MH_P}h${i}s" netns "${MH_P}sw"
    mh_try ip -n "${MH_P}sw" link set "${MH_P}h${i}s" master br0 up
    mh_try ip -n "$ns" link set lo up
    mh_try ip -n "$ns" link set "${MH_P}h${i}e" name eth0
    mh_try ip -n "$ns" addr add "10.215.0.$i/24" dev eth0
    mh_try ip -n "$ns" link set eth0 up
    # A host whose peer went silent gives up on a TCP connection with unacknowledged data after
    # ~6 s (4 retransmissions from a 200 ms RTO) instead of Linux's default ~15 min
    # (tcp_retries2=15). Without it, mpirun, told to abort, waits that long for the daemon of a
    # host it cannot reach any more (docs/hardening.md).
    # MH_TCP_DEFAULTS=1 keeps Linux's and Open MPI's defaults, to see the difference.
    [ "${MH_TCP_DEFAULTS:-0}" = 1 ] || mh_try ip netns exec "$ns" sh -c 'echo 4 >/proc/sys/net/ipv4/tcp_retries2'
  done
  # The rsh agent: "agent HOST COMMAND..." as ssh would be called; COMMAND is a shell string.
  cat >"$MH_DIR/agent" <<EOF
#!/bin/sh
host=\$1; shift
case \$host in
  h[0-9]|h[0-9][0-9]) ;;
  *) echo "multihost agent: unknown host '\$host'" >&2; exit 1 ;;
esac
exec ip netns exec "${MH_P}\$host" unshare --uts sh -c "hostname \$host && exec \$*"
EOF
  chmod +x "$MH_DIR/agent"
  # Is sch_netem in this kernel? Probed on h1's loopback.
  MH_NETEM=0
  if ip netns exec "${MH_P}h1" tc qdisc add dev lo root netem delay 1ms 2>/dev/null; then
    MH_NETEM=1
    ip netns exec "${MH_P}h1" tc qdisc del dev lo root
  fi
  # Can nftables drop packets here (the fallback for loss)? A table loaded and removed on h1.
  MH_NFT=0 MH_NFT_WHY=
  if ! command -v nft >/dev/null; then
    MH_NFT_WHY="'nft' is not installed"
  elif MH_NFT_WHY=$(ip netns exec "${MH_P}h1" nft -f - 2>&1 <<EOF
table inet rsmh_probe {
  chain c { type filter hook output priority 0; numgen random mod 100 < 1 counter drop
  }
}
EOF
  ); then
    MH_NFT=1 MH_NFT_WHY=
    ip netns exec "${MH_P}h1" nft delete table inet rsmh_probe
  else
    MH_NFT_WHY="the kernel refused a numgen rule: $MH_NFT_WHY"
  fi
}

# mh_hostfile SLOTS...: host i gets SLOTS[i] ranks (mpirun fills h1 first, by slot).
mh_hostfile() {
  local i=1 s
  : >"$MH_DIR/hostfile"
  for s in "$@"; do echo "h$i slots=$s" >>"$MH_DIR/hostfile"; i=$((i + 1)); done
}

# mh_mpirun NP CMD...: mpirun on h1 over the hostfile, bounded by MH_RUN_TIMEOUT (default 60 s);
# MH_MAP_BY=node deals ranks round robin over the hosts instead of filling h1's slots first.
# Open MPI's daemons notice a silent peer by TCP keepalive (idle 4 s, then 3 probes 1 s apart).
mh_mpirun() {
  local np=$1; shift
  local keepalive=(--mca oob_tcp_keepalive_time 4 --mca oob_tcp_keepalive_intvl 1 --mca oob_tcp_keepalive_probes 3)
  [ "${MH_TCP_DEFAULTS:-0}" = 1 ] && keepalive=()
  timeout -k 5 "${MH_RUN_TIMEOUT:-60}" ip netns exec "${MH_P}h1" unshare --uts \
    sh -c 'hostname h1 && exec "$@"' sh \
    mpirun --hostfile "$MH_DIR/hostfile" -np "$np" --map-by "${MH_MAP_BY:-slot}" \
      --mca plm_rsh_agent "$MH_DIR/agent" --mca plm_rsh_no_tree_spawn 1 \
      --mca btl tcp,self --mca btl_tcp_if_include "$MH_SUBNET" --mca oob_tcp_if_include "$MH_SUBNET" \
      "${keepalive[@]}" -x RESHARD_TIMEOUT_S "$@" </dev/null
}

# Bytes host i's eth0 has received so far.
mh_rx_bytes() { ip netns exec "${MH_P}h$1" cat /sys/class/net/eth0/statistics/rx_bytes; }

# mh_wait_rx HOST BYTES DEADLINE_S PID: until host HOST has received BYTES more than now (data is
# moving), while PID lives; fails after DEADLINE_S.
mh_wait_rx() {
  local host=$1 want=$2 deadline=$3 pid=$4 t0 base
  t0=$(mh_now); base=$(mh_rx_bytes "$host")
  while [ $(($(mh_rx_bytes "$host") - base)) -lt "$want" ]; do
    kill -0 "$pid" 2>/dev/null || mh_fail "the job ended before data moved (see the output above)"
    awk -v s="$(mh_since "$t0")" -v d="$deadline" 'BEGIN { exit !(s > d) }' &&
      mh_fail "host h$host received under $want bytes in $deadline s"
    sleep 0.1
  done
}
