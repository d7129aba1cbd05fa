// Errors and faults in-process (README "Errors and faults"; faults that end processes are in
// faults.cmake): MPI failures become errors naming the call and the rank; the communicators
// return errors instead of aborting; the timeout's sources; and "nothing lost": after every
// failing reshard the caller's input holds the same bytes, and where the error is found before
// data moves, so does the output. Every rank fails together here (agreed errors, or a fault
// injected on all ranks at step k), so no rank is left waiting.
#include <cstdlib>
#include <optional>

#include <catch2/catch.hpp>

#include "fault.hpp"     // src/exec
#include "mpi_comm.hpp"  // src/backends/mpi
#include "mpi_test.hpp"
#include "reshard/error.hpp"

using namespace reshard;
using Catch::Matchers::Contains;

namespace {

std::uint64_t checksum(const std::vector<std::byte>& v) {
  return fnv1a(std::string_view(reinterpret_cast<const char*>(v.data()), v.size()));
}

// A rank's buffers for one plan: the input index-filled, the output poisoned, and their
// checksums before the call.
struct Buffers {
  std::vector<std::byte> in, out;
  std::uint64_t in_sum = 0, out_sum = 0;
  Buffers(Context& ctx, const Plan& plan)
      : in(static_cast<std::size_t>(ctx.local_bytes(plan.src))),
        out(static_cast<std::size_t>(ctx.local_bytes(plan.dst)), std::byte{0xa5}) {
    ctx.fill_index(plan.src, in.data());
    in_sum = checksum(in);
    out_sum = checksum(out);
  }
  bool input_intact() const { return checksum(in) == in_sum; }
  bool output_untouched() const { return checksum(out) == out_sum; }
};

// Sets RESHARD_FAULT's equivalent for one scope (every rank), then clears it.
struct InjectedFault {
  explicit InjectedFault(const std::string& spec) { exec::set_fault(spec); }
  ~InjectedFault() { exec::set_fault(""); }
};

// Restores an environment variable when the scope ends.
struct EnvVar {
  std::string name;
  std::optional<std::string> old;
  EnvVar(std::string n, const char* value) : name(std::move(n)) {
    if (const char* v = std::getenv(name.c_str())) old = v;
    if (value) setenv(name.c_str(), value, 1);
    else unsetenv(name.c_str());
  }
  ~EnvVar() {
    if (old) setenv(name.c_str(), old->c_str(), 1);
    else unsetenv(name.c_str());
  }
};

// Plans with several steps at every rank count: all-gather then make_partial on a line; slice
// then permute on a 2 x n/2 mesh (even rank counts from 4).
std::vector<std::pair<Mesh, std::string>> multi_step_pairs(int np) {
  std::vector<std::pair<Mesh, std::string>> r;
  r.push_back({Mesh({{"x", np}}), "f32[24{x},6] -> f32[24,6] sum{x}"});
  r.push_back({Mesh({{"x", np}}), "i32[25{x},7] -> i32[25,7{x}]"});
  if (np >= 4 && np % 2 == 0) r.push_back({Mesh({{"x", 2}, {"y", np / 2}}), "f32[32{y},16] -> f32[32{x,y},16]"});
  return r;
}

std::shared_ptr<const Plan> plan_of(Context& ctx, const std::string& pair) {
  const std::size_t arrow = pair.find(" -> ");
  return ctx.plan(Type::parse(pair.substr(0, arrow), ctx.mesh()), Type::parse(pair.substr(arrow + 4), ctx.mesh()));
}

}  // namespace

TEST_CASE("an MPI failure is an Error naming the call and the rank", "[faults]") {
  const int np = test::world_size(), me = test::world_rank();
  Context ctx(Mesh({{"x", np}}));
  auto& world = static_cast<mpi::MpiGroup&>(ctx.communicator()->world());
  float x = 0;
  RecvMsg bad{np, &x, 1};  // no such rank: MPI_Irecv fails locally, at once
  CHECK_THROWS_WITH(world.exchange({}, std::span(&bad, 1), DType::f32),
                    Contains("MPI_Irecv failed on rank " + std::to_string(me)));
  // The group still works.
  test::Checked r = test::run_checked(ctx, *plan_of(ctx, "f32[24{x},6] -> f32[24,6{x}]"));
  CHECK(r.mismatches == 0);
}

TEST_CASE("the context's communicators return MPI errors instead of aborting", "[faults]") {
  const int np = test::world_size();
  Context ctx(Mesh({{"x", 1}, {"y", np}}));
  auto returns_errors = [](MPI_Comm c) {
    MPI_Errhandler h = MPI_ERRHANDLER_NULL;
    MPI_Comm_get_errhandler(c, &h);
    const bool r = h == MPI_ERRORS_RETURN;
    MPI_Errhandler_free(&h);
    return r;
  };
  CHECK(returns_errors(ctx.comm()));
  for (auto axes : {std::vector<std::string>{"x"}, {"y"}, {"y", "x"}})
    CHECK(returns_errors(static_cast<mpi::MpiGroup&>(ctx.communicator()->group(axes)).comm()));
}

TEST_CASE("the timeout comes from ExecOptions, else RESHARD_TIMEOUT_S, else 300 s", "[faults]") {
  {
    EnvVar unset("RESHARD_TIMEOUT_S", nullptr);
    CHECK(mpi::resolve_timeout(-1) == 300);
    CHECK(mpi::resolve_timeout(0) == 0);
    CHECK(mpi::resolve_timeout(2.5) == 2.5);
  }
  {
    EnvVar set("RESHARD_TIMEOUT_S", "7.5");
    CHECK(mpi::resolve_timeout(-1) == 7.5);
    CHECK(mpi::resolve_timeout(4) == 4);  // the option wins
  }
  for (const char* bad : {"abc", "-1", "5s", "nan"}) {
    EnvVar set("RESHARD_TIMEOUT_S", bad);
    CHECK_THROWS_WITH(mpi::resolve_timeout(-1), Contains("RESHARD_TIMEOUT_S") && Contains(bad));
  }
  // A Context hands its option to every group.
  ExecOptions o;
  o.timeout_s = 42;
  Context ctx(Mesh({{"x", test::world_size()}}), MPI_COMM_WORLD, {}, o);
  CHECK(static_cast<mpi::MpiGroup&>(ctx.communicator()->world()).timeout_s() == 42);
  CHECK(static_cast<mpi::MpiGroup&>(ctx.communicator()->group({"x"})).timeout_s() == 42);
}

TEST_CASE("healthy runs never trip the deadline, collective or point-to-point", "[faults]") {
  const int np = test::world_size();
  for (bool p2p : {false, true})
    for (double timeout : {0.0, 60.0}) {  // 0: plain MPI_Waitall, no watchdog
      ExecOptions o;
      o.point_to_point_only = p2p;
      o.timeout_s = timeout;
      INFO("point to point " << p2p << ", timeout " << timeout);
      for (auto& [mesh, pair] : multi_step_pairs(np)) {
        Context ctx(mesh, MPI_COMM_WORLD, {}, o);
        if (!ctx.participates()) continue;
        for (int i = 0; i < 3; ++i) CHECK(test::run_checked(ctx, *plan_of(ctx, pair)).mismatches == 0);
      }
    }
}

TEST_CASE("RESHARD_FAULT's syntax", "[faults]") {
  exec::Fault f = exec::parse_fault("rank=2,step=3,kind=hang,call=4");
  CHECK(f.rank == 2);
  CHECK(f.step == 3);
  CHECK(f.call == 4);
  CHECK(f.kind == exec::Fault::Kind::hang);
  CHECK(exec::parse_fault("kind=throw,rank=all").rank == -1);
  CHECK(exec::parse_fault("").kind == exec::Fault::Kind::none);
  CHECK_THROWS_AS(exec::parse_fault("rank=1,step=1"), ParseError);  // no kind
  try {
    exec::parse_fault("rank=1,step=x,kind=exit");
    FAIL("no exception");
  } catch (const ParseError& e) {
    CHECK(e.position() == 12);
  }
  CHECK_THROWS_WITH(exec::parse_fault("rank=1,kind=explode"), Contains("unknown kind 'explode'"));
  CHECK_THROWS_WITH(exec::parse_fault("rnak=1,kind=exit"), Contains("unknown key 'rnak'"));
}

TEST_CASE("nothing lost: agreed errors leave input and output as they were", "[faults]") {
  const int np = test::world_size(), me = test::world_rank();
  const bool bad = me == 0;  // device 0's blocks are never empty
  for (auto& [mesh, pair] : multi_step_pairs(np)) {
    Context ctx(mesh);
    if (!ctx.participates()) continue;
    auto plan = plan_of(ctx, pair);
    INFO(pair << " on mesh " << mesh);
    auto refused = [&](const Plan& p, auto&& call) {
      Buffers b(ctx, p);
      CHECK_THROWS_AS(call(b), MismatchError);
      CHECK(b.input_intact());
      CHECK(b.output_untouched());
    };
    refused(*plan, [&](Buffers& b) {  // one rank's output is a byte short
      ctx.reshard(*plan, b.in.data(), b.in.size(), b.out.data(), b.out.size() - bad);
    });
    refused(*plan, [&](Buffers& b) {  // one rank's input is too long
      ctx.reshard(*plan, b.in.data(), b.in.size() + 4 * bad, b.out.data(), b.out.size());
    });
    refused(*plan, [&](Buffers& b) {  // one rank passes a null output
      ctx.reshard(*plan, b.in.data(), b.in.size(), bad ? nullptr : b.out.data(), b.out.size());
    });
    if (np > 1) {  // ranks run different plans: rank 0 this one, the others its reverse
      auto reverse = ctx.plan(plan->dst, plan->src);
      refused(bad ? *plan : *reverse, [&](Buffers& b) {
        ctx.reshard(bad ? *plan : *reverse, b.in.data(), b.in.size(), b.out.data(), b.out.size());
      });
    }
    // The context is still usable after every one of them.
    CHECK(test::run_checked(ctx, *plan).mismatches == 0);
  }
}

TEST_CASE("nothing lost: an exception in step k leaves the input as it was", "[faults]") {
  const int np = test::world_size();
  for (auto& [mesh, pair] : multi_step_pairs(np)) {
    Context ctx(mesh);
    if (!ctx.participates()) continue;
    auto plan = plan_of(ctx, pair);
    const int steps = static_cast<int>(plan->steps.size());
    for (int k = 1; k <= steps; ++k) {
      INFO(pair << " on mesh " << mesh << ", fault before step " << k << " of " << steps);
      Buffers b(ctx, *plan);
      {
        InjectedFault fault(fmt::format("rank=all,step={},kind=throw", k));  // every rank: nobody waits
        CHECK_THROWS_WITH(ctx.reshard(*plan, b.in.data(), b.in.size(), b.out.data(), b.out.size()),
                          Contains(fmt::format("throws before step {}", k)));
      }
      CHECK(b.input_intact());
      if (k == 1) CHECK(b.output_untouched());  // no data moved yet; after that: unspecified
      CHECK(test::run_checked(ctx, *plan).mismatches == 0);
    }
    // call=N: the Nth time the step runs.
    Buffers b(ctx, *plan);
    InjectedFault fault(fmt::format("rank=all,step={},kind=throw,call=2", steps));
    if (steps == 0) continue;
    CHECK_NOTHROW(ctx.reshard(*plan, b.in.data(), b.in.size(), b.out.data(), b.out.size()));
    CHECK_THROWS_AS(ctx.reshard(*plan, b.in.data(), b.in.size(), b.out.data(), b.out.size()), Error);
    CHECK(b.input_intact());
  }
}
