// Errors across ranks: every rank throws (nobody is left waiting) when one rank's buffer is the
// wrong size, when ranks pass different types or meshes, or when the mesh is too large. And
// the public API around them: DistArray round trips, ranks outside the mesh, options.
#include <numeric>

#include <catch2/catch.hpp>

#include "mpi_test.hpp"
#include "reshard/dist_array.hpp"
#include "reshard/error.hpp"

using namespace reshard;
using Catch::Matchers::Contains;

namespace {
Mesh line(int n) { return Mesh({{"x", n}}); }
}  // namespace

TEST_CASE("a wrong buffer size on one rank throws on every rank", "[errors]") {
  const int np = test::world_size(), me = test::world_rank();
  Context ctx(line(np));
  Type src = Type::parse("f32[24{x},5]", ctx.mesh()), dst = Type::parse("f32[24,5{x}]", ctx.mesh());
  auto plan = ctx.plan(src, dst);
  std::vector<float> in(ctx.local_elements(src)), out(ctx.local_elements(dst));
  const int bad = np - 1;  // the last rank passes one byte too few
  std::size_t out_bytes = out.size() * sizeof(float) - (me == bad ? 1 : 0);
  try {
    ctx.reshard(*plan, in.data(), in.size() * sizeof(float), out.data(), out_bytes);
    FAIL("no exception");
  } catch (const MismatchError& e) {
    if (me == bad) CHECK_THAT(e.what(), Contains("output buffer") && Contains(std::to_string(out_bytes)));
    else CHECK_THAT(e.what(), Contains(fmt::format("rank {} cannot run it", bad)));
  }
  // The context is still usable afterwards.
  test::Checked r = test::run_checked(ctx, *plan);
  CHECK(r.mismatches == 0);
}

TEST_CASE("ranks that build different types all throw before moving data", "[errors]") {
  const int np = test::world_size(), me = test::world_rank();
  Context ctx(line(np));
  // Every rank a different global size: the plans differ, the hash check sees it.
  Type src = Type::parse(fmt::format("f32[{}{{x}},3]", 8 * (me + 1)), ctx.mesh());
  Type dst = Type::parse(fmt::format("f32[{},3]", 8 * (me + 1)), ctx.mesh());
  auto plan = ctx.plan(src, dst);
  std::vector<float> in(ctx.local_elements(src)), out(ctx.local_elements(dst));
  auto call = [&] { ctx.reshard(*plan, in.data(), in.size() * 4, out.data(), out.size() * 4); };
  if (np == 1) {
    CHECK_NOTHROW(call());
  } else {
    CHECK_THROWS_WITH(call(), Contains("ranks disagree on the plan") && Contains(fmt::format("rank {} has", me)));
  }
}

TEST_CASE("ranks that pass different meshes, or too large a mesh, all throw", "[errors]") {
  const int np = test::world_size(), me = test::world_rank();
  CHECK_THROWS_WITH(Context(line(np + 1)), Contains("has only") && Contains(std::to_string(np)));
  if (np > 1) CHECK_THROWS_WITH(Context(line(me + 1)), Contains("ranks disagree on the mesh"));
}

TEST_CASE("every rank of a mismatched check throws", "[errors]") {
  const int np = test::world_size(), me = test::world_rank();
  Context ctx(line(np));
  Type t = Type::parse("i32[10{x}]", ctx.mesh());
  std::vector<std::int32_t> shard(ctx.local_elements(t));
  std::size_t bytes = shard.size() * 4 + (me == 0 ? 4 : 0);
  CHECK_THROWS_AS(ctx.count_index_mismatches(t, shard.data(), bytes), MismatchError);
}

TEST_CASE("DistArray round trip restores the shard", "[api]") {
  const int np = test::world_size();
  Context ctx(line(np));
  Type a = Type::parse("i32[37{x},5]", ctx.mesh()), b = Type::parse("i32[37,5{x}]", ctx.mesh());
  std::vector<std::int32_t> mine(ctx.local_elements(a));
  ctx.fill_index(a, mine.data());
  DistArray<std::int32_t> x(ctx, a, mine);
  DistArray<std::int32_t> y = x.reshard_to(b);
  CHECK(y.type() == b);
  CHECK(static_cast<std::int64_t>(y.local().size()) == ctx.local_elements(b));
  CHECK(ctx.count_index_mismatches(b, y.local().data(), y.local().size_bytes()) == 0);
  y.reshard(a);  // in place
  CHECK(y.block() == ctx.local_block(a));
  CHECK(std::equal(y.local().begin(), y.local().end(), mine.begin(), mine.end()));
  CHECK(std::equal(x.local().begin(), x.local().end(), mine.begin(), mine.end()));  // source untouched
}

TEST_CASE("DistArray::reshard_into overwrites the target's shard in place", "[api]") {
  const int np = test::world_size();
  Context ctx(line(np)), other(line(np));
  Type a = Type::parse("i32[37{x},5]", ctx.mesh()), b = Type::parse("i32[37,5{x}]", ctx.mesh());
  std::vector<std::int32_t> mine(ctx.local_elements(a));
  ctx.fill_index(a, mine.data());
  const DistArray<std::int32_t> x(ctx, a, mine);
  DistArray<std::int32_t> y(ctx, b, std::vector<std::int32_t>(ctx.local_elements(b), -7));
  const std::int32_t* before = y.local().data();
  for (int step = 0; step < 3; ++step) {  // as a training loop would, every step
    x.reshard_into(y);
    CHECK(y.local().data() == before);  // the same buffer, no reallocation
    CHECK(ctx.count_index_mismatches(b, y.local().data(), y.local().size_bytes()) == 0);
  }
  CHECK(std::equal(x.local().begin(), x.local().end(), mine.begin(), mine.end()));  // source untouched
  DistArray<std::int32_t> self(ctx, a, mine), elsewhere(other, b);
  CHECK_THROWS_WITH(self.reshard_into(self), Catch::Contains("is the input array"));
  CHECK_THROWS_WITH(x.reshard_into(elsewhere), Catch::Contains("another Context"));
}

TEST_CASE("DistArray refuses a dtype its element type does not store", "[api]") {
  Context ctx(line(test::world_size()));
  CHECK_THROWS_AS(DistArray<float>(ctx, Type::parse("i32[8]", ctx.mesh())), MismatchError);
  CHECK_THROWS_AS(DistArray<float>(ctx, Type::parse("f32[8]", ctx.mesh()), std::vector<float>(3)), MismatchError);
  CHECK_NOTHROW(DistArray<std::uint16_t>(ctx, Type::parse("bf16[8]", ctx.mesh())));
}

TEST_CASE("ranks outside a smaller mesh sit out", "[api]") {
  const int me = test::world_rank();
  Context ctx(line(1));
  CHECK(ctx.participates() == (me == 0));
  CHECK((ctx.comm() == MPI_COMM_NULL) == (me != 0));
  Type src = Type::parse("f64[6{x}]", ctx.mesh()), dst = Type::parse("f64[6]", ctx.mesh());
  DistArray<double> a(ctx, src);
  std::iota(a.local().begin(), a.local().end(), 0.0);
  DistArray<double> b = a.reshard_to(dst);
  CHECK(b.local().size() == (me == 0 ? 6u : 0u));
  if (me == 0) CHECK(b.local()[5] == 5.0);
}

TEST_CASE("plans are cached and executed again without a new check", "[api]") {
  const int np = test::world_size();
  ExecOptions once;
  once.check_every_call = false;
  Context ctx(Mesh({{"x", np}}), MPI_COMM_WORLD, {}, once);
  Type src = Type::parse("f32[16,4] sum{x}", ctx.mesh()), dst = Type::parse("f32[16{x},4]", ctx.mesh());
  auto p1 = ctx.plan(src, dst), p2 = ctx.plan(src, dst);
  CHECK(p1 == p2);
  for (int i = 0; i < 3; ++i) CHECK(test::run_checked(ctx, *p1).mismatches == 0);
  CHECK(ctx.executor()->workspace_peak_bytes() >= ctx.executor()->workspace_bytes(*p1));
}

TEST_CASE("one executor running many plans in turn keeps them apart", "[api]") {
  // More plans than the executor remembers by comparison (16), run round-robin twice, so that
  // entries are evicted and found again; then a plan edited in place, which must not be
  // mistaken for the plan it was.
  const int np = test::world_size();
  Context ctx(Mesh({{"x", np}}));
  std::vector<Plan> plans;
  for (int rows = 5; plans.size() < 20; rows += 3) {
    const std::string r = std::to_string(rows);
    const bool gather = plans.size() % 2;
    plans.push_back(synthesize(ctx.mesh(), Type::parse("i32[" + r + "{x}, 3]", ctx.mesh()),
                               Type::parse(gather ? "i32[" + r + ", 3]" : "i32[" + r + ", 3{x}]", ctx.mesh())));
  }
  for (int round = 0; round < 2; ++round)
    for (const Plan& p : plans) {
      INFO("round " << round << ": " << p.src << " -> " << p.dst);
      CHECK(test::run_checked(ctx, p).mismatches == 0);
    }
  Plan edited = plans[1];
  CHECK(test::run_checked(ctx, edited).mismatches == 0);
  edited = plans[2];  // same object, other steps
  CHECK(test::run_checked(ctx, edited).mismatches == 0);
}
