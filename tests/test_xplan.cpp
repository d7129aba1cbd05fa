// Meshes on chosen ranks, and cross-mesh / batched plans against their simulator.
#include <catch2/catch.hpp>

#include "random_xmesh.hpp"
#include "reshard/cases.hpp"
#include "reshard/error.hpp"
#include "reshard/xplan.hpp"

using namespace reshard;

TEST_CASE("meshes on chosen ranks parse, print back and number devices by the list") {
  Mesh m = Mesh::parse("dp=2,tp=2@4-7");
  CHECK(m.num_devices() == 4);
  CHECK(m.to_string() == "dp=2,tp=2@4-7");
  CHECK(Mesh::parse(m.to_string()) == m);
  CHECK(m.rank_of(0) == 4);
  CHECK(m.rank_of(3) == 7);
  CHECK(m.device_of(5) == 1);
  CHECK(m.device_of(0) == -1);
  CHECK(m.ranks_needed() == 8);
  Mesh n = Mesh::parse("tp=2@4,6");
  CHECK(n.rank_of(1) == 6);
  CHECK(n.device_of(5) == -1);
  CHECK(n.to_string() == "tp=2@4,6");
  CHECK(Mesh::parse("x=3@ 9, 2-3").to_string() == "x=3@9,2-3");
  // 0..n-1 is the mesh without a list.
  CHECK(Mesh::parse("r=2,tp=2@0-3") == Mesh::parse("r=2,tp=2"));
  CHECK(Mesh::parse("r=2,tp=2@0-3").to_string() == "r=2,tp=2");
  CHECK(!(Mesh::parse("x=2@1,0") == Mesh::parse("x=2")));
  CHECK(Mesh::parse("x=4").without_ranks() == Mesh::parse("x=4@4-7").without_ranks());
}

TEST_CASE("bad rank lists name the problem and its position") {
  struct Bad {
    const char* text;
    const char* says;
    std::size_t pos;
  };
  for (const Bad& b : {Bad{"x=2@0,0", "rank 0 is listed twice", 6}, Bad{"x=4@0-2,1", "rank 1 is listed twice", 8},
                       Bad{"x=2@3-1", "the range 3-1 is empty", 4}, Bad{"x=4@0-2", "4 devices but 3 ranks", 7},
                       Bad{"x=2@0-4", "more ranks are listed", 4}, Bad{"x=2@", "expected a rank", 4},
                       Bad{"x=2@0,", "expected a rank", 6}, Bad{"x=2@-1,0", "a rank must be a positive", 4},
                       Bad{"x=2@0-", "the end of the range", 6}, Bad{"x=2@0,1 y", "unexpected 'y'", 8},
                       Bad{"x=2@99999999999,1", "too large", 4}}) {
    INFO(b.text);
    try {
      Mesh::parse(b.text);
      FAIL("no error");
    } catch (const ParseError& e) {
      CHECK_THAT(e.what(), Catch::Contains(b.says));
      CHECK(e.position() == b.pos);
    }
  }
  CHECK_THROWS_AS(Mesh({{"x", 2}}, {0, 0}), Error);
  CHECK_THROWS_AS(Mesh({{"x", 2}}, {0, 1, 2}), Error);
  CHECK_THROWS_AS(Mesh({{"x", 2}}, {-1, 1}), Error);
}

TEST_CASE("case files take an optional target mesh") {
  auto cs = parse_cases("a | x=2@0-1 | f32[4{x}] | f32[4{y}] | y=2@2,3 # tight\nb | x=2 | f32[4] | f32[4{x}]\n");
  REQUIRE(cs.size() == 2);
  CHECK(cs[0].to_mesh == "y=2@2,3");
  CHECK(cs[0].tight);
  CHECK(cs[1].to_mesh.empty());
  CHECK_THROWS_WITH(parse_cases("a | x=2 | f32[4] | f32[4] | y=2 | z\n"), Catch::Contains("found 6 fields"));
  CHECK_THROWS_WITH(parse_cases("a | x=2 | f32[4] | f32[4] |  \n"), Catch::Contains("field 5 is empty"));
}

TEST_CASE("cross-mesh: disjoint trainer and inference meshes, byte-minimal and spread") {
  Mesh a = Mesh::parse("dp=2,tp=2@0-3"), b = Mesh::parse("r=2,tp=2@4-7");
  Type src = Type::parse("f32[64{dp},32{tp}]", a.without_ranks());
  Type dst = Type::parse("f32[64,32{tp}]", b.without_ranks());
  XPlan p = plan_cross(a, b, src, dst);
  CHECK(p.world == 8);
  // Each inference rank needs its 64x16 column block: 4 KiB, none of it held.
  CHECK(p.stats.lower_bound_bytes == 64 * 16 * 4);
  CHECK(p.stats.bytes_recv_max == p.stats.lower_bound_bytes);
  for (int r = 0; r < 4; ++r) CHECK(p.stats.bytes_recv[r] == 0);
  // Two replicas want every block: each trainer rank sends 2 messages of 2 KiB.
  for (int r = 0; r < 4; ++r) CHECK(p.stats.bytes_sent[r] == 2 * 32 * 16 * 4);
  XSimResult s = simulate_batch(p);
  INFO(s.error);
  CHECK(s.ok);
  // Both halves are contiguous on both sides: nothing is staged.
  CHECK(p.stats.workspace_bytes == 0);
}

TEST_CASE("batched: large pieces travel alone and in place, small ones share one packed message") {
  Mesh a = Mesh::parse("dp=2,tp=2@0-3"), b = Mesh::parse("r=2,tp=2@4-7");
  auto t = [](const char* s, const Mesh& m) { return Type::parse(s, m.without_ranks()); };
  // w: 128x128 per trainer rank, a strided 64 KiB piece on both sides; v: contiguous 64 KiB;
  // s1, s2: 256 B each.
  std::vector<XArray> arrays = {{"w", t("f32[256{dp},256{tp}]", a), t("f32[256{tp},256]", b)},
                                {"v", t("f32[256{dp},256{tp}]", a), t("f32[256,256{tp}]", b)},
                                {"s1", t("f32[256{dp,tp}]", a), t("f32[256]", b)},
                                {"s2", t("f32[256{dp,tp}]", a), t("f32[256]", b)}};
  XPlan p = plan_batch(a, b, arrays);
  CHECK(p.stats.bytes_recv == p.stats.lower_bound);
  XSimResult s = simulate_batch(p);
  INFO(s.error);
  REQUIRE(s.ok);
  // Per receiver: the 256 B pieces of s1 and s2 from each of the 4 trainer ranks, packed (one
  // message of 512 B per peer, staged: 4 x 512 B on every rank, sending or receiving); w and v
  // from 2 trainer ranks each, alone and in place.
  CHECK(p.stats.workspace_bytes == 4 * 512);
  for (int r = 4; r < 8; ++r) CHECK(p.stats.calls[r] == 4 + 2 + 2);
  // Everything in one packed message per peer when nothing is large enough to go alone.
  XOptions o;
  o.direct_min_bytes = std::int64_t{1} << 40;
  XPlan q = plan_batch(a, b, arrays, o);
  for (int r = 4; r < 8; ++r) CHECK(q.stats.calls[r] == 4);
  CHECK(simulate_batch(q).ok);
  CHECK(q.stats.workspace_bytes > p.stats.workspace_bytes);
  o.direct_min_bytes = 0;
  CHECK_THROWS_WITH(plan_batch(a, b, arrays, o), Catch::Contains("direct_min_bytes"));
}

TEST_CASE("cross-mesh: a replicated target with one holder goes through a broadcast tree") {
  Mesh a = Mesh::parse("x=1@0"), b = Mesh::parse("r=8@1-8");
  // 256 KiB: bandwidth-bound, so four rounds of one copy each beat one holder sending eight.
  Type src = Type::parse("f32[65536]", a.without_ranks()), dst = Type::parse("f32[65536]", b.without_ranks());
  XOptions o;
  o.link = {10.0, 1e-6};
  XPlan p = plan_cross(a, b, src, dst, o);
  CHECK(p.rounds == 4);  // 1 -> 2 -> 4 -> 8 -> 9 holders
  CHECK(p.stats.bytes_recv_max == p.stats.lower_bound_bytes);
  CHECK(p.stats.bytes_sent[0] == 4 * 262144);  // the root sends once per round, not 8 times
  XSimResult s = simulate_batch(p);
  INFO(s.error);
  CHECK(s.ok);
  o.allow_tree = false;
  XPlan d = plan_cross(a, b, src, dst, o);
  CHECK(d.rounds == 1);
  CHECK(d.stats.bytes_sent[0] == 8 * 262144);
  CHECK(simulate_batch(d).ok);
  // Latency-bound pieces go direct: one round beats four.
  o.allow_tree = true;
  o.link = {10.0, 1e-3};
  CHECK(plan_cross(a, b, Type::parse("f32[8]", a.without_ranks()), Type::parse("f32[8]", b.without_ranks()), o).rounds == 1);
}

TEST_CASE("cross-mesh: bad pairs are errors naming the array") {
  Mesh a = Mesh::parse("x=2@0-1"), b = Mesh::parse("y=2@2-3");
  auto t = [](const char* s, const Mesh& m) { return Type::parse(s, m.without_ranks()); };
  CHECK_THROWS_WITH(plan_batch(a, b, {{"w", t("f32[4{x}]", a), t("f32[6{y}]", b)}}),
                    Catch::Contains("array 'w'") && Catch::Contains("global shapes differ"));
  CHECK_THROWS_WITH(plan_batch(a, b, {{"w", t("f32[4{x}]", a), t("i32[4{y}]", b)}}), Catch::Contains("dtypes differ"));
  CHECK_THROWS_WITH(plan_batch(a, b, {{"w", t("f32[4{x}]", a), t("f32[4{x}]", a)}}),
                    Catch::Contains("target type") && Catch::Contains("y=2@2-3"));
  CHECK_THROWS_WITH(plan_batch(a, b, {{"w", t("f32[4] sum{x}", a), t("f32[4] max{y}", b)}}),
                    Catch::Contains("cannot become"));
  CHECK_THROWS_WITH(plan_batch(a, b, {{"w", t("f32[4]", a), t("f32[4]", b)}, {"w", t("f32[4]", a), t("f32[4]", b)}}),
                    Catch::Contains("appears twice"));
  CHECK_THROWS_WITH(plan_batch(a, b, {}), Catch::Contains("at least one array"));
  XOptions o;
  o.memory_cap = 7;
  CHECK_THROWS_WITH(plan_batch(a, b, {{"w", t("f32[4]", a), t("f32[4]", b)}}, o), Catch::Contains("too small"));
}

TEST_CASE("property: random cross-mesh batches are correct, byte-minimal and within the cap") {
  test::XGen gen(20261201);
  int cases = 0, capped = 0, with_tree = 0, reductions = 0;
  for (int i = 0; i < 2500; ++i) {
    const int world = gen.uniform(1, 12);
    test::RandomXCase c = gen.next(world);
    XOptions o;
    if (gen.uniform(0, 3) == 0) o.memory_cap = gen.uniform(16, 4096);
    if (gen.uniform(0, 1)) o.link = {10.0, 1e-7};  // makes trees attractive
    if (gen.uniform(0, 1)) o.direct_min_bytes = gen.uniform(1, 64);  // many pieces alone, in place
    XPlan p;
    try {
      p = plan_batch(c.src_mesh, c.dst_mesh, c.arrays, o);
    } catch (const Error& e) {
      // Only a cap too small for the largest element may refuse a valid batch.
      INFO(e.what());
      REQUIRE(o.memory_cap > 0);
      continue;
    }
    ++cases;
    capped += p.buckets > 1;
    with_tree += p.rounds > 1;
    for (const auto& pre : p.pre) reductions += !pre.steps.empty();
    INFO(fmt::format("case {} ({}): {} -> {}, cap {}, alone from {} B\n{}", i, c.placement, c.src_mesh, c.dst_mesh,
                     o.memory_cap, o.direct_min_bytes, to_string(p)));
    XSimResult s = simulate_batch(p);
    INFO(s.error);
    REQUIRE(s.ok);
    REQUIRE(s.bytes_recv == p.stats.bytes_recv);
    // Byte-minimal on every world rank, not only the busiest.
    REQUIRE(p.stats.bytes_recv == p.stats.lower_bound);
    REQUIRE(s.workspace_max <= p.stats.workspace_bytes);
    if (o.memory_cap > 0) REQUIRE(p.stats.workspace_bytes <= o.memory_cap);
    // Nothing goes to or comes from a rank outside the meshes.
    for (const XMove& m : p.moves) {
      REQUIRE(p.dst_mesh.device_of(m.to) >= 0);
      REQUIRE((m.relay ? p.dst_mesh.device_of(m.from) : p.src_mesh.device_of(m.from)) >= 0);
    }
  }
  CHECK(cases > 2000);
  CHECK(capped > 50);
  CHECK(with_tree > 20);
  CHECK(reductions > 200);
}
