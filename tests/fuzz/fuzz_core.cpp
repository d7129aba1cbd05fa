// libFuzzer target for the pure core: mesh and type parsers, case files, synthesis and the
// simulator (issue 7).
//
// Input: text split on '\n' or '|' into up to four fields:
//   mesh | source type | target type | topology (optional)
// Missing fields are simply not exercised. Expected outcomes are ParseError from the parsers and
// MismatchError from check_compatible. Everything else is a finding and aborts the process:
//   - a parser throwing something other than ParseError, or a ParseError whose position lies
//     outside its text;
//   - print-then-parse not giving back the same mesh or type;
//   - a parsed type that does not validate, or whose per-device blocks do not partition the
//     global array, or whose max_local_bytes is not the largest local array;
//   - synthesize() with the reshard strategy throwing for a pair check_compatible() accepts
//     (the baseline strategies naive, greedy_per_axis and exchange may decline a pair; their
//     plans, when made, are held to everything below except the memory bound);
//   - a plan whose steps do not chain from source to target, or a step that is not valid;
//   - simulate(plan).ok == false (except pending f16/bf16 sums beyond the range where the index
//     fill is exact, see sums_exact());
//   - the `reshard` strategy's plan holding more than max(source shard, target shard);
//   - stats that disagree with the simulator (bytes received, largest local array) or fall
//     below the lower bound.
// Work is bounded so that every input runs in milliseconds: inputs over 512 bytes are ignored;
// plans are simulated only on meshes of at most 64 devices and arrays of at most 4096 elements;
// larger arrays (up to the parser's limit) on meshes of at most 1024 devices get the symbolic
// checks (plan chain, step validity, memory bound from the types), and exact stats on meshes of
// at most 256 devices.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>
#include <vector>

#include "reshard/cases.hpp"
#include "reshard/error.hpp"
#include "reshard/mesh.hpp"
#include "reshard/plan.hpp"
#include "reshard/route.hpp"
#include "reshard/simulate.hpp"
#include "reshard/synth.hpp"
#include "reshard/type.hpp"

namespace {

constexpr std::size_t kMaxInput = 512;
constexpr int kMaxDevices = 64;            // exact stats and the simulator
constexpr int kMaxStatsDevices = 256;      // exact stats (analyze) of arrays of any size
constexpr int kMaxSymbolicDevices = 1024;  // symbolic synthesis of arrays of any size
constexpr std::int64_t kMaxElements = 4096;

[[noreturn]] void finding(const std::string& what, std::string_view input) {
  std::fprintf(stderr, "fuzz_core finding: %s\n  input: %.*s\n", what.c_str(), static_cast<int>(input.size()),
               input.data());
  std::fflush(stderr);
  std::abort();
}

std::vector<std::string_view> split_fields(std::string_view text) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  for (std::size_t i = 0; i <= text.size(); ++i) {
    if (i == text.size() || text[i] == '\n' || text[i] == '|') {
      out.push_back(text.substr(start, i - start));
      start = i + 1;
    }
  }
  return out;
}

// A parser may only report bad text as a ParseError whose position lies inside (or at the end
// of) the text it was given.
void check_parse_error(const reshard::ParseError& e, std::string_view field, std::string_view input) {
  if (e.position() > e.text().size())
    finding(fmt::format("ParseError position {} beyond its text of {} chars: {}", e.position(), e.text().size(),
                        e.what()),
            input);
  if (e.text() != field)
    finding(fmt::format("ParseError text '{}' is not the text parsed '{}'", e.text(), field), input);
}

// Global element count with overflow checks; -1 if it does not fit in int64.
std::int64_t safe_elements(const reshard::Type& t) {
  std::int64_t v = 1;
  for (const reshard::Dim& d : t.dims)
    if (__builtin_mul_overflow(v, d.size, &v)) return -1;
  return v;
}

// Cheap algebraic invariants of a parsed type on a small mesh.
void check_type(const reshard::Mesh& m, const reshard::Type& t, std::string_view input) {
  using namespace reshard;
  try {
    t.validate(m);
  } catch (const Error& e) {
    finding(fmt::format("parsed type {} does not validate: {}", t, e.what()), input);
  }
  std::int64_t split = 1;  // product of the sizes of every axis that splits a dim
  for (int d = 0; d < t.rank(); ++d) split *= t.num_blocks(m, d);
  if (m.num_devices() % split != 0)
    finding(fmt::format("type {}: split product {} does not divide {} devices", t, split, m.num_devices()), input);
  std::int64_t total = 0, largest = 0;
  for (int dev = 0; dev < m.num_devices(); ++dev) {
    Box b = t.block(m, dev);
    if (static_cast<int>(b.dims.size()) != t.rank()) finding(fmt::format("type {}: block rank", t), input);
    for (int d = 0; d < t.rank(); ++d) {
      std::int64_t bi = t.block_index(m, d, dev);
      if (bi < 0 || bi >= t.num_blocks(m, d))
        finding(fmt::format("type {}: device {} block index {} along dim {}", t, dev, bi, d), input);
      const Interval& iv = b.dims[d];
      if (iv.lo < 0 || iv.lo > iv.hi || iv.hi > t.dims[d].size)
        finding(fmt::format("type {}: device {} block [{}, {}) along dim {}", t, dev, iv.lo, iv.hi, d), input);
    }
    total += t.local_elements(m, dev);
    largest = std::max(largest, t.local_bytes(m, dev));
  }
  // Blocks partition the array; every partition is held by devices/split devices.
  if (total != t.global_elements() * (m.num_devices() / split))
    finding(fmt::format("type {}: local arrays sum to {} elements, expected {} x {}", t, total, t.global_elements(),
                        m.num_devices() / split),
            input);
  if (largest != t.max_local_bytes(m))
    finding(fmt::format("type {}: max_local_bytes {} but the largest local array is {} bytes", t,
                        t.max_local_bytes(m), largest),
            input);
}

// Symbolic checks (no routing over devices, no data): fine for any size within the caps.
void check_plan_symbolic(const reshard::Plan& plan, bool bounded, std::string_view input) {
  using namespace reshard;
  const Mesh& m = plan.mesh;
  auto where = [&] { return fmt::format("strategy {}:\n{}", plan.strategy, to_string(plan)); };
  // The steps chain from the source to the target.
  if (plan.steps.empty()) {
    if (!(plan.src == plan.dst)) finding("no steps but the source is not the target, " + where(), input);
  } else {
    if (!(plan.steps.front().in == plan.src)) finding("the first step does not start at the source, " + where(), input);
    if (!(plan.steps.back().out == plan.dst)) finding("the last step does not end at the target, " + where(), input);
    for (std::size_t i = 0; i < plan.steps.size(); ++i) {
      const Step& s = plan.steps[i];
      if (i > 0 && !(plan.steps[i - 1].out == s.in))
        finding(fmt::format("step {} does not start where step {} ends, ", i + 1, i) + where(), input);
      try {
        s.out.validate(m);
      } catch (const Error& e) {
        finding(fmt::format("step {} type does not validate ({}), ", i + 1, e.what()) + where(), input);
      }
      std::string why;
      if (!step_is_valid(m, s, &why)) finding(fmt::format("step {} is not valid ({}), ", i + 1, why) + where(), input);
    }
  }
  if (bounded) {
    std::int64_t bound = std::max(plan.src.max_local_bytes(m), plan.dst.max_local_bytes(m));
    for (std::size_t i = 0; i < plan.steps.size(); ++i)
      if (plan.steps[i].out.max_local_bytes(m) > bound)
        finding(fmt::format("memory bound broken at step {}: {} > {}, ", i + 1, plan.steps[i].out.max_local_bytes(m),
                            bound) +
                    where(),
                input);
  }
}

// Whether the index fill's pending sums (docs/design.md 5) are exact in the plan's dtype. With a sum
// pending over g devices the fill holds i - (2 + ... + g) on one device and 2..g on the others;
// every partial sum then lies in [-S, max(i, S)] with S = g(g+1)/2. f16 and bf16 hold integers
// exactly only up to 2^11 and 2^8: beyond that the reduced value differs from the fill's by
// rounding, and the simulator's exact comparison fails for reasons that are no plan's fault
// (reported as an oracle limitation). Moves, max, min and prod are exact in every dtype.
bool sums_exact(const reshard::Plan& plan) {
  using namespace reshard;
  int bits = plan.src.dtype == DType::bf16 ? 8 : plan.src.dtype == DType::f16 ? 11 : 0;
  if (bits == 0) return true;
  bool sums = plan.src.op == ReduceOp::sum || plan.dst.op == ReduceOp::sum;
  for (const Step& st : plan.steps) sums = sums || st.out.op == ReduceOp::sum;
  if (!sums) return true;
  std::int64_t g = plan.mesh.num_devices();  // bounds every group
  std::int64_t largest = std::max(plan.src.global_elements(), g * (g + 1) / 2);
  return largest <= (std::int64_t{1} << bits);
}

// Exact stats (synthesize with exact_stats): routed boxes, no data.
void check_stats(const reshard::Plan& plan, bool bounded, std::string_view input) {
  using namespace reshard;
  auto where = [&] { return fmt::format("strategy {}:\n{}", plan.strategy, to_string(plan)); };
  const Mesh& m = plan.mesh;
  const PlanStats& st = plan.stats;
  if (st.src_local_bytes != plan.src.max_local_bytes(m) || st.dst_local_bytes != plan.dst.max_local_bytes(m))
    finding("stats disagree with the source/target shard sizes, " + where(), input);
  if (bounded && st.max_intermediate_bytes > std::max(st.src_local_bytes, st.dst_local_bytes))
    finding(fmt::format("memory bound broken: {} > max({}, {}), ", st.max_intermediate_bytes, st.src_local_bytes,
                        st.dst_local_bytes) +
                where(),
            input);
  if (st.lower_bound_bytes > st.bytes_recv_max)
    finding(fmt::format("bytes_recv_max {} below the lower bound {}, ", st.bytes_recv_max, st.lower_bound_bytes) +
                where(),
            input);
  if (st.step_bytes_recv_max.size() != plan.steps.size() || st.workspace_bytes < 0)
    finding(fmt::format("stats: {} step figures for {} steps, workspace {}, ", st.step_bytes_recv_max.size(),
                        plan.steps.size(), st.workspace_bytes) +
                where(),
            input);
}

// The simulator: small meshes and arrays only.
void check_plan(const reshard::Plan& plan, bool bounded, std::string_view input) {
  using namespace reshard;
  check_plan_symbolic(plan, bounded, input);
  check_stats(plan, bounded, input);
  auto where = [&] { return fmt::format("strategy {}:\n{}", plan.strategy, to_string(plan)); };
  const PlanStats& st = plan.stats;
  SimResult r = simulate(plan);
  if (!r.ok) {
    if (sums_exact(plan))
      finding(fmt::format("simulate failed: {} (step {}), ", r.error, r.failed_step) + where(), input);
    return;  // a rounding miss of the oracle: the simulator stopped early, its figures are partial
  }
  std::int64_t recv = r.bytes_recv.empty() ? 0 : *std::max_element(r.bytes_recv.begin(), r.bytes_recv.end());
  if (recv != st.bytes_recv_max)
    finding(fmt::format("simulator received {} bytes, stats say {}, ", recv, st.bytes_recv_max) + where(), input);
  if (r.max_local_bytes > st.max_intermediate_bytes)
    finding(fmt::format("simulator held {} bytes, stats say at most {}, ", r.max_local_bytes,
                        st.max_intermediate_bytes) +
                where(),
            input);
}

int run_one(std::string_view input) {
  using namespace reshard;
  // Case files: the whole input (cheap, never throws anything but Error).
  try {
    (void)parse_cases(std::string(input));
  } catch (const Error&) {
  }

  std::vector<std::string_view> f = split_fields(input);
  if (f.size() > 4) return 0;

  Mesh mesh;
  try {
    mesh = Mesh::parse(f[0]);
  } catch (const ParseError& e) {
    check_parse_error(e, f[0], input);
    return 0;
  }
  {
    std::int64_t prod = 1;
    for (const Axis& a : mesh.axes()) prod *= a.size;  // parse bounds this by INT_MAX
    if (prod != mesh.num_devices() || mesh.num_axes() < 1)
      finding(fmt::format("mesh {} has {} devices, its axes multiply to {}", mesh, mesh.num_devices(), prod), input);
    std::string printed = mesh.to_string();
    Mesh again;
    try {
      again = Mesh::parse(printed);
    } catch (const Error& e) {
      finding(fmt::format("printed mesh '{}' does not parse: {}", printed, e.what()), input);
    }
    if (!(again == mesh)) finding(fmt::format("mesh round trip: '{}' parses to '{}'", printed, again), input);
  }
  bool small_mesh = mesh.num_devices() <= kMaxDevices;

  std::vector<Type> types;
  for (std::size_t i = 1; i < std::min<std::size_t>(f.size(), 3); ++i) {
    Type t;
    try {
      t = Type::parse(f[i], mesh);
    } catch (const ParseError& e) {
      check_parse_error(e, f[i], input);
      return 0;
    }
    std::string printed = t.to_string();
    Type again;
    try {
      again = Type::parse(printed, mesh);
    } catch (const Error& e) {
      finding(fmt::format("printed type '{}' does not parse: {}", printed, e.what()), input);
    }
    if (!(again == t)) finding(fmt::format("type round trip: '{}' parses to '{}'", printed, again), input);
    // Any parsed type, any mesh: sizes must be computable without overflow (UBSan watches).
    std::int64_t n = safe_elements(t);
    if (n < 0 || n != t.global_elements())
      finding(fmt::format("type {}: global element count overflows", t), input);
    if (t.max_local_bytes(mesh) < 0 || t.max_local_bytes(mesh) > n * static_cast<std::int64_t>(size_of(t.dtype)))
      finding(fmt::format("type {}: max_local_bytes {} out of range", t, t.max_local_bytes(mesh)), input);
    for (int dev : {0, mesh.num_devices() - 1}) {
      Box b = t.block(mesh, dev);
      for (int d = 0; d < t.rank(); ++d)
        if (b.dims[d].lo < 0 || b.dims[d].lo > b.dims[d].hi || b.dims[d].hi > t.dims[d].size)
          finding(fmt::format("type {}: device {} block {} out of range", t, dev, b), input);
    }
    if (small_mesh && n <= kMaxElements) check_type(mesh, t, input);
    types.push_back(std::move(t));
  }
  if (types.size() < 2) return 0;
  const Type& src = types[0];
  const Type& dst = types[1];
  try {
    check_compatible(mesh, src, dst);
  } catch (const MismatchError&) {
    return 0;
  }
  SynthOptions opts;
  if (f.size() > 3) {
    try {
      opts.topology = Topology::parse(f[3]);
    } catch (const Error&) {
      // Bad topology text is an expected outcome; go on with the flat one.
    }
  }
  if (mesh.num_devices() > kMaxSymbolicDevices) return 0;
  if (!small_mesh || src.global_elements() > kMaxElements) {
    // Large arrays (up to the parser's limit) or meshes: no data. Exact stats route boxes over
    // every device, cheap on meshes of a few hundred devices whatever the array size.
    bool stats = mesh.num_devices() <= kMaxStatsDevices;
    opts.exact_stats = stats;
    Plan plan;
    try {
      plan = synthesize(mesh, src, dst, opts);
    } catch (const Error& e) {
      finding(fmt::format("synthesize threw for a compatible pair: {}", e.what()), input);
    }
    check_plan_symbolic(plan, true, input);
    if (stats) check_stats(plan, true, input);
    return 0;
  }
  for (Strategy s : {Strategy::reshard, Strategy::greedy_per_axis, Strategy::exchange, Strategy::naive}) {
    opts.strategy = s;
    Plan plan;
    try {
      plan = synthesize(mesh, src, dst, opts);
    } catch (const Error& e) {
      // The baselines may be unavailable or decline a pair; the reshard strategy must not.
      if (s != Strategy::reshard) continue;
      finding(fmt::format("synthesize ({}) threw for a compatible pair: {}", name_of(s), e.what()), input);
    }
    check_plan(plan, s == Strategy::reshard, input);
  }
  return 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > kMaxInput) return 0;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  try {
    return run_one(input);
  } catch (const std::exception& e) {
    finding(fmt::format("unexpected exception: {}", e.what()), input);
  }
}
