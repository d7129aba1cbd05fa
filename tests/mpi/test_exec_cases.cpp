// Every public case whose mesh fits the ranks (the first ranks are its devices), executed with
// the index fill and checked on every rank, for the reshard, naive and exchange plans.
#include <catch2/catch.hpp>

#include "mpi_test.hpp"
#include "reshard/cases.hpp"
#include "reshard/workspace.hpp"

using namespace reshard;

TEST_CASE("public cases run across ranks and match the index fill", "[cases]") {
  const int np = test::world_size();
  int ran = 0;
  for (const Case& c : read_cases(RESHARD_CASES_DIR "/public.txt")) {
    Mesh mesh = Mesh::parse(c.mesh);
    if (mesh.num_devices() > np) continue;
    Context ctx(mesh);
    Type src = Type::parse(c.from, mesh), dst = Type::parse(c.to, mesh);
    for (Strategy s : {Strategy::reshard, Strategy::naive, Strategy::exchange, Strategy::dtensor}) {
      SynthOptions o;
      o.strategy = s;
      Plan plan = synthesize(mesh, src, dst, o);
      INFO(c.name << " (" << name_of(s) << ") on " << np << " ranks, device " << ctx.device() << "\n"
                  << fmt::format("{}", plan));
      test::Checked r = test::run_checked(ctx, plan);
      CHECK(r.mismatches == 0);
      CHECK(r.input_intact);
    }
    ++ran;
  }
  CHECK((ran > 0 || np < 4));  // the smallest public meshes have 4 devices
}

TEST_CASE("the plan's workspace is what the executor allocates, on every public case", "[cases]") {
  // Per rank: the executor's allocation equals the plan's per-device figure (workspace.hpp),
  // computed both by classes and by the per-device reference; the plan's workspace_bytes is
  // their max over devices. Every strategy, on the MPI rules (strided boxes moved in place)
  // and point-to-point only.
  const int np = test::world_size();
  int ran = 0;
  for (const Case& c : read_cases(RESHARD_CASES_DIR "/public.txt")) {
    Mesh mesh = Mesh::parse(c.mesh);
    if (mesh.num_devices() > np) continue;
    for (bool p2p_only : {false, true}) {
      ExecOptions eo;
      eo.point_to_point_only = p2p_only;
      Context ctx(mesh, MPI_COMM_WORLD, {}, eo);
      for (Strategy s : {Strategy::reshard, Strategy::naive, Strategy::greedy_per_axis, Strategy::exchange,
                         Strategy::dtensor}) {
        SynthOptions o;
        o.strategy = s;
        Plan plan = synthesize(mesh, Type::parse(c.from, mesh), Type::parse(c.to, mesh), o);
        test::run_checked(ctx, plan);
        if (!ctx.participates()) continue;
        const int me = ctx.device();
        const StagingRules rules{true, p2p_only};
        const std::int64_t allocated = ctx.executor()->workspace_bytes(plan);
        const std::vector<std::int64_t> per_device = workspace_per_device(plan, rules);
        const std::int64_t bound = std::max(plan.stats.src_local_bytes, plan.stats.dst_local_bytes);
        INFO(c.name << " (" << name_of(s) << (p2p_only ? ", point-to-point only" : "") << ") device " << me << "\n"
                    << fmt::format("{}", plan) << ctx.executor()->explain(plan));
        CHECK(allocated == per_device[me]);
        CHECK(allocated == device_workspace_bytes(plan, me, rules));
        if (!p2p_only) CHECK(plan.stats.workspace_bytes == *std::max_element(per_device.begin(), per_device.end()));
        // The reshard plan keeps the memory bound, workspace included (the naive one gathers
        // everything; the point-to-point reduce fallback, ExecOptions::point_to_point_only,
        // receives all g - 1 shares before it reduces, so it is not held to it).
        if (s == Strategy::reshard && !p2p_only) {
          CHECK(allocated <= bound);
          CHECK(plan.stats.workspace_bytes <= bound);
        }
        // rs_then_move packs its reduce-scatter in rounds of whole rows to stay within it.
        if (c.name == "rs_then_move" && s == Strategy::reshard && !p2p_only)
          CHECK(ctx.executor()->explain(plan).find("2 rounds") != std::string::npos);
      }
    }
    ++ran;
  }
  CHECK((ran > 0 || np < 4));  // the smallest public meshes have 4 devices
}

TEST_CASE("an intermediate larger than a device's own uneven output never lands in it", "[cases]") {
  // On device 6 the target shard (6 x 1 of 48 x 7 split 2 x 4) is smaller than the largest
  // one; BufferPlan must not place an intermediate bigger than that in the output buffer.
  if (test::world_size() < 8) return;
  Mesh mesh = Mesh::parse("x=4,y=1,z=2");
  Context ctx(mesh);
  auto plan = ctx.plan(Type::parse("i32[48{x}, 7]", mesh), Type::parse("i32[48{z}, 7{x}]", mesh));
  test::Checked r = test::run_checked(ctx, *plan);
  CHECK(r.mismatches == 0);
  BufferPlan bp = buffer_plan(*plan);
  for (std::size_t k = 0; k + 1 < plan->steps.size(); ++k)
    if (bp.slot[k] == 0)
      for (int d = 0; d < mesh.num_devices(); ++d)
        CHECK(plan->steps[k].out.local_bytes(mesh, d) <= plan->dst.local_bytes(mesh, d));
}

// Step shapes the search emits beyond the constructive plan: permutes that swap equal-size
// axes between dims (uneven blocks: local shapes differ between sender and receiver),
// all-to-alls that take axes of several dims at once over their product group, and chains of
// all-to-alls through an emptied dim. Each runs on every rank count whose mesh fits.
TEST_CASE("search step shapes run across ranks", "[cases]") {
  struct C { const char *mesh, *from, *to; };
  const C cases[] = {
      {"x=2", "f32[7{x},5]", "f32[7,5{x}]"},
      {"x=3", "i32[9{x},4,5]", "i32[9,4,5{x}]"},
      {"x=2,y=2", "f32[8{x},6{y}]", "f32[8{y},6{x}]"},
      {"x=2,y=2", "f32[7{x},5{y}]", "f32[7{y},5{x}]"},
      {"x=2,y=2", "i64[4{x},6{y},3]", "i64[4,6,3{x,y}]"},
      {"a=3,b=2", "f32[12{a},12{b},12]", "f32[12,12,12{a,b}]"},
      {"a=3,b=2", "f64[6{a},7{b}]", "f64[6{b},7{a}] "},
      {"p=2,q=2,r=2", "bf16[64{p,q},32{r},16]", "bf16[64{p},32{q},16{r}]"},
      {"p=2,q=2,r=2", "f32[8{p},8{q},8{r}]", "f32[8{q},8{r},8{p}]"},
  };
  const int np = test::world_size();
  for (const C& c : cases) {
    Mesh mesh = Mesh::parse(c.mesh);
    if (mesh.num_devices() > np) continue;
    Context ctx(mesh);
    Plan plan = synthesize(mesh, Type::parse(c.from, mesh), Type::parse(c.to, mesh));
    INFO(c.mesh << " | " << c.from << " -> " << c.to << " on " << np << " ranks\n" << fmt::format("{}", plan));
    test::Checked r = test::run_checked(ctx, plan);
    CHECK(r.mismatches == 0);
    CHECK(r.input_intact);
  }
}
