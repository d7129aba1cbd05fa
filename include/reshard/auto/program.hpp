#pragma once
// Programs for automatic sharding (docs/auto.md): named tensors and the operations on them,
// parsed from text or built in C++, with every shape checked.
//
//   mesh   dp=2,tp=4
//   input  x  : f32[8, 128, 512]
//   param  w1 : f32[512, 2048]
//   h = einsum("bsh,hf->bsf", x, w1)
//   output h
//
// Invariants of a Program (kept by ProgramBuilder and parse_program):
//  - tensor names are unique; every operation's arguments are defined before it;
//  - every operation's result is a new tensor whose shape follows from its arguments;
//  - a tensor's `fixed` type, when present, is valid on `mesh`, has the tensor's dtype and
//    shape, and has no reduce clause.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "reshard/mesh.hpp"
#include "reshard/type.hpp"

namespace reshard::automap {

enum class OpKind { einsum, add, mul, gelu, relu, softmax, sum, transpose, reshape };
std::string_view name_of(OpKind k);

enum class Role { input, param, value };
std::string_view name_of(Role r);

struct Tensor {
  std::string name;
  Role role = Role::value;
  DType dtype = DType::f32;
  std::vector<std::int64_t> shape;
  // A sharded type written in the program (or set by an assignment) fixes the tensor's type;
  // otherwise the search chooses it.
  std::optional<Type> fixed;
  int line = 0;  // 1-based line of the statement that defines it (0: built in C++)

  int rank() const { return static_cast<int>(shape.size()); }
  std::int64_t elements() const;
  // The replicated type of this tensor (no axes, no reduce clause).
  Type replicated() const;
};

struct Operation {
  OpKind kind = OpKind::add;
  int out = -1;           // tensor index of the result
  std::vector<int> args;  // tensor indices
  std::string spec;       // einsum: "bsh,hf->bsf"
  int dim = -1;           // softmax, sum
  std::vector<int> perm;  // transpose: out dim i is arg dim perm[i]
  std::vector<std::int64_t> sizes;  // reshape
  int line = 0, column = 0;
};

// The labels of an einsum spec "ab,bc->ac": one string per operand and the result.
struct EinsumSpec {
  std::string a, b, out;
  static EinsumSpec parse(std::string_view spec);  // throws Error naming the problem
};

struct Program {
  Mesh mesh;
  std::vector<Tensor> tensors;
  std::vector<Operation> ops;
  std::vector<int> outputs;  // tensor indices

  int find(std::string_view name) const;  // -1 when absent
  const Tensor& tensor(std::string_view name) const;  // throws Error when absent
  // The operation that produces tensor t, or -1 for inputs and params.
  int producer(int t) const;
  // Index of the last operation reading tensor t (ops.size() for outputs; -1 when unused).
  int last_use(int t) const;
  // The same program on another mesh; fixed types must fit it (throws Error otherwise).
  Program on_mesh(const Mesh& m) const;
  std::string to_string() const;  // program text that parses back to this program
};

// Parses program text. `mesh`, when given, overrides the program's `mesh` statement (which is
// then optional). Throws ParseError whose message names line and column, and whose position is
// the offset in `text`.
Program parse_program(std::string_view text, const std::optional<Mesh>& mesh = std::nullopt);

// Builds a program in C++; each call checks shapes and throws Error naming the problem.
//   ProgramBuilder b(Mesh::parse("dp=2,tp=2"));
//   b.input("x", "f32[8,64]"); b.param("w", "f32[64,32]");
//   b.einsum("y", "bh,hf->bf", "x", "w"); b.output("y");
//   Program p = b.build();
class ProgramBuilder {
 public:
  explicit ProgramBuilder(Mesh mesh);
  ProgramBuilder& input(std::string name, std::string_view type);
  ProgramBuilder& param(std::string name, std::string_view type);
  ProgramBuilder& einsum(std::string out, std::string_view spec, std::string_view a, std::string_view b);
  ProgramBuilder& add(std::string out, std::string_view a, std::string_view b);
  ProgramBuilder& mul(std::string out, std::string_view a, std::string_view b);
  ProgramBuilder& gelu(std::string out, std::string_view a);
  ProgramBuilder& relu(std::string out, std::string_view a);
  ProgramBuilder& softmax(std::string out, std::string_view a, int dim);
  ProgramBuilder& sum(std::string out, std::string_view a, int dim);
  ProgramBuilder& transpose(std::string out, std::string_view a, std::string_view perm);
  ProgramBuilder& reshape(std::string out, std::string_view a, std::vector<std::int64_t> sizes);
  ProgramBuilder& output(std::string_view name);
  Program build() const;  // throws Error when the program has no output

 private:
  Program p_;
};

namespace detail {
// Shared by the parser and the builder: declares a tensor / appends an operation, checking
// names and shapes (throws Error with a message that does not say where; callers add that).
void declare(Program& p, std::string name, Role role, const Type& type);
void append(Program& p, std::string out, Operation op);
}  // namespace detail

}  // namespace reshard::automap

template <>
struct fmt::formatter<reshard::automap::OpKind> : fmt::formatter<std::string_view> {
  template <typename Ctx>
  auto format(reshard::automap::OpKind k, Ctx& ctx) const {
    return fmt::formatter<std::string_view>::format(reshard::automap::name_of(k), ctx);
  }
};
template <>
struct fmt::formatter<reshard::automap::Program> : fmt::formatter<std::string> {
  template <typename Ctx>
  auto format(const reshard::automap::Program& p, Ctx& ctx) const {
    return fmt::formatter<std::string>::format(p.to_string(), ctx);
  }
};
