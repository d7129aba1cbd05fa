#pragma once
// JSON form of a plan (docs/design.md 5, the `plan --json` contract).
#include <nlohmann/json.hpp>

#include "reshard/plan.hpp"

namespace reshard::cli {

inline nlohmann::json plan_to_json(const Plan& p) {
  nlohmann::json steps = nlohmann::json::array();
  for (std::size_t i = 0; i < p.steps.size(); ++i) {
    const Step& s = p.steps[i];
    nlohmann::json js = {{"op", name_of(s.op)}, {"axes", s.axes}, {"dims", s.dims},
                         {"out_type", s.out.to_string()},
                         {"out_local_bytes", s.out.max_local_bytes(p.mesh)}};
    if (i < p.stats.step_bytes_recv_max.size()) js["bytes_recv"] = p.stats.step_bytes_recv_max[i];
    if (s.op == Op::local) js["kind"] = s.local_kind == LocalKind::make_partial ? "make_partial" : "relabel";
    steps.push_back(std::move(js));
  }
  nlohmann::json j = {{"mesh", p.mesh.to_string()},
                      {"from", p.src.to_string()},
                      {"to", p.dst.to_string()},
                      {"strategy", p.strategy},
                      {"steps", steps},
                      {"src_local_bytes", p.stats.src_local_bytes},
                      {"dst_local_bytes", p.stats.dst_local_bytes},
                      {"max_intermediate_bytes", p.stats.max_intermediate_bytes},
                      {"bytes_recv_max", p.stats.bytes_recv_max},
                      {"workspace_bytes", p.stats.workspace_bytes},
                      {"estimated_time_s", p.stats.est_time_s},
                      {"notes", p.notes}};
  if (p.stats.lower_bound_bytes >= 0) {
    j["lower_bound_bytes"] = p.stats.lower_bound_bytes;
    j["ratio_to_lower_bound"] = p.stats.lower_bound_bytes
                                    ? static_cast<double>(p.stats.bytes_recv_max) / static_cast<double>(p.stats.lower_bound_bytes)
                                    : (p.stats.bytes_recv_max ? -1.0 : 1.0);
  }
  return j;
}

}  // namespace reshard::cli
