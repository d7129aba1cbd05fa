// `reshard exec` (docs/auto.md): run the assignment `reshard auto` chooses on real MPI ranks.
// Inputs and params are filled deterministically (compute.hpp), every op runs on this rank's
// local blocks with host kernels, the reshards between ops go through the public Context API,
// and the outputs, gathered to every rank, are checked on rank 0 against a single-process run.
// Prints predicted against measured time (per forward pass, max across ranks, median of --iters).
//
// Every rank parses and searches the same program (the search is deterministic); any error
// before the ranks agree is printed and ends every rank (MPI_Abort), so none waits forever.
#include "commands.hpp"

#if defined(RESHARD_AUTO_EXEC_MPI) && RESHARD_AUTO_EXEC_MPI
#include <fmt/format.h>

#include "auto_options.hpp"
#include "../bench/mpi_session.hpp"
#include "../bench/mpi_timing.hpp"
#include "reshard/auto/compute.hpp"
#include "reshard/context.hpp"

namespace reshard::cli {

using namespace reshard::bench;  // the MPI session and timing shared with `reshard bench`

namespace {

struct ExecArgs {
  AutoArgs a;
  int iters = 3;
  double tolerance = 1e-4;
};

// Host kernels compute in f32: the program's dtypes are replaced (the search's byte counts then
// are those of the f32 program).
automap::Program as_f32(automap::Program p, bool& changed) {
  changed = false;
  for (automap::Tensor& t : p.tensors) {
    changed = changed || t.dtype != DType::f32;
    t.dtype = DType::f32;
    if (t.fixed) t.fixed->dtype = DType::f32;
  }
  return p;
}

automap::Array moved(Context& ctx, const automap::Array& local, const Type& from, const Type& to) {
  if (from == to) return local;
  automap::Array out;
  out.shape = to.local_shape(ctx.mesh(), ctx.device());
  out.data.assign(static_cast<std::size_t>(ctx.local_elements(to)), 0.0f);
  auto plan = ctx.plan(from, to);
  ctx.reshard(*plan, local.data.data(), local.data.size() * sizeof(float), out.data.data(),
              out.data.size() * sizeof(float));
  return out;
}

// One forward pass on this rank's blocks; returns the outputs, each in its output type.
std::vector<automap::Array> forward(Context& ctx, const automap::Program& p, const automap::Assignment& a,
                                    const std::vector<automap::Array>& leaves) {
  std::vector<automap::Array> v = leaves;
  const Mesh& m = ctx.mesh();
  for (std::size_t k = 0; k < p.ops.size(); ++k) {
    const automap::Operation& op = p.ops[k];
    std::vector<automap::Array> args;
    for (std::size_t i = 0; i < op.args.size(); ++i)
      args.push_back(moved(ctx, v[op.args[i]], a.types[op.args[i]], a.ops[k].args[i]));
    std::vector<const automap::Array*> ptrs;
    for (auto& x : args) ptrs.push_back(&x);
    automap::Array r = automap::run_op(op, ptrs, a.ops[k].out.local_shape(m, ctx.device()));
    v[op.out] = moved(ctx, r, a.ops[k].out, a.types[op.out]);
    for (int x : op.args)  // free what no later op reads
      if (p.last_use(x) == static_cast<int>(k) && p.tensors[x].role == automap::Role::value) v[x] = {};
  }
  std::vector<automap::Array> outs;
  for (std::size_t j = 0; j < p.outputs.size(); ++j)
    outs.push_back(moved(ctx, v[p.outputs[j]], a.types[p.outputs[j]], a.output_types[j]));
  return outs;
}

}  // namespace

Runner add_exec_command(CLI::App& app) {
  auto args = std::make_shared<ExecArgs>();
  CLI::App* sub = app.add_subcommand("exec", "Run a program's chosen sharding under mpirun and check its outputs");
  add_auto_options(sub, args->a);
  sub->add_option("--iters", args->iters, "Timed forward passes after the first (default 3)");
  sub->add_option("--tolerance", args->tolerance, "Largest relative error accepted (default 1e-4)");
  return [args] {
    yield_when_oversubscribed();
    MpiSession mpi;
    AutoInputs in;
    automap::Assignment a;
    bool converted = false;
    try {
      if (args->iters < 0 || args->iters > 100000) throw Error("--iters must be between 0 and 100000");
      if (!(args->tolerance > 0)) throw Error("--tolerance must be positive");
      in = load_auto_inputs(args->a);
      in.program = as_f32(std::move(in.program), converted);
      if (in.program.mesh.num_devices() > mpi.size())
        throw MismatchError(fmt::format("the mesh {} has {} devices but mpirun started {} ranks", in.program.mesh,
                                        in.program.mesh.num_devices(), mpi.size()));
      a = automap::search(in.program, in.opts);
    } catch (const std::exception& e) {
      abort_all("exec", mpi.rank(), e.what());
    }
    const automap::Program& p = in.program;
    SynthOptions so;
    so.topology = in.opts.topology;
    Context ctx(p.mesh, MPI_COMM_WORLD, so);
    if (!ctx.participates()) return 0;  // ranks beyond the mesh take no part
    try {
      std::vector<automap::Array> leaves(p.tensors.size());
      for (std::size_t t = 0; t < p.tensors.size(); ++t)
        if (p.tensors[t].role != automap::Role::value)
          leaves[t] = automap::fill_box(p, static_cast<int>(t), ctx.local_block(a.types[t]));
      std::vector<automap::Array> outs;
      auto once = [&] { outs = forward(ctx, p, a, leaves); };
      TimeStats first = stats_of(time_iterations(ctx.comm(), 1, once));
      TimeStats timed = args->iters > 0 ? stats_of(time_iterations(ctx.comm(), args->iters, once)) : first;
      // Every rank gathers each output whole; rank 0 compares with the single-process run.
      std::vector<automap::Array> whole;
      for (std::size_t j = 0; j < p.outputs.size(); ++j) {
        Type rep = p.tensors[p.outputs[j]].replicated();
        whole.push_back(moved(ctx, outs[j], a.output_types[j], rep));
      }
      double worst = 0;
      nlohmann::json errs = nlohmann::json::object();
      if (ctx.device() == 0) {
        std::vector<automap::Array> ref = automap::reference(p);
        for (std::size_t j = 0; j < p.outputs.size(); ++j) {
          double e = automap::relative_error(whole[j], ref[p.outputs[j]]);
          worst = std::max(worst, e);
          errs[p.tensors[p.outputs[j]].name] = e;
        }
      }
      if (auto armed = watched(ctx.comm(), "MPI_Bcast"); MPI_Bcast(&worst, 1, MPI_DOUBLE, 0, ctx.comm()) != MPI_SUCCESS)
        throw Error("MPI_Bcast failed");
      const bool ok = worst < args->tolerance;
      if (ctx.device() == 0) {
        if (args->a.json) {
          nlohmann::json j = assignment_to_json(p, a);
          j["ranks"] = p.mesh.num_devices();
          j["measured_time_s"] = timed.median_s;
          j["first_pass_s"] = first.median_s;
          j["iters"] = timed.iters;
          j["relative_error"] = errs;
          j["max_relative_error"] = worst;
          j["tolerance"] = args->tolerance;
          j["matches_single_process"] = ok;
          j["computed_in_f32"] = converted;
          fmt::print("{}\n", j.dump(2));
        } else {
          fmt::print("{}", automap::to_string(p, a));
          if (converted) fmt::print("note: the host kernels compute in f32; the program's dtypes were replaced\n");
          fmt::print("exec on {} ranks: predicted {:.4g} s, measured {:.4g} s per pass (median of {}, max across "
                     "ranks; first pass {:.4g} s)\n",
                     p.mesh.num_devices(), a.predicted_time_s, timed.median_s, timed.iters, first.median_s);
          fmt::print("outputs against a single-process run: max relative error {:.3g} ({} tolerance {:.1g})\n", worst,
                     ok ? "within" : "OVER", args->tolerance);
        }
      }
      if (!ok) {
        if (ctx.device() == 0)
          fmt::print(stderr, "reshard exec: outputs differ from the single-process run (relative error {:.3g})\n", worst);
        return 1;
      }
      return 0;
    } catch (const std::exception& e) {
      abort_all("exec", mpi.rank(), e.what());
    }
  };
}

}  // namespace reshard::cli

#else

namespace reshard::cli {
Runner add_exec_command(CLI::App& app) {
  return unavailable(app, "exec", "runs programs over MPI; this build has no MPI runtime (reshard_mpi)");
}
}  // namespace reshard::cli

#endif
