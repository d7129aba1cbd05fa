// A plan's statistics by symmetry (analyze(), workspace_per_device()) against the brute force:
// every step routed on every device, every staging decision taken per device as the executor
// takes it. Thousands of random triples (uneven sizes, size-1 axes, pending reductions, every
// strategy, exchange steps), on the MPI rules and on the rules of a transport that packs.
#include <algorithm>
#include <cstdlib>

#include <catch2/catch.hpp>

#include "random_types.hpp"
#include "reshard/route.hpp"
#include "reshard/synth.hpp"
#include "reshard/workspace.hpp"

using namespace reshard;

namespace {

std::uint64_t env_or(const char* name, std::uint64_t dflt) {
  const char* v = std::getenv(name);
  return v ? std::strtoull(v, nullptr, 10) : dflt;
}

// PlanStats from routes: what every device receives from other devices in every step.
PlanStats brute_force_stats(const Plan& p) {
  const Mesh& m = p.mesh;
  const int P = m.num_devices();
  const auto elem = static_cast<std::int64_t>(size_of(p.src.dtype));
  PlanStats st;
  st.src_local_bytes = st.dst_local_bytes = st.max_intermediate_bytes = 0;
  std::vector<std::int64_t> recv(P, 0);
  st.step_bytes_recv_max.assign(p.steps.size(), 0);
  for (int d = 0; d < P; ++d) {
    st.src_local_bytes = std::max(st.src_local_bytes, p.src.local_bytes(m, d));
    st.dst_local_bytes = std::max(st.dst_local_bytes, p.dst.local_bytes(m, d));
    for (std::size_t k = 0; k < p.steps.size(); ++k) {
      const Step& s = p.steps[k];
      st.max_intermediate_bytes = std::max(st.max_intermediate_bytes, s.out.local_bytes(m, d));
      std::int64_t got = 0;
      if (s.op == Op::all_reduce) {
        std::int64_t g = 1;
        for (const auto& a : s.axes) g *= m.axis_size(a);
        const long double b = static_cast<long double>(s.in.local_bytes(m, d));
        got = static_cast<std::int64_t>(b * 2 * (g - 1) / g);  // the ring's 2 (g-1)/g, rounded down
      } else if (s.communicates()) {
        for (const Transfer& t : route(m, s, d).recvs)
          if (t.peer != d) got += t.box.volume() * elem;
      }
      recv[d] += got;
      st.step_bytes_recv_max[k] = std::max(st.step_bytes_recv_max[k], got);
    }
    st.workspace_bytes = std::max(st.workspace_bytes, device_workspace_bytes(p, d));
  }
  st.max_intermediate_bytes = std::max({st.max_intermediate_bytes, st.src_local_bytes, st.dst_local_bytes});
  st.bytes_recv_max = *std::max_element(recv.begin(), recv.end());
  st.lower_bound_bytes = -1;
  if (p.src.op == ReduceOp::none) {
    st.lower_bound_bytes = 0;
    for (int d = 0; d < P; ++d) {
      Box want = p.dst.block(m, d);
      st.lower_bound_bytes =
          std::max(st.lower_bound_bytes, (want.volume() - intersect(want, p.src.block(m, d)).volume()) * elem);
    }
  }
  return st;
}

void check_same(const PlanStats& a, const PlanStats& b) {
  CHECK(a.src_local_bytes == b.src_local_bytes);
  CHECK(a.dst_local_bytes == b.dst_local_bytes);
  CHECK(a.max_intermediate_bytes == b.max_intermediate_bytes);
  CHECK(a.bytes_recv_max == b.bytes_recv_max);
  CHECK(a.step_bytes_recv_max == b.step_bytes_recv_max);
  CHECK(a.lower_bound_bytes == b.lower_bound_bytes);
  CHECK(a.workspace_bytes == b.workspace_bytes);
}

struct Coverage {
  int reductions = 0, exchanges = 0, uneven = 0, size1 = 0, staged = 0, classes_shared = 0;
};

bool uneven(const Mesh& m, const Type& t) {
  for (int d = 0; d < t.rank(); ++d)
    if (t.dims[d].size % t.num_blocks(m, d)) return true;
  return false;
}

}  // namespace

TEST_CASE("statistics by symmetry equal the brute force on random triples", "[stats]") {
  const std::uint64_t seed = env_or("RESHARD_SEED", 20261201);
  const int cases = static_cast<int>(env_or("RESHARD_CASES", 2000));
  test::TypeGen gen(seed);
  Coverage cov;
  const Strategy strategies[] = {Strategy::reshard, Strategy::naive, Strategy::greedy_per_axis, Strategy::exchange};
  const StagingRules packing{false, false}, p2p{true, true};
  for (int i = 0; i < cases; ++i) {
    test::RandomCase c = gen.next(i % 8 == 0 ? 216 : 48);
    SynthOptions o;
    o.strategy = strategies[i % 4];
    Plan plan = synthesize(c.mesh, c.src, c.dst, o);
    INFO("case " << i << " seed " << seed << ": " << c.mesh << " | " << c.src << " | " << c.dst << "\n" << plan);
    check_same(plan.stats, brute_force_stats(plan));
    // Every device, on every rule set, against the per-device reference.
    const std::vector<std::int64_t> mpi = workspace_per_device(plan);
    const std::vector<std::int64_t> packs = workspace_per_device(plan, packing);
    const std::vector<std::int64_t> by_p2p = workspace_per_device(plan, p2p);
    for (int d = 0; d < c.mesh.num_devices(); ++d) {
      INFO("device " << d);
      CHECK(mpi[d] == device_workspace_bytes(plan, d));
      CHECK(packs[d] == device_workspace_bytes(plan, d, packing));
      CHECK(by_p2p[d] == device_workspace_bytes(plan, d, p2p));
    }
    for (const Step& s : plan.steps) {
      cov.reductions += s.reduces();
      cov.exchanges += s.op == Op::exchange;
    }
    cov.uneven += uneven(c.mesh, c.src) || uneven(c.mesh, c.dst);
    for (const Axis& a : c.mesh.axes()) cov.size1 += a.size == 1;
    cov.staged += *std::max_element(packs.begin(), packs.end()) > *std::max_element(mpi.begin(), mpi.end());
  }
  // The sweep reaches every kind of step and shape the symmetry has to get right.
  CHECK(cov.reductions > cases / 20);
  CHECK(cov.exchanges > cases / 20);
  CHECK(cov.uneven > cases / 10);
  CHECK(cov.size1 > cases / 10);
  CHECK(cov.staged > cases / 20);
}

TEST_CASE("statistics by symmetry on meshes too large to route every device", "[stats]") {
  // 8 axes, 65,536 devices: the figures follow from the blocks (no brute force here; the
  // sweep above holds the method to it). Checked against closed forms.
  Mesh m = Mesh::parse("a=4,b=4,c=4,d=4,e=4,f=4,g=2,h=2");
  Type src = Type::parse("f32[4096{a,b,c,d},2048{e,f}] sum{g,h}", m);
  Type dst = Type::parse("f32[4096{a,b,c,d},2048{e,f,g,h}]", m);
  Plan p = synthesize(m, src, dst);
  REQUIRE(p.steps.size() == 1);
  REQUIRE(p.steps[0].op == Op::reduce_scatter);
  const std::int64_t shard = 4096 / 256 * 2048 / 16 * 4;  // the source shard, bytes
  CHECK(p.stats.src_local_bytes == shard);
  CHECK(p.stats.dst_local_bytes == shard / 4);
  CHECK(p.stats.bytes_recv_max == 3 * shard / 4);  // its quarter from each of 3 others
  CHECK(p.stats.lower_bound_bytes == -1);
  // The shares are strided columns of the shard: packed, the whole shard, in the output (too
  // small) or a dedicated buffer.
  CHECK(p.stats.workspace_bytes == shard);
  const std::vector<std::int64_t> ws = workspace_per_device(p);
  CHECK(std::all_of(ws.begin(), ws.end(), [&](std::int64_t w) { return w == shard; }));
  CHECK(device_workspace_bytes(p, 12345) == shard);
}
