// Automatic sharding (issue 16): the program parser and builder, the sharding rules against an
// in-process oracle, and the search's choices on the expert strategies it must recover.
#include <algorithm>
#include <fstream>
#include <random>
#include <sstream>

#include <catch2/catch.hpp>

#include "../random_types.hpp"
#include "reshard/auto/compute.hpp"
#include "reshard/auto/rules.hpp"
#include "reshard/auto/search.hpp"
#include "reshard/error.hpp"

using namespace reshard;
using namespace reshard::automap;

namespace {

std::string slurp(const std::string& name) {
  std::ifstream f(std::string(RESHARD_PROGRAMS_DIR) + "/" + name);
  REQUIRE(f.good());
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The message of the ParseError parse_program throws, or "" when it parses.
std::string parse_error(const std::string& text) {
  try {
    parse_program(text);
  } catch (const ParseError& e) {
    CHECK(e.position() <= text.size());
    return e.what();
  }
  return "";
}

const Type& type_of(const Program& p, const Assignment& a, const std::string& name) { return a.types[p.find(name)]; }

std::vector<std::string> axes_of(const Type& t, int d) { return t.dims[d].axes; }

// The communicating reshards of an assignment (a slice or a local step moves nothing).
std::vector<const ReshardChoice*> communicating(const Assignment& a) {
  std::vector<const ReshardChoice*> v;
  for (const ReshardChoice& r : a.reshards)
    for (const Step& s : r.plan->steps)
      if (s.communicates()) {
        v.push_back(&r);
        break;
      }
  return v;
}

const char* kMlpBig = R"(
mesh   dp=2,tp=4
input  x  : f32[8, 128, 1024]
param  w1 : f32[1024, 4096]
param  w2 : f32[4096, 1024]
h = einsum("bsh,hf->bsf", x, w1)
g = gelu(h)
y = einsum("bsf,fh->bsh", g, w2)
output y
)";

const char* kAttentionBig = R"(
mesh   dp=2,tp=4
input  x  : f32[8, 128, 1024]
param  wq : f32[1024, 1024]
param  wk : f32[1024, 1024]
param  wv : f32[1024, 1024]
param  wo : f32[1024, 1024]
q  = einsum("bsh,hd->bsd", x, wq)
k  = einsum("bsh,hd->bsd", x, wk)
v  = einsum("bsh,hd->bsd", x, wv)
qh = reshape(q, [8, 128, 16, 64])
kh = reshape(k, [8, 128, 16, 64])
vh = reshape(v, [8, 128, 16, 64])
s  = einsum("bqnd,bknd->bnqk", qh, kh)
p  = softmax(s, 3)
o  = einsum("bnqk,bknd->bqnd", p, vh)
o2 = reshape(o, [8, 128, 1024])
y  = einsum("bsd,dh->bsh", o2, wo)
output y
)";

SearchOptions nvlink_ib(std::int64_t cap) {
  SearchOptions o;
  o.topology = Topology::parse("tp=nvlink,dp=ib");  // tp inside a node, dp across nodes
  o.memory_limit_bytes = cap;
  return o;
}

}  // namespace

TEST_CASE("programs: the examples parse, print and parse back", "[auto][program]") {
  for (const char* name : {"mlp.prog", "attention.prog", "transformer2.prog"}) {
    Program p = parse_program(slurp(name));
    Program q = parse_program(p.to_string());
    CHECK(q.to_string() == p.to_string());
    CHECK(q.tensors.size() == p.tensors.size());
    CHECK(!p.outputs.empty());
    CHECK(fmt::format("{}", p) == p.to_string());
  }
  Program t = parse_program(slurp("transformer2.prog"));
  CHECK(t.ops.size() == 32);
  CHECK(t.tensor("x2").shape == std::vector<std::int64_t>{8, 32, 128});
  CHECK(t.tensor("s1").shape == std::vector<std::int64_t>{8, 8, 32, 32});
}

TEST_CASE("programs: the builder makes what the parser makes", "[auto][program]") {
  ProgramBuilder b(Mesh::parse("dp=2,tp=4"));
  b.input("x", "f32[16, 32, 128]").param("w1", "f32[128, 512]").param("w2", "f32[512, 128]");
  b.einsum("h", "bsh,hf->bsf", "x", "w1").gelu("g", "h").einsum("y", "bsf,fh->bsh", "g", "w2").output("y");
  CHECK(b.build().to_string() == parse_program(slurp("mlp.prog")).to_string());
  ProgramBuilder c(Mesh::parse("x=2"));
  c.input("a", "f32[4, 6]");
  CHECK_THROWS_WITH(c.einsum("b", "ij,jk->ik", "a", "a"), Catch::Contains("label 'j' has size 6"));
  CHECK_THROWS_WITH(c.reshape("r", "a", {5, 5}), Catch::Contains("24 elements"));
  CHECK_THROWS_WITH(c.transpose("t", "a", "00"), Catch::Contains("not a permutation"));
  CHECK_THROWS_WITH(c.gelu("a", "a"), Catch::Contains("already defined"));
  CHECK_THROWS_WITH(c.relu("r", "nope"), Catch::Contains("'nope' is not defined"));
  CHECK_THROWS_WITH(c.build(), Catch::Contains("no output"));
  c.sum("s", "a", -1).softmax("p", "a", 0).transpose("t", "a", "10").mul("m", "a", "a").output("s");
  Program p = c.build();
  CHECK(p.tensor("s").shape == std::vector<std::int64_t>{4});
  CHECK(p.tensor("t").shape == std::vector<std::int64_t>{6, 4});
  CHECK(p.ops[0].dim == 1);  // -1 is the last dim
}

TEST_CASE("programs: bad text is an error naming line and column", "[auto][program]") {
  const std::string head = "mesh x=2,y=2\ninput a : f32[4, 6]\n";
  struct Bad {
    std::string text, expect;
  };
  const Bad bad[] = {
      {head + "b = frob(a)\noutput b\n", "line 3, column 5: unknown operation 'frob'"},
      {head + "b = gelu(c)\noutput b\n", "line 3, column 10: 'c' is not defined"},
      {head + "b = einsum(\"ij,jk->ik\", a, a)\noutput b\n", "line 3, column 1: einsum 'ij,jk->ik': label 'j'"},
      {head + "b = einsum(\"ij->ij\", a, a)\noutput b\n", "line 3, column 12: einsum spec 'ij->ij' must name exactly two"},
      {head + "b = einsum(\"ii,ij->ij\", a, a)\noutput b\n", "repeats within one operand"},
      {head + "b = reshape(a, [5, 5])\noutput b\n", "line 3, column 1: reshape: 'a' of shape [4, 6] has 24 elements"},
      {head + "b = transpose(a, \"01x\")\noutput b\n", "line 3, column 19: the permutation must be digits"},
      {head + "b = softmax(a, 2)\noutput b\n", "dim 2 is out of range"},
      {head + "b = gelu(a) extra\noutput b\n", "line 3, column 13: unexpected 'e'"},
      {head + "b = gelu(a\noutput b\n", "line 3, column 11: expected ')'"},
      {head + "input a : f32[3]\noutput a\n", "line 3, column 7: tensor 'a' is already defined"},
      {head + "param w : f32[4{q}]\noutput a\n", "line 3, column 17: bad type"},
      {head + "param w : f32[4] sum{x}\noutput a\n", "cannot have a reduce clause"},
      {head + "output zz\n", "line 3, column 8: output 'zz' is not defined"},
      {head, "no output statement"},
      {"input a : f32[4]\noutput a\n", "line 1, column 11: a type before any mesh statement"},
      {"mesh x=0\n", "line 1, column 8: bad mesh"},
      {head + "b = add(a)\noutput b\n", "line 3, column 10: expected ','"},
      {head + "7 = gelu(a)\n", "line 3, column 1: expected a statement"},
      {head + "b = sum(a, 99999999999999999999)\n", "too large"},
  };
  for (const Bad& b : bad) {
    INFO(b.text);
    CHECK_THAT(parse_error(b.text), Catch::Contains(b.expect));
  }
  // --mesh overrides the program's mesh; types must fit it.
  CHECK(parse_program(head + "output a\n", Mesh::parse("x=4,y=1")).mesh.num_devices() == 4);
  CHECK_THAT(parse_error("mesh x=2\ninput a : f32[4{x}]\noutput a\n"), Catch::Equals(""));
  CHECK_THROWS_AS(parse_program("mesh x=2\ninput a : f32[4{x}]\noutput a\n", Mesh::parse("y=2")), ParseError);
}

namespace {

// Random small programs: an input, then a chain of ops over the tensors made so far (params for
// the einsums), on uneven sizes.
Program random_program(test::TypeGen& g, const Mesh& m) {
  for (;;) {
    try {
      ProgramBuilder b(m);
      auto n = [&](int lo, int hi) { return static_cast<std::int64_t>(g.uniform(lo, hi)); };
      std::int64_t B = n(1, 7), S = n(1, 5), H = n(2, 6);
      b.input("x", fmt::format("f32[{}, {}, {}]", B, S, H));
      std::vector<std::pair<std::string, std::vector<std::int64_t>>> live{{"x", {B, S, H}}};
      int ops = g.uniform(1, 6);
      for (int i = 0; i < ops; ++i) {
        auto [a, shape] = live[g.uniform(0, static_cast<int>(live.size()) - 1)];
        std::string out = fmt::format("t{}", i);
        int r = static_cast<int>(shape.size());
        std::vector<std::int64_t> res = shape;
        switch (g.uniform(0, 8)) {
          case 0:
          case 1: {  // contract the last dim with a param
            std::int64_t F = n(1, 6);
            std::string w = fmt::format("w{}", i);
            b.param(w, fmt::format("f32[{}, {}]", shape.back(), F));
            std::string lab = std::string("abcd").substr(0, r);
            b.einsum(out, fmt::format("{},{}z->{}z", lab, lab.back(), lab.substr(0, r - 1)), a, w);
            res.back() = F;
            break;
          }
          case 2: {  // a batched product of a tensor with itself (attention-like)
            if (r != 3) continue;
            b.einsum(out, "bqd,bkd->bqk", a, a);
            res = {shape[0], shape[1], shape[1]};
            break;
          }
          case 3: g.uniform(0, 1) ? b.gelu(out, a) : b.relu(out, a); break;
          case 4: {
            int d = g.uniform(0, r - 1);
            b.softmax(out, a, d);
            break;
          }
          case 5: {
            std::string other;
            for (auto& [nm, sh] : live)
              if (sh == shape && nm != a) other = nm;
            if (other.empty()) other = a;
            g.uniform(0, 1) ? b.add(out, a, other) : b.mul(out, a, other);
            break;
          }
          case 6: {
            if (r < 2) continue;
            int d = g.uniform(0, r - 1);
            b.sum(out, a, d);
            res.erase(res.begin() + d);
            break;
          }
          case 7: {
            std::string perm;
            std::vector<int> pv(r);
            for (int k = 0; k < r; ++k) pv[k] = k;
            std::shuffle(pv.begin(), pv.end(), std::mt19937(g.uniform(0, 1 << 20)));
            for (int k = 0; k < r; ++k) perm += static_cast<char>('0' + pv[k]), res[k] = shape[pv[k]];
            b.transpose(out, a, perm);
            break;
          }
          case 8: {  // merge the last two dims, or split the last one
            if (r >= 2 && g.uniform(0, 1)) {
              res.pop_back();
              res.back() = shape[r - 2] * shape[r - 1];
            } else {
              std::int64_t last = shape.back();
              std::int64_t f = last % 2 == 0 ? 2 : 1;
              res.back() = f;
              res.push_back(last / f);
            }
            b.reshape(out, a, res);
            break;
          }
        }
        live.push_back({out, res});
      }
      b.output(live.back().first);
      if (live.size() > 2 && g.uniform(0, 1)) b.output(live[live.size() - 2].first);
      return b.build();
    } catch (const Error&) {
      // a name clash or an einsum on a rank that does not fit: draw again
    }
  }
}

}  // namespace

TEST_CASE("rules: every local strategy gives the reference result (random programs, random choices)",
          "[auto][rules][property]") {
  test::TypeGen g(1601);
  int pending_results = 0, reshards = 0, programs = 0;
  for (int round = 0; round < 250; ++round) {
    Mesh m = g.mesh(12);
    Program p = random_program(g, m);
    std::vector<Array> ref = reference(p);
    // A random choice among the candidate strategies of every op.
    Assignment a;
    a.types.assign(p.tensors.size(), Type{});
    std::vector<bool> set(p.tensors.size(), false);
    for (const Operation& op : p.ops) {
      std::vector<std::optional<Type>> cur;
      for (int x : op.args) cur.push_back(set[x] ? std::optional<Type>(a.types[x]) : std::nullopt);
      auto st = strategies(p, op, cur);
      REQUIRE(!st.empty());
      const OpStrategy& s = st[g.uniform(0, static_cast<int>(st.size()) - 1)];
      for (std::size_t i = 0; i < op.args.size(); ++i) {
        int x = op.args[i];
        if (!set[x]) {
          auto store = storage_types(s.args[i], m);
          a.types[x] = p.tensors[x].role == Role::param ? store[g.uniform(0, static_cast<int>(store.size()) - 1)] : s.args[i];
          set[x] = true;
        }
        reshards += a.types[x] == s.args[i] ? 0 : 1;
      }
      REQUIRE(propagate(p, op, s.args) == s.out);
      a.ops.push_back(OpChoice{s.args, s.out, 0});
      a.types[op.out] = s.out;
      set[op.out] = true;
      pending_results += s.out.op != ReduceOp::none;
    }
    for (std::size_t t = 0; t < p.tensors.size(); ++t)
      if (!set[t]) a.types[t] = p.tensors[t].replicated();
    for (int o : p.outputs) {
      auto r = resolutions(a.types[o], m);
      a.output_types.push_back(r[g.uniform(0, static_cast<int>(r.size()) - 1)]);
    }
    auto got = run_virtual(p, a);
    for (std::size_t j = 0; j < p.outputs.size(); ++j) {
      INFO(p.to_string() << to_string(p, a));
      REQUIRE(relative_error(got[j], ref[p.outputs[j]]) < 1e-4);
    }
    ++programs;
  }
  CHECK(programs == 250);
  CHECK(pending_results > 20);  // the sweep does exercise pending sums flowing on
  CHECK(reshards > 20);
}

TEST_CASE("rules: propagate is exact wherever it accepts random argument types", "[auto][rules][property]") {
  test::TypeGen g(1602);
  int accepted = 0, rejected = 0;
  for (int round = 0; round < 400; ++round) {
    Mesh m = g.mesh(12);
    Program p = random_program(g, m);
    std::vector<Array> ref = reference(p);
    const Operation& op = p.ops[g.uniform(0, static_cast<int>(p.ops.size()) - 1)];
    std::vector<Type> args;
    for (int x : op.args) args.push_back(g.type(m, DType::f32, p.tensors[x].shape, ReduceOp::sum, true));
    if (op.args.size() == 2 && op.args[0] == op.args[1]) args[1] = args[0];
    if (g.uniform(0, 2) == 0 && op.args.size() == 2) args[1] = args[0];
    auto out = propagate(p, op, args);
    if (!out) {
      ++rejected;
      continue;
    }
    ++accepted;
    std::vector<Array> locals;
    for (int d = 0; d < m.num_devices(); ++d) {
      std::vector<Array> in;
      for (std::size_t i = 0; i < args.size(); ++i) in.push_back(cut(m, args[i], ref[op.args[i]], d));
      std::vector<const Array*> ptrs;
      for (auto& x : in) ptrs.push_back(&x);
      locals.push_back(run_op(op, ptrs, out->local_shape(m, d)));
    }
    INFO(p.to_string() << "op " << name_of(op.kind) << " args " << fmt::format("{}", fmt::join(args, " ; "))
                       << " -> " << *out);
    REQUIRE(relative_error(assemble(m, *out, locals), ref[op.out]) < 1e-4);
  }
  CHECK(accepted > 100);
  CHECK(rejected > 20);
}

TEST_CASE("search: random programs run right and respect the cap", "[auto][search][property]") {
  test::TypeGen g(1603);
  int fitted = 0, refused = 0;
  for (int round = 0; round < 60; ++round) {
    Mesh m = g.mesh(8);
    Program p = random_program(g, m);
    SearchOptions o;
    o.beam_width = g.uniform(1, 12);
    Assignment free = search(p, o);
    CHECK(free.predicted_time_s >= free.compute_s);
    auto ref = reference(p);
    auto got = run_virtual(p, free);
    for (std::size_t j = 0; j < p.outputs.size(); ++j) REQUIRE(relative_error(got[j], ref[p.outputs[j]]) < 1e-4);
    for (const Type& t : free.output_types) CHECK(t.op == ReduceOp::none);
    o.memory_limit_bytes = std::max<std::int64_t>(1, free.peak_bytes * g.uniform(1, 10) / 10);
    try {
      Assignment capped = search(p, o);
      CHECK(capped.peak_bytes <= o.memory_limit_bytes);
      auto got2 = run_virtual(p, capped);
      for (std::size_t j = 0; j < p.outputs.size(); ++j) REQUIRE(relative_error(got2[j], ref[p.outputs[j]]) < 1e-4);
      ++fitted;
    } catch (const NoFitError& e) {
      CHECK(e.best_peak_bytes > e.limit_bytes);
      CHECK_THAT(e.what(), Catch::Contains("over the cap"));
      ++refused;
    }
  }
  CHECK(fitted > 10);
  CHECK(refused > 0);
}

TEST_CASE("search: the MLP block under a cap that forbids replicated weights is Megatron's", "[auto][search]") {
  Program p = parse_program(kMlpBig);
  // Replicating the weights needs 32 MiB per device, splitting them over tp alone 8 MiB.
  const std::int64_t cap = 20'000'000;
  Assignment dp = search(with_types(p, data_parallel_types(p)), nvlink_ib(0));
  REQUIRE(dp.peak_bytes > cap);
  Assignment a = search(p, nvlink_ib(cap));
  INFO(to_string(p, a));
  CHECK(a.peak_bytes <= cap);
  CHECK(type_of(p, a, "w1").to_string() == "f32[1024, 4096{tp}]");  // output features over tp
  CHECK(type_of(p, a, "w2").to_string() == "f32[4096{tp}, 1024]");  // input features over tp
  for (const char* act : {"x", "h", "g"}) CHECK(axes_of(type_of(p, a, act), 0) == std::vector<std::string>{"dp"});
  CHECK(axes_of(type_of(p, a, "h"), 2) == std::vector<std::string>{"tp"});
  auto comm = communicating(a);
  REQUIRE(comm.size() == 1);  // one all-reduce, or a reduce-scatter (sequence parallel)
  CHECK(p.tensors[comm[0]->tensor].name == "y");
  CHECK(comm[0]->from.reduce_axes == std::vector<std::string>{"tp"});
  REQUIRE(comm[0]->plan->steps.size() == 1);
  CHECK((comm[0]->plan->steps[0].op == Op::all_reduce || comm[0]->plan->steps[0].op == Op::reduce_scatter));
  // Not worse than the hand-written Megatron assignment.
  Program meg = with_types(p, parse_assignment(R"(x : f32[8{dp}, 128, 1024]
      w1 : f32[1024, 4096{tp}]
      h : f32[8{dp}, 128, 4096{tp}]
      g : f32[8{dp}, 128, 4096{tp}]
      w2 : f32[4096{tp}, 1024]
      y : f32[8{dp}, 128, 1024])",
                                                   p.mesh));
  CHECK(a.predicted_time_s <= search(meg, nvlink_ib(0)).predicted_time_s);
  // The same on the example file (its own small shapes, its 2 x 4 mesh).
  Program small = parse_program(slurp("mlp.prog"));
  Assignment s = search(small, nvlink_ib(400 * 1024));
  INFO(to_string(small, s));
  CHECK(type_of(small, s, "w1").to_string() == "f32[128, 512{tp}]");
  CHECK(type_of(small, s, "w2").to_string() == "f32[512{tp}, 128]");
  CHECK(communicating(s).size() == 1);
}

TEST_CASE("search: the attention block splits heads over tp", "[auto][search]") {
  Program p = parse_program(kAttentionBig);
  Assignment a = search(p, nvlink_ib(9'000'000));  // replicated weights need 16 MiB
  INFO(to_string(p, a));
  for (const char* w : {"wq", "wk", "wv"}) CHECK(axes_of(type_of(p, a, w), 1) == std::vector<std::string>{"tp"});
  CHECK(axes_of(type_of(p, a, "wo"), 0) == std::vector<std::string>{"tp"});
  for (const char* h : {"qh", "kh", "vh", "o"}) CHECK(axes_of(type_of(p, a, h), 2) == std::vector<std::string>{"tp"});
  CHECK(axes_of(type_of(p, a, "s"), 1) == std::vector<std::string>{"tp"});  // scores per head
  CHECK(axes_of(type_of(p, a, "s"), 0) == std::vector<std::string>{"dp"});
  CHECK(communicating(a).size() == 1);
}

TEST_CASE("search: with no cap and a large batch it chooses data parallelism", "[auto][search]") {
  for (const char* text : {kMlpBig, kAttentionBig}) {
    Program p = parse_program(text);
    Assignment a = search(p, nvlink_ib(0));
    INFO(to_string(p, a));
    CHECK(a.reshards.empty());
    CHECK(a.comm_s == 0);
    for (std::size_t t = 0; t < p.tensors.size(); ++t) {
      const Tensor& x = p.tensors[t];
      if (x.role == Role::param) CHECK(a.types[t] == x.replicated());
      else CHECK(axes_of(a.types[t], 0) == std::vector<std::string>{"dp", "tp"});
    }
  }
}

TEST_CASE("search: a cap too small for tensor parallelism alone shards parameters over dp too", "[auto][search]") {
  Program p = parse_program(kMlpBig);
  const std::int64_t cap = 12'000'000;
  Program tp_only = with_types(p, parse_assignment("w1 : f32[1024, 4096{tp}]\nw2 : f32[4096{tp}, 1024]", p.mesh));
  CHECK_THROWS_AS(search(tp_only, nvlink_ib(cap)), NoFitError);  // Megatron's TP does not fit
  Assignment a = search(p, nvlink_ib(cap));
  INFO(to_string(p, a));
  CHECK(a.peak_bytes <= cap);
  for (const char* w : {"w1", "w2"}) {
    CHECK(type_of(p, a, w).uses("dp"));
    CHECK(type_of(p, a, w).uses("tp"));
  }
  CHECK(a.param_bytes * 8 == 2 * 1024 * 4096 * 4);  // every parameter byte held once over the mesh
  SECTION("and fails saying by how much when nothing fits") {
    try {
      search(p, nvlink_ib(4'000'000));
      FAIL("expected NoFitError");
    } catch (const NoFitError& e) {
      CHECK(e.best_peak_bytes > 4'000'000);
      CHECK_THAT(e.what(), Catch::Contains(fmt::format("{} B over the cap", e.best_peak_bytes - 4'000'000)));
    }
  }
}

TEST_CASE("search: fixed types are kept, and a hand-written assignment is priced as written", "[auto][search]") {
  Program p = parse_program(slurp("transformer2.prog"));
  Program meg = with_types(p, parse_assignment(slurp("transformer2.megatron"), p.mesh));
  Assignment m = search(meg, nvlink_ib(0));
  for (std::size_t t = 0; t < p.tensors.size(); ++t) CHECK(m.types[t] == *meg.tensors[t].fixed);
  // Per layer one all-reduce after attention and one after the MLP.
  int all_reduces = 0;
  for (const ReshardChoice& r : m.reshards)
    for (const Step& s : r.plan->steps) all_reduces += s.op == Op::all_reduce;
  CHECK(all_reduces == 4);
  Assignment a = search(p, nvlink_ib(m.peak_bytes));
  CHECK(a.predicted_time_s <= m.predicted_time_s);
  auto ref = reference(p);
  CHECK(relative_error(run_virtual(p, a)[0], ref[p.outputs[0]]) < 1e-4);
  CHECK(relative_error(run_virtual(meg, m)[0], ref[p.outputs[0]]) < 1e-4);
  CHECK_THROWS_WITH(with_types(p, parse_assignment("nope : f32[8]", p.mesh)), Catch::Contains("no tensor 'nope'"));
  CHECK_THROWS_WITH(with_types(p, parse_assignment("x0 : f32[8]", p.mesh)), Catch::Contains("not f32[8]"));
  CHECK_THROWS_WITH(parse_assignment("x0 f32[8]", p.mesh), Catch::Contains("line 1"));
}
