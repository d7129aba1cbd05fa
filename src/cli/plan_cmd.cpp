// `reshard plan`: synthesize, print (readable or JSON), optionally verify on the simulator.
#include <cstdio>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "xcommands.hpp"
#include "plan_json.hpp"
#include "plan_picture.hpp"
#include "reshard/error.hpp"
#include "reshard/simulate.hpp"
#include "reshard/synth.hpp"

namespace reshard::cli {

namespace {

// --svg FILE and --show (src/plan_picture): the mesh sizes they draw, checked before any output.
void check_pictures(const Mesh& mesh, const std::string& svg, bool show) {
  constexpr int kMaxShow = 64, kMaxSvg = 1024;
  const int n = mesh.num_devices();
  if (show && n > kMaxShow)
    throw Error(fmt::format("--show draws meshes of up to {} devices; {} has {} (use --svg)", kMaxShow, mesh, n));
  if (!svg.empty() && n > kMaxSvg)
    throw Error(fmt::format("--svg draws meshes of up to {} devices; {} has {}", kMaxSvg, mesh, n));
}

void write_pictures(const Plan& plan, const std::string& svg, bool show) {
  if (svg.empty() && !show) return;
  const picture::View view = picture::view_of(plan);
  if (show) fmt::print("\n{}", picture::to_text(view));
  if (!svg.empty()) {
    std::FILE* f = std::fopen(svg.c_str(), "w");
    if (!f) throw Error(fmt::format("--svg: cannot write {}", svg));
    const std::string text = picture::to_svg(view);
    const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
    if (std::fclose(f) != 0 || !ok) throw Error(fmt::format("--svg: cannot write {}", svg));
  }
}

struct PlanArgs {
  std::string mesh, from, to, topology, strategy = "reshard", svg;
  bool json = false, verify = false, show = false;
  XRunArgs x;  // --to-mesh, --batch, --memory-cap
};
}  // namespace

Runner add_plan_command(CLI::App& app) {
  auto args = std::make_shared<PlanArgs>();
  CLI::App* sub = app.add_subcommand("plan", "Synthesize a resharding plan and print it");
  sub->add_option("--mesh", args->mesh, "Device mesh, e.g. x=2,y=4 or x=2,y=2@4-7 (required unless --batch)");
  sub->add_option("--from", args->from, "Source type, e.g. f32[1024{x},64]");
  sub->add_option("--to", args->to, "Target type");
  add_cross_mesh_options(sub, args->x);
  sub->add_option("--topology", args->topology, "Per-axis links, e.g. tp=nvlink,dp=ib or tp=300,dp=25:5us");
  sub->add_option("--strategy", args->strategy, "reshard, naive, greedy_per_axis, dtensor or exchange");
  sub->add_flag("--json", args->json, "Print one JSON object");
  sub->add_flag("--verify", args->verify, "Execute the plan on a simulated mesh with real data");
  sub->add_option("--svg", args->svg, "Draw the blocks each device holds after every step into this SVG file");
  sub->add_flag("--show", args->show, "Print the blocks each device holds after every step (meshes up to 64 devices)");
  return [args] {
    if (!args->x.to_mesh.empty() || !args->x.batch.empty() || args->x.memory_cap) {
      XRunArgs x = args->x;
      x.mesh = args->mesh, x.from = args->from, x.to = args->to, x.json = args->json, x.verify = args->verify;
      return plan_cross(x);
    }
    if (args->mesh.empty() || args->from.empty() || args->to.empty())
      throw Error("plan: --mesh, --from and --to are required (or --batch FILE)");
    Mesh mesh = Mesh::parse(args->mesh);
    check_pictures(mesh, args->svg, args->show);
    Type src = Type::parse(args->from, mesh), dst = Type::parse(args->to, mesh);
    SynthOptions opts;
    opts.strategy = strategy_from_name(args->strategy);
    if (!args->topology.empty()) opts.topology = Topology::parse(args->topology, mesh);
    Plan plan = synthesize(mesh, src, dst, opts);
    SynthOptions naive_opts = opts;
    naive_opts.strategy = Strategy::naive;
    Plan naive = synthesize(mesh, src, dst, naive_opts);
    SimResult sim;
    if (args->verify) sim = simulate(plan);
    if (args->json) {
      nlohmann::json j = plan_to_json(plan);
      j["naive"] = {{"bytes_recv_max", naive.stats.bytes_recv_max},
                    {"max_intermediate_bytes", naive.stats.max_intermediate_bytes},
                    {"steps", naive.steps.size()}};
      if (args->verify) {
        j["verified"] = sim.ok;
        if (!sim.ok) j["verify_error"] = sim.error;
      }
      fmt::print("{}\n", j.dump(2));
    } else {
      fmt::print("{}", plan);
      fmt::print("  naive plan (gather all, slice): received {} B, largest local array {} B, {} steps\n",
                 naive.stats.bytes_recv_max, naive.stats.max_intermediate_bytes, naive.steps.size());
      if (args->verify)
        fmt::print("  verified on the simulator: {}\n", sim.ok ? "yes" : "NO: " + sim.error);
    }
    write_pictures(plan, args->svg, args->show);
    if (args->verify && !sim.ok) {
      fmt::print(stderr, "reshard plan: verification failed: {}\n", sim.error);
      return 1;
    }
    return 0;
  };
}

}  // namespace reshard::cli
