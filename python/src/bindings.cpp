// reshard._core: the C++ API seen from Python (docs/python.md). Mesh, Type and Plan are values;
// _Context wraps reshard::Context (MPI). The Pythonic surface (reshard.Context, interop) is
// pure Python on top of these names.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/string_view.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include "arrays.hpp"
#include "plan_json.hpp"
#include "reshard/error.hpp"
#include "reshard/simulate.hpp"
#include "reshard/synth.hpp"
#include "reshard/version.hpp"
#ifdef RESHARD_PYTHON_MPI
#include <algorithm>

#include <mpi.h>

#include "reshard/context.hpp"
#endif

namespace nb = nanobind;
using namespace nb::literals;

namespace reshard::python {
namespace {

// Exception classes, created once at import: Error(RuntimeError), ParseError(Error, ValueError),
// MismatchError(Error, ValueError).
PyObject* g_error = nullptr;
PyObject* g_parse_error = nullptr;
PyObject* g_mismatch_error = nullptr;

void raise_parse_error(const ParseError& e) {
  nb::object inst = nb::steal(PyObject_CallFunction(g_parse_error, "s", e.what()));
  if (!inst.is_valid()) return;  // the Python error from the call stays set
  inst.attr("position") = e.position();
  inst.attr("text") = e.text();
  PyErr_SetObject(g_parse_error, inst.ptr());
}

void translate(const std::exception_ptr& p, void*) {
  try {
    std::rethrow_exception(p);
  } catch (const ParseError& e) {
    raise_parse_error(e);
  } catch (const MismatchError& e) {
    PyErr_SetString(g_mismatch_error, e.what());
  } catch (const Error& e) {
    PyErr_SetString(g_error, e.what());
  }
}

// A Type with the mesh it was checked against: what Python calls reshard.Type. Immutable.
struct MeshType {
  Type type;
  Mesh mesh;
  std::string text;  // type.to_string(), kept for str() and hashing

  MeshType(Type t, Mesh m) : type(std::move(t)), mesh(std::move(m)), text(type.to_string()) {}
  bool operator==(const MeshType& o) const { return type == o.type && mesh == o.mesh; }
};

MeshType parse_type(std::string_view text, const Mesh& mesh) {
  try {
    return MeshType(Type::parse(text, mesh), mesh);
  } catch (const ParseError&) {
    throw;
  } catch (const Error& e) {
    // Semantic errors found after parsing (axis not in the mesh, used twice) are errors in the
    // text too: Python sees one ValueError kind with a position for all of them.
    throw ParseError(e.what(), std::string(text), 0);
  }
}

std::vector<std::pair<std::int64_t, std::int64_t>> intervals(const Box& b) {
  std::vector<std::pair<std::int64_t, std::int64_t>> r;
  r.reserve(b.dims.size());
  for (const Interval& i : b.dims) r.emplace_back(i.lo, i.hi);
  return r;
}

nb::tuple shape_tuple(const std::vector<std::int64_t>& s) {
  nb::list l;
  for (std::int64_t e : s) l.append(e);
  return nb::tuple(l);
}

// A plan with what Python asks of it: the naive plan's figures (for str() and stats, as the
// CLI prints them), computed on first use.
struct PlanHandle {
  std::shared_ptr<const Plan> plan;
  SynthOptions opts;
  std::optional<Plan> naive;
  std::optional<SimResult> sim;

  const Plan& naive_plan() {
    if (!naive) {
      SynthOptions o = opts;
      o.strategy = Strategy::naive;
      naive = synthesize(plan->mesh, plan->src, plan->dst, o);
    }
    return *naive;
  }
  nlohmann::json json() {
    nlohmann::json j = cli::plan_to_json(*plan);
    const Plan& n = naive_plan();
    j["naive"] = {{"bytes_recv_max", n.stats.bytes_recv_max},
                  {"max_intermediate_bytes", n.stats.max_intermediate_bytes},
                  {"steps", n.steps.size()}};
    if (sim) {
      j["verified"] = sim->ok;
      if (!sim->ok) j["verify_error"] = sim->error;
    }
    return j;
  }
  std::string str() {
    const Plan& n = naive_plan();
    std::string s = fmt::format("{}", *plan);
    s += fmt::format("  naive plan (gather all, slice): received {} B, largest local array {} B, {} steps\n",
                     n.stats.bytes_recv_max, n.stats.max_intermediate_bytes, n.steps.size());
    if (sim) s += fmt::format("  verified on the simulator: {}\n", sim->ok ? "yes" : "NO: " + sim->error);
    return s;
  }
};

nb::object json_to_python(const nlohmann::json& j) {
  return nb::module_::import_("json").attr("loads")(j.dump());
}

SynthOptions make_options(const std::string& topology, const std::string& strategy) {
  SynthOptions o;
  o.strategy = strategy_from_name(strategy);
  if (!topology.empty()) o.topology = Topology::parse(topology);
  return o;
}

void check_same_mesh(const Mesh& mesh, const MeshType& t, const char* what) {
  if (!(t.mesh == mesh))
    throw MismatchError(fmt::format("the {} type {} lives on mesh {}, not on mesh {}", what, t.text, t.mesh, mesh));
}

PlanHandle make_plan(const Mesh& mesh, const MeshType& src, const MeshType& dst, const std::string& topology,
                 const std::string& strategy, bool verify) {
  check_same_mesh(mesh, src, "source");
  check_same_mesh(mesh, dst, "target");
  PlanHandle p;
  p.opts = make_options(topology, strategy);
  p.plan = std::make_shared<const Plan>(synthesize(mesh, src.type, dst.type, p.opts));
  if (verify) p.sim = simulate(*p.plan);
  return p;
}

#ifdef RESHARD_PYTHON_MPI
bool g_we_initialized_mpi = false;

bool mpi_finalized() {
  int f = 0;
  MPI_Finalized(&f);
  return f != 0;
}

// Initialises MPI if nobody has (mpi4py does when imported first). Returns whether it did.
bool mpi_init() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) return false;
  if (mpi_finalized()) throw Error("MPI was already finalized; reshard cannot start it again");
  int provided = 0;
  if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
    throw Error("MPI_Init_thread failed");
  g_we_initialized_mpi = true;
  return true;
}

// The reshard::Context behind reshard.Context, with a small cache of the plans of recent
// calls found by comparing types (the Context's own cache formats a key per lookup).
class ContextHandle {
 public:
  ContextHandle(const Mesh& mesh, std::uintptr_t comm_address, const std::string& topology, const std::string& strategy,
            std::optional<double> timeout_s, bool check_every_call)
      : opts_(make_options(topology, strategy)), check_every_call_(check_every_call) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized || mpi_finalized()) throw Error("reshard.Context needs MPI to be initialised (and not finalized)");
    MPI_Comm comm = comm_address ? *reinterpret_cast<MPI_Comm*>(comm_address) : MPI_COMM_WORLD;
    if (comm == MPI_COMM_NULL) throw Error("reshard.Context: the communicator is MPI_COMM_NULL");
    ExecOptions exec;
    exec.check_every_call = check_every_call;
    if (timeout_s) exec.timeout_s = *timeout_s;
    nb::gil_scoped_release release;  // collective: other Python threads may run meanwhile
    ctx_ = std::make_unique<Context>(mesh, comm, opts_, exec);
  }
  ~ContextHandle() { close(); }

  // Frees the group communicators (collective over the participants). After MPI_Finalize the
  // handles are dead: the Context is then left unfreed rather than touching MPI again.
  void close() {
    if (!ctx_) return;
    if (mpi_finalized()) {
      (void)ctx_.release();
      return;
    }
    ctx_.reset();
  }

  bool closed() const { return !ctx_; }
  Context& ctx() {
    if (!ctx_) throw Error("this reshard.Context is closed");
    return *ctx_;
  }

  const Mesh& mesh() { return ctx().mesh(); }

  std::shared_ptr<const Plan> plan_for(const MeshType& src, const MeshType& dst) {
    const Mesh& m = mesh();
    if (src.mesh == m && dst.mesh == m)
      for (const Recent& r : recent_)
        if (r.plan->src == src.type && r.plan->dst == dst.type) return r.plan;
    check_same_mesh(m, src, "source");
    check_same_mesh(m, dst, "target");
    auto p = ctx().plan(src.type, dst.type);
    if (recent_.size() >= 16) recent_.pop_back();
    recent_.insert(recent_.begin(), Recent{p});
    return p;
  }

  // Checks both arrays against the plan's types on this rank, then runs it (collective).
  void run(const Plan& plan, const ArrayRef& in, const ArrayRef& out) {
    Context& c = ctx();
    const int dev = c.device();
    std::vector<std::int64_t> src_shape, dst_shape;
    if (dev >= 0) {
      src_shape = plan.src.local_shape(c.mesh(), dev);
      dst_shape = plan.dst.local_shape(c.mesh(), dev);
    } else {
      src_shape.assign(plan.src.dims.size(), 0);
      dst_shape.assign(plan.dst.dims.size(), 0);
    }
    Shard a, b;
    std::string err;
    try {
      a = check_shard("input", in.dtype, in.ndim, in.shape, in.data, plan.src, src_shape);
      b = check_shard("output", out.dtype, out.ndim, out.shape, out.data, plan.dst, dst_shape);
    } catch (const MismatchError& e) {
      err = e.what();
    }
    nb::gil_scoped_release release;
    if (!err.empty()) {
      // The other devices are about to check, collectively, that all agree on the plan: join
      // that check with this device's error, so that every device raises instead of waiting.
      if (c.participates() && check_every_call_)
        check_agreement(c.communicator()->world(), "the plan", 0, "a call with a bad array", err);
      throw MismatchError(err);
    }
    c.reshard(plan, a.data, a.bytes, const_cast<void*>(b.data), b.bytes);
  }

  // Any array kind: the buffer protocol when both arrays export a C-contiguous one (NumPy),
  // else nanobind's ndarray (DLPack; a non-contiguous input is copied first).
  void run_any(const Plan& plan, nb::handle in, nb::handle out) {
    BufferView bi, bo;
    if (bi.acquire(in.ptr(), false) && bo.acquire(out.ptr(), true)) return run(plan, bi.ref(), bo.ref());
    InArray a;
    OutArray b;
    if (!nb::try_cast(in, a, true))
      throw MismatchError(fmt::format("the input ({}) is not a host array (buffer protocol or DLPack)",
                                      nb::inst_name(in).c_str()));
    if (!nb::try_cast(out, b, false))
      throw MismatchError(fmt::format("the output ({}) is not a writable, C-contiguous host array",
                                      nb::inst_name(out).c_str()));
    run(plan, ArrayRef{a.dtype(), a.ndim(), a.shape_ptr(), a.data()},
        ArrayRef{b.dtype(), b.ndim(), b.shape_ptr(), b.data()});
  }

  std::vector<std::int64_t> local_shape(const MeshType& t) {
    Context& c = ctx();
    check_same_mesh(c.mesh(), t, "");
    if (!c.participates()) return std::vector<std::int64_t>(t.type.dims.size(), 0);
    return t.type.local_shape(c.mesh(), c.device());
  }

  SynthOptions opts_;

 private:
  bool check_every_call_ = true;
  struct Recent {
    std::shared_ptr<const Plan> plan;
  };
  std::unique_ptr<Context> ctx_;
  std::vector<Recent> recent_;
};
#endif

}  // namespace
}  // namespace reshard::python

NB_MODULE(_core, m) {
  using namespace reshard;
  using namespace reshard::python;
  m.doc() = "reshard's C++ core: meshes, types, plans and the MPI context (see the reshard package)";
  m.attr("__version__") = reshard::version;  // project(reshard VERSION ...), as `reshard --version`
#ifdef RESHARD_PYTHON_MPI
  m.attr("has_mpi") = true;
#else
  m.attr("has_mpi") = false;
#endif

  g_error = PyErr_NewExceptionWithDoc("reshard.Error", "Base class of every error reshard raises.",
                                      PyExc_RuntimeError, nullptr);
  nb::object parse_bases = nb::make_tuple(nb::handle(g_error), nb::handle(PyExc_ValueError));
  g_parse_error = PyErr_NewExceptionWithDoc(
      "reshard.ParseError", "Malformed or invalid text; .position is the 0-based offset in .text.",
      parse_bases.ptr(), nullptr);
  nb::object mismatch_bases = nb::make_tuple(nb::handle(g_error), nb::handle(PyExc_ValueError));
  g_mismatch_error = PyErr_NewExceptionWithDoc(
      "reshard.MismatchError",
      "Things that do not fit together: source and target types, a type and a mesh, an array and a type.",
      mismatch_bases.ptr(), nullptr);
  m.attr("Error") = nb::handle(g_error);
  m.attr("ParseError") = nb::handle(g_parse_error);
  m.attr("MismatchError") = nb::handle(g_mismatch_error);
  nb::register_exception_translator(translate);

  nb::class_<Mesh>(m, "Mesh", "A named device mesh, e.g. Mesh('x=2,y=4'); devices numbered row-major.")
      .def("__init__", [](Mesh* self, std::string_view text) { new (self) Mesh(Mesh::parse(text)); }, "text"_a,
           "Parses mesh text; raises ParseError (a ValueError) naming the problem and position.")
      .def_prop_ro("axes",
                   [](const Mesh& me) {
                     std::vector<std::pair<std::string, int>> r;
                     for (const Axis& a : me.axes()) r.emplace_back(a.name, a.size);
                     return r;
                   },
                   "(name, size) per axis, major first.")
      .def_prop_ro("axis_names",
                   [](const Mesh& me) {
                     std::vector<std::string> r;
                     for (const Axis& a : me.axes()) r.push_back(a.name);
                     return r;
                   })
      .def_prop_ro("shape",
                   [](const Mesh& me) {
                     std::vector<std::int64_t> s;
                     for (const Axis& a : me.axes()) s.push_back(a.size);
                     return shape_tuple(s);
                   })
      .def_prop_ro("num_devices", &Mesh::num_devices)
      .def("axis_size", &Mesh::axis_size, "name"_a)
      .def("axis_index", &Mesh::axis_index, "name"_a, "Index of the axis, or -1.")
      .def("coords",
           [](const Mesh& me, int device) {
             if (device < 0 || device >= me.num_devices())
               throw Error(fmt::format("device {} is not a device of mesh {}", device, me));
             std::vector<std::int64_t> c;
             for (int a = 0; a < me.num_axes(); ++a) c.push_back(me.coord(device, a));
             return shape_tuple(c);
           },
           "device"_a, "The device's coordinate on every axis.")
      .def("__str__", &Mesh::to_string)
      .def("__repr__", [](const Mesh& me) { return fmt::format("reshard.Mesh('{}')", me); })
      .def("__eq__", [](const Mesh& a, const Mesh& b) { return a == b; }, nb::is_operator())
      .def("__ne__", [](const Mesh& a, const Mesh& b) { return !(a == b); }, nb::is_operator())
      .def("__hash__", [](const Mesh& me) { return nb::hash(nb::str(me.to_string().c_str())); });

  nb::class_<MeshType>(m, "Type", "A distributed array type on a mesh, e.g. Type('f32[30{x,y},7]', mesh).")
      .def("__init__", [](MeshType* self, std::string_view text, const Mesh& mesh) { new (self) MeshType(parse_type(text, mesh)); },
           "text"_a, "mesh"_a,
           "Parses and checks the type on the mesh; raises ParseError (a ValueError) with the position.")
      .def_prop_ro("mesh", [](const MeshType& t) { return t.mesh; })
      .def_prop_ro("dtype", [](const MeshType& t) { return std::string(name_of(t.type.dtype)); })
      .def_prop_ro("itemsize", [](const MeshType& t) { return size_of(t.type.dtype); })
      .def_prop_ro("shape", [](const MeshType& t) { return shape_tuple(t.type.global_shape()); }, "The global shape.")
      .def_prop_ro("ndim", [](const MeshType& t) { return t.type.rank(); })
      .def_prop_ro("dim_axes",
                   [](const MeshType& t) {
                     std::vector<std::vector<std::string>> r;
                     for (const Dim& d : t.type.dims) r.push_back(d.axes);
                     return r;
                   },
                   "The axes splitting each dim, major to minor.")
      .def_prop_ro("reduce_op",
                   [](const MeshType& t) -> std::optional<std::string> {
                     if (t.type.op == ReduceOp::none) return std::nullopt;
                     return std::string(name_of(t.type.op));
                   },
                   "'sum', 'max', 'min', 'prod' for a pending reduction, else None.")
      .def_prop_ro("reduce_axes", [](const MeshType& t) { return t.type.reduce_axes; })
      .def("block", [](const MeshType& t, int device) {
             if (device < 0 || device >= t.mesh.num_devices())
               throw Error(fmt::format("device {} is not a device of mesh {}", device, t.mesh));
             return intervals(t.type.block(t.mesh, device));
           },
           "device"_a, "The global block (lo, hi) per dim that the device holds.")
      .def("local_shape",
           [](const MeshType& t, int device) {
             if (device < 0 || device >= t.mesh.num_devices())
               throw Error(fmt::format("device {} is not a device of mesh {}", device, t.mesh));
             return shape_tuple(t.type.local_shape(t.mesh, device));
           },
           "device"_a)
      .def_prop_ro("max_local_bytes", [](const MeshType& t) { return t.type.max_local_bytes(t.mesh); })
      .def("__str__", [](const MeshType& t) { return t.text; })
      .def("__repr__", [](const MeshType& t) { return fmt::format("reshard.Type('{}', reshard.Mesh('{}'))", t.text, t.mesh); })
      .def("__eq__", [](const MeshType& a, const MeshType& b) { return a == b; }, nb::is_operator())
      .def("__ne__", [](const MeshType& a, const MeshType& b) { return !(a == b); }, nb::is_operator())
      .def("__hash__", [](const MeshType& t) { return nb::hash(nb::str((t.text + "@" + t.mesh.to_string()).c_str())); });

  nb::class_<PlanHandle>(m, "Plan", "A plan of typed steps from a source type to a target type.")
      .def_prop_ro("mesh", [](const PlanHandle& p) { return p.plan->mesh; })
      .def_prop_ro("src", [](const PlanHandle& p) { return MeshType(p.plan->src, p.plan->mesh); })
      .def_prop_ro("dst", [](const PlanHandle& p) { return MeshType(p.plan->dst, p.plan->mesh); })
      .def_prop_ro("strategy", [](const PlanHandle& p) { return p.plan->strategy; })
      .def_prop_ro("notes", [](const PlanHandle& p) { return p.plan->notes; })
      .def_prop_ro("steps", [](PlanHandle& p) { return json_to_python(p.json()["steps"]); },
                   "One dict per step: op, axes, dims, out_type, out_local_bytes, bytes_recv (and kind).")
      .def_prop_ro("stats",
                   [](PlanHandle& p) {
                     nlohmann::json j = p.json();
                     for (const char* k : {"mesh", "from", "to", "strategy", "steps", "notes"}) j.erase(k);
                     return json_to_python(j);
                   },
                   "Every figure of `reshard plan --json` (bytes, lower bound, naive plan, verified).")
      .def_prop_ro("verified",
                   [](const PlanHandle& p) -> std::optional<bool> {
                     if (!p.sim) return std::nullopt;
                     return p.sim->ok;
                   })
      .def("to_json", [](PlanHandle& p, int indent) { return p.json().dump(indent); }, "indent"_a = 2,
           "The JSON object `reshard plan --json` prints.")
      .def("__str__", [](PlanHandle& p) { return p.str(); })
      .def("__repr__", [](const PlanHandle& p) {
        return fmt::format("<reshard.Plan {} -> {} on {}: {} steps>", p.plan->src, p.plan->dst, p.plan->mesh,
                           p.plan->steps.size());
      });

  m.def("plan", &make_plan, "mesh"_a, "src"_a, "dst"_a, "topology"_a = "", "strategy"_a = "reshard",
        "verify"_a = false, "Synthesizes a plan (symbolic, no communication).");

#ifdef RESHARD_PYTHON_MPI
  m.def("mpi_init", &mpi_init, "Initialises MPI if nobody has; returns whether this call did.");
  m.def("mpi_finalize", [] {
    if (g_we_initialized_mpi && !mpi_finalized()) MPI_Finalize();
  }, "Finalizes MPI if reshard initialised it.");
  m.def("mpi_initialized", [] {
    int i = 0;
    MPI_Initialized(&i);
    return i != 0 && !mpi_finalized();
  });
  m.def("world_rank", [] {
    int r = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &r);
    return r;
  });
  m.def("world_size", [] {
    int s = 0;
    MPI_Comm_size(MPI_COMM_WORLD, &s);
    return s;
  });

  nb::class_<ContextHandle>(m, "_Context")
      .def(nb::init<const Mesh&, std::uintptr_t, const std::string&, const std::string&, std::optional<double>, bool>(),
           "mesh"_a, "comm_address"_a, "topology"_a, "strategy"_a, "timeout_s"_a, "check_every_call"_a)
      .def("close", &ContextHandle::close)
      .def_prop_ro("closed", &ContextHandle::closed)
      .def_prop_ro("mesh", [](ContextHandle& c) { return c.mesh(); })
      .def_prop_ro("device", [](ContextHandle& c) { return c.ctx().device(); })
      .def_prop_ro("participates", [](ContextHandle& c) { return c.ctx().participates(); })
      .def("local_block", [](ContextHandle& c, const MeshType& t) {
             check_same_mesh(c.ctx().mesh(), t, "");
             return intervals(c.ctx().local_block(t.type));
           }, "type"_a)
      .def("local_shape", [](ContextHandle& c, const MeshType& t) { return shape_tuple(c.local_shape(t)); }, "type"_a)
      .def("plan",
           [](ContextHandle& c, const MeshType& src, const MeshType& dst) {
             PlanHandle p;
             p.plan = c.plan_for(src, dst);
             p.opts = c.opts_;
             return p;
           },
           "src"_a, "dst"_a)
      .def("reshard_into",
           [](ContextHandle& c, nb::handle in, nb::handle out, const MeshType& src, const MeshType& dst) {
             auto plan = c.plan_for(src, dst);
             c.run_any(*plan, in, out);
           },
           "x"_a, "out"_a, "src"_a, "dst"_a)
      .def("run", [](ContextHandle& c, const PlanHandle& p, nb::handle in, nb::handle out) {
             check_same_mesh(c.mesh(), MeshType(p.plan->src, p.plan->mesh), "plan's");
             c.run_any(*p.plan, in, out);
           }, "plan"_a, "x"_a, "out"_a)
      .def("fill_index", [](ContextHandle& c, const MeshType& t, OutArray& out) {
             auto shape = c.local_shape(t);
             Shard s = check_shard("output", out.dtype(), out.ndim(), out.shape_ptr(), out.data(), t.type, shape);
             (void)s;
             c.ctx().fill_index(t.type, out.data());
           }, "type"_a, "out"_a.noconvert())
      .def("count_index_mismatches",
           [](ContextHandle& c, const MeshType& t, const InArray& x, std::optional<MeshType> source) {
             auto shape = c.local_shape(t);
             Shard s = check_shard("input", x.dtype(), x.ndim(), x.shape_ptr(), x.data(), t.type, shape);
             nb::gil_scoped_release release;
             return c.ctx().count_index_mismatches(t.type, s.data, s.bytes, source ? &source->type : nullptr);
           },
           "type"_a, "x"_a, "source"_a = nb::none())
      .def("explain", [](ContextHandle& c, const PlanHandle& p) {
             Executor* e = c.ctx().executor();
             return e ? e->explain(*p.plan) : std::string();
           }, "plan"_a)
      .def("workspace_bytes", [](ContextHandle& c, const PlanHandle& p) -> std::int64_t {
             Executor* e = c.ctx().executor();
             return e ? e->workspace_bytes(*p.plan) : 0;
           }, "plan"_a)
      // The baseline of the Python benchmark (python/benchmarks/overhead.py): the same call
      // from C++, as a C++ program makes it (a plan held, then Context::reshard), timed in C++.
      // barrier: each call starts after an MPI_Barrier and counts the slowest rank (as `reshard
      // run` times); else one batch of `iters` calls, per call. Collective.
      .def("_time_cpp_calls",
           [](ContextHandle& c, const InArray& in, OutArray& out, const MeshType& src, const MeshType& dst, int iters,
              bool barrier) {
             Context& ctx = c.ctx();
             auto plan = c.plan_for(src, dst);
             c.run(*plan, ArrayRef{in.dtype(), in.ndim(), in.shape_ptr(), in.data()},
                   ArrayRef{out.dtype(), out.ndim(), out.shape_ptr(), out.data()});  // checks the arrays once
             const std::size_t ib = in.nbytes(), ob = out.nbytes();
             std::vector<double> times;
             nb::gil_scoped_release release;
             MPI_Comm comm = ctx.comm();
             if (comm == MPI_COMM_NULL) return times;
             auto now = [] { return MPI_Wtime(); };
             if (!barrier) {
               MPI_Barrier(comm);
               double t0 = now();
               for (int i = 0; i < iters; ++i) ctx.reshard(*plan, in.data(), ib, out.data(), ob);
               double dt = (now() - t0) / std::max(1, iters), slowest = 0;
               MPI_Allreduce(&dt, &slowest, 1, MPI_DOUBLE, MPI_MAX, comm);
               times.push_back(slowest);
               return times;
             }
             for (int i = 0; i < iters; ++i) {
               MPI_Barrier(comm);
               double t0 = now();
               ctx.reshard(*plan, in.data(), ib, out.data(), ob);
               double dt = now() - t0, slowest = 0;
               MPI_Allreduce(&dt, &slowest, 1, MPI_DOUBLE, MPI_MAX, comm);
               times.push_back(slowest);
             }
             return times;
           },
           "x"_a, "out"_a.noconvert(), "src"_a, "dst"_a, "iters"_a, "barrier"_a);
#endif
}
