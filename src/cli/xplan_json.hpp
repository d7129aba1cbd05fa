#pragma once
// Inputs and JSON of `plan/run --to-mesh` and `plan/run --batch` (docs/design.md section 10, a contract): the
// pair of meshes and the arrays, read from flags or a case file, and the plan's figures.
#include <cstdint>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "reshard/cases.hpp"
#include "reshard/error.hpp"
#include "reshard/xplan.hpp"

namespace reshard::cli {

struct XInputs {
  Mesh src_mesh, dst_mesh;
  std::vector<XArray> arrays;
  bool batch = false;
};

// --mesh/--from/--to [--to-mesh], or a case file whose lines all share the two meshes.
// The planner's options from --memory-cap (checked: the cap is a byte count).
inline XOptions x_options(std::int64_t memory_cap) {
  if (memory_cap < 0) throw Error("--memory-cap must be >= 0 bytes");
  XOptions o;
  o.memory_cap = memory_cap;
  return o;
}

inline XInputs x_inputs(const std::string& mesh, const std::string& from, const std::string& to,
                        const std::string& to_mesh, const std::string& batch) {
  XInputs in;
  if (batch.empty()) {
    if (mesh.empty() || from.empty() || to.empty()) throw Error("--mesh, --from and --to are required (or --batch FILE)");
    in.src_mesh = Mesh::parse(mesh);
    in.dst_mesh = to_mesh.empty() ? in.src_mesh : Mesh::parse(to_mesh);
    in.arrays.push_back({"", Type::parse(from, in.src_mesh.without_ranks()), Type::parse(to, in.dst_mesh.without_ranks())});
    return in;
  }
  if (!mesh.empty() || !from.empty() || !to.empty() || !to_mesh.empty())
    throw Error("--batch FILE takes the meshes and types from the file; leave out --mesh, --from, --to and --to-mesh");
  in.batch = true;
  std::vector<Case> cases = read_cases(batch);
  if (cases.empty()) throw Error(fmt::format("{}: the batch has no arrays", batch));
  for (const Case& c : cases) {
    auto at = [&](const std::string& what) { return fmt::format("{}:{}: {}", batch, c.line, what); };
    try {
      Mesh sm = Mesh::parse(c.mesh);
      Mesh dm = c.to_mesh.empty() ? sm : Mesh::parse(c.to_mesh);
      if (in.arrays.empty()) {
        in.src_mesh = sm;
        in.dst_mesh = dm;
      } else if (!(sm == in.src_mesh) || !(dm == in.dst_mesh)) {
        throw MismatchError(fmt::format("array '{}' is from mesh {} to mesh {}, the batch from {} to {} (one pair of "
                                        "meshes per batch)", c.name, sm, dm, in.src_mesh, in.dst_mesh));
      }
      in.arrays.push_back({c.name, Type::parse(c.from, sm.without_ranks()), Type::parse(c.to, dm.without_ranks())});
      check_compatible(in.src_mesh, in.dst_mesh, in.arrays.back());
    } catch (const Error& e) {
      throw Error(at(e.what()));
    }
  }
  return in;
}

inline nlohmann::json xplan_to_json(const XPlan& p, bool batch) {
  const XStats& st = p.stats;
  nlohmann::json steps = nlohmann::json::array();
  for (int b = 0; b < p.buckets; ++b)
    for (int r = 0; r < p.rounds; ++r) {
      std::vector<std::int64_t> recv(p.world, 0);
      std::int64_t n = 0;
      for (const XMove& m : p.moves)
        if (m.bucket == b && m.round == r && m.from != m.to) {
          recv[m.to] += m.box.volume() * static_cast<std::int64_t>(size_of(p.arrays[m.array].src.dtype));
          ++n;
        }
      if (n) steps.push_back({{"op", "exchange"}, {"axes", nlohmann::json::array()}, {"bucket", b}, {"round", r},
                              {"moves", n}, {"bytes_recv", *std::max_element(recv.begin(), recv.end())},
                              {"out_local_bytes", st.dst_local_bytes}});
    }
  nlohmann::json j = {{"mesh", p.src_mesh.to_string()},
                      {"to_mesh", p.dst_mesh.to_string()},
                      {"world_ranks", p.world},
                      {"steps", steps},
                      {"src_local_bytes", st.src_local_bytes},
                      {"dst_local_bytes", st.dst_local_bytes},
                      // Nothing is held but the shards and (with a pending reduction) a smaller one.
                      {"max_intermediate_bytes", std::max(st.src_local_bytes, st.dst_local_bytes)},
                      {"bytes_recv_max", st.bytes_recv_max},
                      {"lower_bound_bytes", st.lower_bound_bytes},
                      {"workspace_bytes", st.workspace_bytes},
                      {"calls", st.calls_max},
                      {"buckets", p.buckets},
                      {"rounds", p.rounds},
                      {"estimated_time_s", st.est_time_s},
                      {"notes", p.notes}};
  if (st.pre_bytes_recv_max) j["pre_bytes_recv_max"] = st.pre_bytes_recv_max;
  if (p.memory_cap) j["memory_cap"] = p.memory_cap;
  if (!batch) {
    j["from"] = p.arrays[0].src.to_string();
    j["to"] = p.arrays[0].dst.to_string();
  } else {
    nlohmann::json arrays = nlohmann::json::array();
    for (std::size_t i = 0; i < p.arrays.size(); ++i)
      arrays.push_back({{"name", p.arrays[i].name}, {"from", p.arrays[i].src.to_string()},
                        {"to", p.arrays[i].dst.to_string()}, {"bytes_recv_max", st.array_bytes_recv_max[i]},
                        {"lower_bound_bytes", st.array_lower_bound_max[i]}});
    j["arrays"] = arrays;
  }
  return j;
}

}  // namespace reshard::cli
