#pragma once
// Plans (docs/design.md 3): a sequence of typed steps. Step i turns type T(i) into T(i+1);
// T(0) is the source, T(last) the target. Plans are values: inspectable, printable, and
// independent of any communicator.
#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "reshard/mesh.hpp"
#include "reshard/type.hpp"

namespace reshard {

enum class Op { slice, all_gather, all_to_all, permute, reduce_scatter, all_reduce, exchange, local };
std::string_view name_of(Op op);

// What a `local` step does (no communication).
enum class LocalKind { relabel, make_partial };

struct Step {
  Op op = Op::local;
  Type in, out;
  // Axes of the group the step communicates over, in the order that numbers the group
  // (mixed radix, first axis major). Empty for slice and local steps. For reduce steps these
  // are the reduced axes.
  std::vector<std::string> axes;
  std::vector<int> dims;  // dims whose axis lists the step changes (for display)
  LocalKind local_kind = LocalKind::relabel;

  bool communicates() const { return op != Op::slice && op != Op::local; }
  bool reduces() const { return op == Op::reduce_scatter || op == Op::all_reduce; }
  bool operator==(const Step&) const = default;
};

// Figures of a plan, exact over every device of the mesh (see analyze()).
struct PlanStats {
  std::int64_t src_local_bytes = 0;         // largest source shard
  std::int64_t dst_local_bytes = 0;         // largest target shard
  std::int64_t max_intermediate_bytes = 0;  // largest local array of any type T(0..last)
  std::int64_t bytes_recv_max = 0;          // max over devices of bytes received, all steps
  std::int64_t lower_bound_bytes = -1;      // max over devices of target bytes not held; -1 if
                                            // the source has a pending reduction
  std::int64_t workspace_bytes = 0;         // max over devices of what the executor allocates
                                            // beyond input and output (MPI; workspace.hpp)
  std::vector<std::int64_t> step_bytes_recv_max;  // per step, max over devices
  double est_time_s = 0;                    // cost model estimate
};

struct Plan {
  Mesh mesh;
  Type src, dst;
  std::vector<Step> steps;
  std::string strategy = "reshard";  // which synthesizer made it
  std::vector<std::string> notes;    // e.g. why exchange was chosen, how far from the bound
  PlanStats stats;                   // filled by synthesize()/analyze()

  const Type& type_after(int i) const { return i < 0 ? src : steps[i].out; }
  // Whether both plans move the same data the same way (mesh, types, strategy and steps;
  // notes and stats aside): what the executor's prepared state depends on.
  bool same_steps(const Plan& o) const {
    return mesh == o.mesh && src == o.src && dst == o.dst && strategy == o.strategy && steps == o.steps;
  }
};

// Computes `plan.stats` exactly over every device: bytes received and the lower bound from each
// device's blocks (O(steps * devices * rank)); the workspace as the executor allocates it on an
// MPI transport (workspace.hpp), routing one group of each class of alike groups. Call once per
// plan (plans are cached). Throws Error on meshes of more than kMaxExactStatsDevices devices.
constexpr int kMaxExactStatsDevices = 1 << 22;
void analyze(Plan& plan);

// Where the executor keeps each step's output: the caller's output buffer (slot 0) or one of
// two scratch buffers (slots 1, 2). Assigned backwards from the last step (which writes the
// output) so that a step never reads and writes the same buffer, except one that keeps every
// block (runs_in_place), preferring the output buffer where the intermediate fits in it.
struct BufferPlan {
  std::vector<int> slot;               // per step
  std::int64_t scratch_bytes[3] = {0, 0, 0};  // [0] unused; sizes of slots 1 and 2
};
BufferPlan buffer_plan(const Plan& plan);
// Whether a step leaves every device's block as it is (make_partial; a relabel that only adds
// or drops size-1 axes): it then runs in place, on the buffer it reads (unless that is the
// caller's input).
bool runs_in_place(const Mesh& mesh, const Step& step);

std::string to_string(const Step& s);
std::string to_string(const Plan& p);  // readable, one line per step

inline std::ostream& operator<<(std::ostream& os, const Plan& v) { return os << to_string(v); }

}  // namespace reshard

template <>
struct fmt::formatter<reshard::Op> : fmt::formatter<std::string_view> {
  template <typename Ctx>
  auto format(reshard::Op op, Ctx& ctx) const {
    return fmt::formatter<std::string_view>::format(reshard::name_of(op), ctx);
  }
};
template <>
struct fmt::formatter<reshard::Step> : fmt::formatter<std::string> {
  template <typename Ctx>
  auto format(const reshard::Step& s, Ctx& ctx) const {
    return fmt::formatter<std::string>::format(reshard::to_string(s), ctx);
  }
};
template <>
struct fmt::formatter<reshard::Plan> : fmt::formatter<std::string> {
  template <typename Ctx>
  auto format(const reshard::Plan& p, Ctx& ctx) const {
    return fmt::formatter<std::string>::format(reshard::to_string(p), ctx);
  }
};
