// Issue 15, round two of hardening, on real ranks: hand-edited plans are refused on every rank
// before any data moves (and before any buffer is read past: the ASan build runs this too),
// Context refuses MPI_COMM_NULL and a NaN timeout.
#include <cmath>
#include <cstdio>
#include <limits>

#include <catch2/catch.hpp>

#include "mpi_test.hpp"
#include "reshard/error.hpp"

using namespace reshard;
using Catch::Matchers::Contains;

namespace {

Mesh grid(int np) { return np % 2 == 0 ? Mesh({{"x", 2}, {"y", np / 2}}) : Mesh({{"x", 1}, {"y", np}}); }

// Runs `plan` with poisoned buffers; returns the error (every rank must throw) and checks that
// neither buffer was written.
std::string refused(Context& ctx, const Plan& plan) {
  std::vector<std::byte> in(static_cast<std::size_t>(ctx.local_bytes(plan.src)), std::byte{0x5a});
  std::vector<std::byte> out(static_cast<std::size_t>(ctx.local_bytes(plan.dst)), std::byte{0xa5});
  const auto in0 = in, out0 = out;
  std::string what;
  try {
    ctx.reshard(plan, in.data(), in.size(), out.data(), out.size());
  } catch (const MismatchError& e) {
    what = e.what();
  }
  CHECK(in == in0);
  CHECK(out == out0);
  return what;
}

}  // namespace

TEST_CASE("hand-edited plans are refused on every rank before data moves", "[hardening]") {
  const int np = test::world_size();
  Context ctx(grid(np));
  const Mesh& m = ctx.mesh();
  // Source shards larger than target shards: an empty plan would copy past the output. The plan
  // slices x (minor), then permutes {y,x} to {x,y} (DESIGN's "add a major axis").
  Type src = Type::parse("f32[48{y},5]", m), dst = Type::parse("f32[48{x,y},5]", m);
  if (m.num_devices() == 1 || src == dst) return;
  const Plan good = *ctx.plan(src, dst);
  REQUIRE(!good.steps.empty());
  // Emptied: source and target differ.
  Plan empty = good;
  empty.steps.clear();
  CHECK_THAT(refused(ctx, empty), Contains("no steps") || Contains("cannot run it"));
  // Steps turned into other kinds: a permute posing as a local slice (the data it needs is on
  // other devices), a slice posing as an all-reduce (nothing is pending).
  Plan wrong_op = good;
  wrong_op.steps.back().op = Op::slice;
  if (good.steps.back().communicates()) CHECK_THAT(refused(ctx, wrong_op), Contains("is not valid") || Contains("cannot run it"));
  Plan wrong_reduce = good;
  wrong_reduce.steps.front().op = Op::all_reduce;
  CHECK_THAT(refused(ctx, wrong_reduce), Contains("is not valid") || Contains("cannot run it"));
  // Steps that do not chain: the last step ends elsewhere.
  Plan broken = good;
  broken.steps.back().out = src;
  CHECK(!refused(ctx, broken).empty());
  // A group axis the mesh lacks.
  Plan alien = good;
  alien.steps.front().axes.push_back("nowhere");
  CHECK_THAT(refused(ctx, alien), Contains("nowhere") || Contains("cannot run it"));
  // The real plan still runs and is right afterwards.
  test::Checked r = test::run_checked(ctx, good);
  CHECK(r.mismatches == 0);
  CHECK(r.input_intact);
}

TEST_CASE("Context refuses MPI_COMM_NULL and a NaN or huge timeout", "[hardening]") {
  const Mesh m({{"x", 1}});
  CHECK_THROWS_WITH(Context(m, MPI_COMM_NULL), Contains("MPI_COMM_NULL"));
  ExecOptions nan;
  nan.timeout_s = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_WITH(Context(m, MPI_COMM_WORLD, {}, nan), Contains("timeout_s = nan"));
  ExecOptions inf;
  inf.timeout_s = std::numeric_limits<double>::infinity();
  CHECK_THROWS_WITH(Context(m, MPI_COMM_WORLD, {}, inf), Contains("timeout_s = inf"));
  CHECK_NOTHROW(Context(m));
}

// Run by leave_early.cmake only (hidden tag): rank 1 leaves after the first reshard (it ends
// MPI and returns) while the others call a second one. Their deadline must end the job with
// rank 1 named, not leave them waiting.
TEST_CASE("a rank that leaves early is named", "[.leave_early]") {
  const int np = test::world_size(), me = test::world_rank();
  ExecOptions eo;
  eo.timeout_s = 3;
  Context ctx(Mesh({{"x", np}}), MPI_COMM_WORLD, {}, eo);
  Type s = Type::parse("f32[12{x},3]", ctx.mesh()), d = Type::parse("f32[12,3{x}]", ctx.mesh());
  auto plan = ctx.plan(s, d);
  std::vector<float> in(ctx.local_elements(s)), out(ctx.local_elements(d));
  ctx.reshard(*plan, in.data(), in.size() * 4, out.data(), out.size() * 4);
  if (me == 1) {
    std::fprintf(stderr, "rank 1 leaves early\n");
    return;
  }
  ctx.reshard(*plan, in.data(), in.size() * 4, out.data(), out.size() * 4);
  FAIL("the second reshard returned without rank 1");
}
