// The synthesizer on the public suite and on the worked examples of docs/design.md 9.
#include <catch2/catch.hpp>

#include "plan_checks.hpp"
#include "reshard/cases.hpp"
#include "reshard/error.hpp"

using namespace reshard;

namespace {
Plan make(const char* mesh, const char* from, const char* to, Strategy s = Strategy::reshard) {
  Mesh m = Mesh::parse(mesh);
  SynthOptions o;
  o.strategy = s;
  return synthesize(m, Type::parse(from, m), Type::parse(to, m), o);
}
std::vector<Op> ops(const Plan& p) {
  std::vector<Op> r;
  for (const Step& s : p.steps) r.push_back(s.op);
  return r;
}
}  // namespace

TEST_CASE("public suite: every guarantee, and the bound where a case is tight") {
  for (const Case& c : read_cases(RESHARD_CASES_DIR "/public.txt")) {
    INFO(c.name << ": " << c.mesh << " | " << c.from << " | " << c.to);
    Plan p = make(c.mesh.c_str(), c.from.c_str(), c.to.c_str());
    Plan naive = make(c.mesh.c_str(), c.from.c_str(), c.to.c_str(), Strategy::naive);
    test::check_guarantees(p, naive);
    test::check_guarantees(naive, naive, false);
    test::check_guarantees(make(c.mesh.c_str(), c.from.c_str(), c.to.c_str(), Strategy::exchange), naive);
    if (c.tight) CHECK(p.stats.bytes_recv_max == p.stats.lower_bound_bytes);
  }
}

TEST_CASE("worked examples of docs/design.md 9") {
  SECTION("add a major axis: slice the minor end, then permute") {
    Plan p = make("x=2,y=4", "f32[32{y},16]", "f32[32{x,y},16]");
    CHECK(ops(p) == std::vector<Op>{Op::slice, Op::permute});
    CHECK(p.steps[0].out.to_string() == "f32[32{y,x}, 16]");
    CHECK(p.stats.max_intermediate_bytes == 8 * 16 * 4);
  }
  SECTION("remove a major axis: permute, then gather the now-minor axis") {
    Plan p = make("x=2,y=4", "f32[32{x,y},16]", "f32[32{y},16]");
    CHECK(ops(p) == std::vector<Op>{Op::permute, Op::all_gather});
    CHECK(p.steps[0].out.to_string() == "f32[32{y,x}, 16]");
  }
  SECTION("substitute an axis of equal size: one permute, exact") {
    Plan p = make("x=4,y=4", "f32[32{x},8]", "f32[32{y},8]");
    CHECK(ops(p) == std::vector<Op>{Op::permute});
    CHECK(p.stats.bytes_recv_max == p.stats.lower_bound_bytes);
    // Device (x,y) takes block y from device (y,x): every sender serves one receiver.
    Mesh m = p.mesh;
    for (int d = 0; d < 16; ++d) {
      DeviceRoute r = route(m, p.steps[0], d);
      CHECK(r.sends.size() == 1);
      REQUIRE(r.recvs.size() == 1);
      CHECK(r.recvs[0].peer == 4 * (d % 4) + d / 4);
    }
  }
  SECTION("shrink before moving: reduce-scatter, then all-to-all") {
    Plan p = make("x=2,y=4", "f32[16{x},64] sum{y}", "f32[16,64{y,x}]");
    CHECK(ops(p) == std::vector<Op>{Op::reduce_scatter, Op::all_to_all});
    CHECK(p.steps[0].out.to_string() == "f32[16{x}, 64{y}]");
  }
  SECTION("when collectives lose to one exchange, both figures are known") {
    Plan p = make("x=2,y=3", "f32[12{x},12{y}]", "f32[12{y},12{x}]");
    CHECK(ops(p) == std::vector<Op>{Op::exchange});
    CHECK(p.stats.bytes_recv_max == p.stats.lower_bound_bytes);
    REQUIRE_FALSE(p.notes.empty());
    CHECK_THAT(p.notes[0], Catch::Contains("exchange chosen"));
  }
  SECTION("uneven and not nesting: exchange, exact") {
    Plan p = make("x=2,y=3", "f32[10{x,y},7]", "f32[10{y},7{x}]");
    CHECK(simulate(p).ok);
    CHECK(p.stats.bytes_recv_max == p.stats.lower_bound_bytes);
  }
  SECTION("the naive plan materialises the global array") {
    Plan p = make("x=2,y=4", "f32[32{y},16]", "f32[32{x,y},16]", Strategy::naive);
    CHECK(p.stats.max_intermediate_bytes == 32 * 16 * 4);
  }
}

TEST_CASE("replicate to partial and back") {
  for (auto [from, to] : {std::pair{"f32[8{x},4]", "f32[8,4] sum{x}"}, std::pair{"f32[8,4]", "f32[8,4{y}] max{x}"},
                          std::pair{"i32[8,4] prod{x}", "i32[8{x},4] prod{y}"}, std::pair{"f32[8] sum{x}", "f32[8] sum{x}"},
                          std::pair{"i8[9{y}] sum{x}", "i8[9{x}] sum{y}"}}) {
    INFO(from << " -> " << to);
    test::check_guarantees(make("x=2,y=3", from, to), make("x=2,y=3", from, to, Strategy::naive));
  }
}

TEST_CASE("incompatible source and target are errors that name the problem") {
  Mesh m = Mesh::parse("x=2,y=2");
  auto T = [&](const char* s) { return Type::parse(s, m); };
  CHECK_THROWS_WITH(synthesize(m, T("f32[4{x}]"), T("f64[4]")), Catch::Contains("dtypes differ"));
  CHECK_THROWS_WITH(synthesize(m, T("f32[4{x}]"), T("f32[5]")), Catch::Contains("global shapes differ"));
  CHECK_THROWS_WITH(synthesize(m, T("f32[4,2]"), T("f32[4]")), Catch::Contains("global shapes differ"));
  CHECK_THROWS_WITH(synthesize(m, T("f32[4] sum{x}"), T("f32[4] max{y}")), Catch::Contains("from sum to max"));
  Type foreign;
  foreign.dims = {{4, {"z"}}};
  CHECK_THROWS_AS(synthesize(m, foreign, T("f32[4]")), MismatchError);
  CHECK_THROWS_AS(Topology::parse("tp=fast"), ParseError);
  CHECK_THROWS_WITH(Topology::parse("tp=fast"), Catch::Contains("unknown link preset"));
  CHECK_THROWS_WITH(strategy_from_name("magic"), Catch::Contains("unknown strategy"));
}

TEST_CASE("a per-axis topology changes the choice") {
  Mesh m = Mesh::parse("dp=2,tp=4");
  Type src = Type::parse("f32[1024{dp},1024{tp}]", m), dst = Type::parse("f32[1024{tp},1024{dp}]", m);
  SynthOptions fast;
  fast.topology = Topology::parse("tp=nvlink,dp=ib");
  CHECK(fast.topology.link("tp").bandwidth_GBps == 300);
  CHECK(Topology::parse("dp=25:10us").link("dp").latency_s == Approx(10e-6));
  Plan flat = synthesize(m, src, dst), topo = synthesize(m, src, dst, fast);
  CHECK(simulate(flat).ok);
  CHECK(simulate(topo).ok);
  CHECK(topo.stats.est_time_s > 0);
}

TEST_CASE("plans are cached by mesh, types and options") {
  PlanCache cache;
  Mesh m = Mesh::parse("x=4");
  Type a = Type::parse("f32[64{x}]", m), b = Type::parse("f32[64]", m);
  auto p1 = cache.get(m, a, b);
  auto p2 = cache.get(m, a, b);
  CHECK(p1 == p2);
  SynthOptions naive;
  naive.strategy = Strategy::naive;
  CHECK(cache.get(m, a, b, naive) != p1);
  CHECK(cache.size() == 2);
}

// Losses of the greedy move phase that the search over typed steps fixes (issue 11).
TEST_CASE("the search reaches the bound where the constructive plan did not") {
  SECTION("two all-to-alls: r from dim 1 to dim 2, then q from dim 0 to dim 1") {
    for (const char* mesh : {"p=2,q=2,r=2", "p=3,q=2,r=2", "p=4,q=2,r=2"}) {
      INFO(mesh);
      Plan p = make(mesh, "bf16[64{p,q},32{r},16]", "bf16[64{p},32{q},16{r}]");
      CHECK(p.stats.bytes_recv_max == p.stats.lower_bound_bytes);
      CHECK(ops(p) == std::vector<Op>{Op::all_to_all, Op::all_to_all});
      test::check_guarantees(p, make(mesh, "bf16[64{p,q},32{r},16]", "bf16[64{p},32{q},16{r}]", Strategy::naive));
    }
  }
  SECTION("the same pattern one dim over, on larger axes: the two all-to-alls, as DTensor") {
    const char* from = "f32[4,128{a,b},64{c},32]";
    const char* to = "f32[4,128{a},64{b},32{c}]";
    Plan p = make("a=2,b=4,c=2", from, to);
    CHECK(ops(p) == std::vector<Op>{Op::all_to_all, Op::all_to_all});
    CHECK(p.stats.bytes_recv_max <= make("a=2,b=4,c=2", from, to, Strategy::greedy_per_axis).stats.bytes_recv_max);
  }
  SECTION("a permute swaps equal-size axes between dims, uneven blocks included") {
    for (const char* shape : {"f32[8{x},6{y}]|f32[8{y},6{x}]", "f32[7{x},5{y}]|f32[7{y},5{x}]"}) {
      std::string s(shape);
      std::string from = s.substr(0, s.find('|')), to = s.substr(s.find('|') + 1);
      INFO(from << " -> " << to);
      Plan p = make("x=2,y=2", from.c_str(), to.c_str());
      CHECK(ops(p) == std::vector<Op>{Op::permute});
      CHECK(p.stats.bytes_recv_max == p.stats.lower_bound_bytes);
      test::check_guarantees(p, make("x=2,y=2", from.c_str(), to.c_str(), Strategy::naive));
    }
  }
  SECTION("several dims give their axes to one dim in one all-to-all over the product group") {
    Plan p = make("a=3,b=2", "f32[12{a},12{b},12]", "f32[12,12,12{a,b}]");
    REQUIRE(ops(p) == std::vector<Op>{Op::all_to_all});
    CHECK(p.steps[0].axes == std::vector<std::string>{"a", "b"});
    CHECK(p.stats.bytes_recv_max == p.stats.lower_bound_bytes);
  }
  SECTION("transpose_2d: the best collective plan is known and priced against exchange") {
    Plan p = make("x=2,y=4", "f32[32{x},32{y}]", "f32[32{y},32{x}]");
    CHECK(p.stats.bytes_recv_max == p.stats.lower_bound_bytes);
    REQUIRE_FALSE(p.notes.empty());
    CHECK_THAT(p.notes[0], Catch::Contains("best collective plan"));
  }
}

// Never worse than an incumbent: the constructive plans, greedy_per_axis and exchange all seed
// the search, so none of them is cheaper by the cost model on the public suite.
TEST_CASE("no baseline beats the reshard plan by the cost model on the public suite") {
  for (const Case& c : read_cases(RESHARD_CASES_DIR "/public.txt")) {
    INFO(c.name);
    Plan p = make(c.mesh.c_str(), c.from.c_str(), c.to.c_str());
    for (Strategy s : {Strategy::greedy_per_axis, Strategy::dtensor, Strategy::exchange}) {
      Plan b = make(c.mesh.c_str(), c.from.c_str(), c.to.c_str(), s);
      INFO(name_of(s) << "\n" << b << "\nreshard:\n" << p);
      const std::int64_t bound = std::max(b.stats.src_local_bytes, b.stats.dst_local_bytes);
      if (b.stats.max_intermediate_bytes <= bound && b.stats.workspace_bytes <= bound)
        CHECK(p.stats.est_time_s <= b.stats.est_time_s * (1 + 1e-9));
    }
  }
}

// On every public and benchmark case the reshard plan receives no more bytes than the per-axis
// greedy baseline and the DTensor-faithful one (whose figures count padded blocks), and reaches
// the lower bound where a case is marked tight.
TEST_CASE("public and benchmark cases: no more bytes than greedy_per_axis and dtensor, the bound where tight") {
  int n = 0;
  for (const char* file : {RESHARD_CASES_DIR "/public.txt", RESHARD_SUITES_DIR "/bench.txt",
                           RESHARD_SUITES_DIR "/bench_extra.txt", RESHARD_SUITES_DIR "/bench_tiny.txt"}) {
    for (const Case& c : read_cases(file)) {
      INFO(file << ": " << c.name);
      Plan p = make(c.mesh.c_str(), c.from.c_str(), c.to.c_str());
      Plan g = make(c.mesh.c_str(), c.from.c_str(), c.to.c_str(), Strategy::greedy_per_axis);
      Plan d = make(c.mesh.c_str(), c.from.c_str(), c.to.c_str(), Strategy::dtensor);
      INFO(p << "\ngreedy_per_axis:\n" << g << "\ndtensor:\n" << d);
      CHECK(p.stats.bytes_recv_max <= g.stats.bytes_recv_max);
      CHECK(p.stats.bytes_recv_max <= d.stats.bytes_recv_max);
      if (c.tight) CHECK(p.stats.bytes_recv_max == p.stats.lower_bound_bytes);
      ++n;
    }
  }
  CHECK(n > 40);
}
