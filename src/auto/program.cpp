// Programs for automatic sharding: the IR, its shape rules, the text parser and the builder.
#include "reshard/auto/program.hpp"

#include <algorithm>
#include <cctype>
#include <numeric>
#include <set>

#include "reshard/error.hpp"

namespace reshard::automap {

std::string_view name_of(OpKind k) {
  switch (k) {
    case OpKind::einsum: return "einsum";
    case OpKind::add: return "add";
    case OpKind::mul: return "mul";
    case OpKind::gelu: return "gelu";
    case OpKind::relu: return "relu";
    case OpKind::softmax: return "softmax";
    case OpKind::sum: return "sum";
    case OpKind::transpose: return "transpose";
    case OpKind::reshape: return "reshape";
  }
  return "?";
}

std::string_view name_of(Role r) {
  switch (r) {
    case Role::input: return "input";
    case Role::param: return "param";
    case Role::value: return "value";
  }
  return "?";
}

std::int64_t Tensor::elements() const {
  std::int64_t n = 1;
  for (auto s : shape) n *= s;
  return n;
}

Type Tensor::replicated() const {
  Type t;
  t.dtype = dtype;
  for (auto s : shape) t.dims.push_back(Dim{s, {}});
  return t;
}

EinsumSpec EinsumSpec::parse(std::string_view spec) {
  auto arrow = spec.find("->");
  if (arrow == std::string_view::npos) throw Error(fmt::format("einsum spec '{}' has no '->'", spec));
  std::string_view lhs = spec.substr(0, arrow), rhs = spec.substr(arrow + 2);
  auto comma = lhs.find(',');
  if (comma == std::string_view::npos || lhs.find(',', comma + 1) != std::string_view::npos)
    throw Error(fmt::format("einsum spec '{}' must name exactly two operands (\"ab,bc->ac\")", spec));
  EinsumSpec s{std::string(lhs.substr(0, comma)), std::string(lhs.substr(comma + 1)), std::string(rhs)};
  for (const std::string* part : {&s.a, &s.b, &s.out}) {
    std::set<char> seen;
    for (char c : *part) {
      if (!std::isalpha(static_cast<unsigned char>(c)))
        throw Error(fmt::format("einsum spec '{}': '{}' is not a label (labels are letters)", spec, c));
      if (!seen.insert(c).second)
        throw Error(fmt::format("einsum spec '{}': label '{}' repeats within one operand (diagonals are not "
                                "supported)",
                                spec, c));
    }
  }
  for (char c : s.out)
    if (s.a.find(c) == std::string::npos && s.b.find(c) == std::string::npos)
      throw Error(fmt::format("einsum spec '{}': output label '{}' is in neither operand", spec, c));
  return s;
}

int Program::find(std::string_view name) const {
  for (std::size_t i = 0; i < tensors.size(); ++i)
    if (tensors[i].name == name) return static_cast<int>(i);
  return -1;
}

const Tensor& Program::tensor(std::string_view name) const {
  int i = find(name);
  if (i < 0) throw Error(fmt::format("no tensor named '{}'", name));
  return tensors[i];
}

int Program::producer(int t) const {
  for (std::size_t i = 0; i < ops.size(); ++i)
    if (ops[i].out == t) return static_cast<int>(i);
  return -1;
}

int Program::last_use(int t) const {
  if (std::find(outputs.begin(), outputs.end(), t) != outputs.end()) return static_cast<int>(ops.size());
  int last = -1;
  for (std::size_t i = 0; i < ops.size(); ++i)
    if (std::find(ops[i].args.begin(), ops[i].args.end(), t) != ops[i].args.end()) last = static_cast<int>(i);
  return last;
}

Program Program::on_mesh(const Mesh& m) const {
  Program p = *this;
  p.mesh = m;
  for (Tensor& t : p.tensors) {
    if (!t.fixed) continue;
    try {
      t.fixed = Type::parse(t.fixed->to_string(), m);
    } catch (const Error& e) {
      throw Error(fmt::format("tensor '{}': its type {} does not fit the mesh {}: {}", t.name, *t.fixed, m, e.what()));
    }
  }
  return p;
}

namespace {

std::string shape_text(const std::vector<std::int64_t>& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

std::string quote(const std::string& s) { return "\"" + s + "\""; }

}  // namespace

std::string Program::to_string() const {
  std::string s = fmt::format("mesh {}\n", mesh);
  for (const Tensor& t : tensors) {
    if (t.role == Role::value) continue;
    s += fmt::format("{} {} : {}\n", name_of(t.role), t.name, t.fixed ? *t.fixed : t.replicated());
  }
  for (const Operation& op : ops) {
    std::vector<std::string> a;
    if (op.kind == OpKind::einsum) a.push_back(quote(op.spec));
    for (int x : op.args) a.push_back(tensors[x].name);
    if (op.kind == OpKind::softmax || op.kind == OpKind::sum) a.push_back(std::to_string(op.dim));
    if (op.kind == OpKind::transpose) {
      std::string perm;
      for (int d : op.perm) perm += static_cast<char>('0' + d);
      a.push_back(quote(perm));
    }
    if (op.kind == OpKind::reshape) a.push_back(shape_text(op.sizes));
    s += fmt::format("{} = {}({})\n", tensors[op.out].name, name_of(op.kind), fmt::join(a, ", "));
  }
  for (int o : outputs) s += fmt::format("output {}\n", tensors[o].name);
  return s;
}

namespace detail {

void declare(Program& p, std::string name, Role role, const Type& type) {
  if (p.find(name) >= 0) throw Error(fmt::format("tensor '{}' is already defined", name));
  if (type.rank() == 0) throw Error(fmt::format("tensor '{}' has no dims (scalars are not supported)", name));
  Tensor t;
  t.name = std::move(name);
  t.role = role;
  t.dtype = type.dtype;
  t.shape = type.global_shape();
  if (type.op != ReduceOp::none)
    throw Error(fmt::format("tensor '{}': an {} cannot have a reduce clause (its value must be whole)", t.name,
                            name_of(role)));
  bool sharded = false;
  for (const Dim& d : type.dims) sharded = sharded || !d.axes.empty();
  if (sharded) t.fixed = type;
  p.tensors.push_back(std::move(t));
}

namespace {

const Tensor& arg(const Program& p, int i) { return p.tensors[i]; }

void same_dtype(const Program& p, const Operation& op) {
  for (int a : op.args)
    if (arg(p, a).dtype != arg(p, op.args[0]).dtype)
      throw Error(fmt::format("{}: operands '{}' ({}) and '{}' ({}) have different dtypes", name_of(op.kind),
                              arg(p, op.args[0]).name, arg(p, op.args[0]).dtype, arg(p, a).name, arg(p, a).dtype));
}

int normalize_dim(int dim, int rank, const Operation& op, const Tensor& a) {
  int d = dim < 0 ? dim + rank : dim;
  if (d < 0 || d >= rank)
    throw Error(fmt::format("{}: dim {} is out of range for '{}' of rank {}", name_of(op.kind), dim, a.name, rank));
  return d;
}

// The result's shape, or an Error naming what does not fit.
std::vector<std::int64_t> result_shape(const Program& p, Operation& op) {
  const Tensor& a = arg(p, op.args[0]);
  switch (op.kind) {
    case OpKind::einsum: {
      EinsumSpec s = EinsumSpec::parse(op.spec);
      const Tensor& b = arg(p, op.args[1]);
      if (static_cast<int>(s.a.size()) != a.rank())
        throw Error(fmt::format("einsum '{}': '{}' has rank {} but the spec gives it {} labels", op.spec, a.name,
                                a.rank(), s.a.size()));
      if (static_cast<int>(s.b.size()) != b.rank())
        throw Error(fmt::format("einsum '{}': '{}' has rank {} but the spec gives it {} labels", op.spec, b.name,
                                b.rank(), s.b.size()));
      for (std::size_t i = 0; i < s.b.size(); ++i) {
        auto j = s.a.find(s.b[i]);
        if (j != std::string::npos && a.shape[j] != b.shape[i])
          throw Error(fmt::format("einsum '{}': label '{}' has size {} in '{}' but {} in '{}'", op.spec, s.b[i],
                                  a.shape[j], a.name, b.shape[i], b.name));
      }
      std::vector<std::int64_t> out;
      for (char c : s.out) {
        auto j = s.a.find(c);
        out.push_back(j != std::string::npos ? a.shape[j] : b.shape[s.b.find(c)]);
      }
      return out;
    }
    case OpKind::add:
    case OpKind::mul: {
      const Tensor& b = arg(p, op.args[1]);
      if (a.shape != b.shape)
        throw Error(fmt::format("{}: '{}' has shape {} but '{}' has shape {}", name_of(op.kind), a.name,
                                shape_text(a.shape), b.name, shape_text(b.shape)));
      return a.shape;
    }
    case OpKind::gelu:
    case OpKind::relu: return a.shape;
    case OpKind::softmax: op.dim = normalize_dim(op.dim, a.rank(), op, a); return a.shape;
    case OpKind::sum: {
      op.dim = normalize_dim(op.dim, a.rank(), op, a);
      if (a.rank() == 1) throw Error(fmt::format("sum: '{}' has rank 1; the result would be a scalar", a.name));
      auto s = a.shape;
      s.erase(s.begin() + op.dim);
      return s;
    }
    case OpKind::transpose: {
      std::vector<int> sorted = op.perm;
      std::sort(sorted.begin(), sorted.end());
      std::vector<int> iota(a.rank());
      std::iota(iota.begin(), iota.end(), 0);
      if (sorted != iota)
        throw Error(fmt::format("transpose: \"{}\" is not a permutation of the {} dims of '{}'",
                                fmt::join(op.perm, ""), a.rank(), a.name));
      std::vector<std::int64_t> s;
      for (int d : op.perm) s.push_back(a.shape[d]);
      return s;
    }
    case OpKind::reshape: {
      std::int64_t n = 1;
      for (auto s : op.sizes) {
        if (s < 1) throw Error(fmt::format("reshape: size {} must be at least 1", s));
        if (__builtin_mul_overflow(n, s, &n)) throw Error("reshape: the sizes overflow");
      }
      if (op.sizes.empty()) throw Error("reshape: no sizes given");
      if (n != a.elements())
        throw Error(fmt::format("reshape: '{}' of shape {} has {} elements, the sizes {} give {}", a.name,
                                shape_text(a.shape), a.elements(), shape_text(op.sizes), n));
      return op.sizes;
    }
  }
  throw Error("unknown operation");
}

std::size_t arity(OpKind k) {
  switch (k) {
    case OpKind::einsum:
    case OpKind::add:
    case OpKind::mul: return 2;
    default: return 1;
  }
}

}  // namespace

void append(Program& p, std::string out, Operation op) {
  if (op.args.size() != arity(op.kind))
    throw Error(fmt::format("{} takes {} tensor operand(s), got {}", name_of(op.kind), arity(op.kind), op.args.size()));
  for (int a : op.args)
    if (a < 0 || a >= static_cast<int>(p.tensors.size())) throw Error("operand is not a tensor of the program");
  if (p.find(out) >= 0) throw Error(fmt::format("tensor '{}' is already defined", out));
  same_dtype(p, op);
  Tensor t;
  t.shape = result_shape(p, op);
  t.name = std::move(out);
  t.role = Role::value;
  t.dtype = p.tensors[op.args[0]].dtype;
  t.line = op.line;
  op.out = static_cast<int>(p.tensors.size());
  p.tensors.push_back(std::move(t));
  p.ops.push_back(std::move(op));
}

}  // namespace detail

// ---- the text parser ----

namespace {

// One line of the program with a cursor; errors name line and column (1-based) and carry the
// offset in the whole text.
class LineCursor {
 public:
  LineCursor(std::string_view text, std::string_view line, std::size_t line_start, int line_no)
      : text_(text), line_(line), start_(line_start), no_(line_no) {}

  [[noreturn]] void fail(const std::string& msg, std::size_t col0) const {
    throw ParseError(fmt::format("program line {}, column {}: {}\n  {}\n  {}^", no_, col0 + 1, msg, line_,
                                 std::string(col0, ' ')),
                     std::string(text_), start_ + col0);
  }
  [[noreturn]] void fail(const std::string& msg) const { fail(msg, pos_); }

  void ws() {
    while (pos_ < line_.size() && std::isspace(static_cast<unsigned char>(line_[pos_]))) ++pos_;
  }
  bool end() {
    ws();
    return pos_ >= line_.size();
  }
  std::size_t pos() {
    ws();
    return pos_;
  }
  char peek() {
    ws();
    return pos_ < line_.size() ? line_[pos_] : '\0';
  }
  std::string found() {
    return end() ? std::string("the end of the line") : fmt::format("'{}'", line_[pos_]);
  }
  void expect(char c, std::string_view what) {
    if (peek() != c) fail(fmt::format("expected '{}' {}, found {}", c, what, found()));
    ++pos_;
  }
  bool accept(char c) {
    if (peek() != c) return false;
    ++pos_;
    return true;
  }
  std::string ident(std::string_view what) {
    ws();
    std::size_t s = pos_;
    if (pos_ >= line_.size() || !(std::isalpha(static_cast<unsigned char>(line_[pos_])) || line_[pos_] == '_'))
      fail(fmt::format("expected {}, found {}", what, found()));
    while (pos_ < line_.size() && (std::isalnum(static_cast<unsigned char>(line_[pos_])) || line_[pos_] == '_')) ++pos_;
    return std::string(line_.substr(s, pos_ - s));
  }
  std::string string_lit(std::string_view what) {
    ws();
    if (peek() != '"') fail(fmt::format("expected {} in double quotes, found {}", what, found()));
    std::size_t s = ++pos_;
    while (pos_ < line_.size() && line_[pos_] != '"') ++pos_;
    if (pos_ >= line_.size()) fail("unterminated string", s - 1);
    return std::string(line_.substr(s, pos_++ - s));
  }
  std::int64_t integer(std::string_view what, bool allow_negative) {
    ws();
    std::size_t s = pos_;
    bool neg = false;
    if (pos_ < line_.size() && line_[pos_] == '-') {
      if (!allow_negative) fail(fmt::format("{} must be positive", what));
      neg = true;
      ++pos_;
    }
    if (pos_ >= line_.size() || !std::isdigit(static_cast<unsigned char>(line_[pos_])))
      fail(fmt::format("expected {} (an integer), found {}", what, found()), s);
    std::int64_t v = 0;
    while (pos_ < line_.size() && std::isdigit(static_cast<unsigned char>(line_[pos_]))) {
      int d = line_[pos_++] - '0';
      if (v > (INT64_MAX - d) / 10) fail(fmt::format("{} is too large", what), s);
      v = v * 10 + d;
    }
    return neg ? -v : v;
  }
  std::string_view rest() {
    ws();
    return line_.substr(pos_);
  }
  void skip_to_end() { pos_ = line_.size(); }

 private:
  std::string_view text_, line_;
  std::size_t start_;
  int no_;
  std::size_t pos_ = 0;
};

struct Line {
  std::string_view text;  // without the comment
  std::size_t start;      // offset in the whole text
  int no;
};

std::vector<Line> split_lines(std::string_view text) {
  std::vector<Line> out;
  std::size_t start = 0;
  int no = 1;
  while (start <= text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view l = text.substr(start, end - start);
    auto hash = l.find('#');
    if (hash != std::string_view::npos) l = l.substr(0, hash);
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    out.push_back({l, start, no});
    if (end == text.size()) break;
    start = end + 1;
    ++no;
  }
  return out;
}

constexpr std::string_view kOps[] = {"einsum", "add", "mul", "gelu", "relu", "softmax", "sum", "transpose", "reshape"};

OpKind op_from_name(const LineCursor& c, const std::string& name, std::size_t col) {
  for (std::size_t i = 0; i < std::size(kOps); ++i)
    if (kOps[i] == name) return static_cast<OpKind>(i);
  c.fail(fmt::format("unknown operation '{}' (known: {})", name, fmt::join(kOps, ", ")), col);
}

}  // namespace

Program parse_program(std::string_view text, const std::optional<Mesh>& mesh) {
  Program p;
  auto lines = split_lines(text);
  bool have_mesh = false;
  if (mesh) p.mesh = *mesh, have_mesh = true;
  bool mesh_stmt = false;
  for (const Line& ln : lines) {
    LineCursor c(text, ln.text, ln.start, ln.no);
    if (c.end()) continue;
    std::size_t col = c.pos();
    std::string head = c.ident("a statement (mesh, input, param, output or NAME = OP(...))");
    auto where = [&](auto&& f, std::size_t at) {
      try {
        f();
      } catch (const ParseError&) {
        throw;
      } catch (const Error& e) {
        c.fail(e.what(), at);
      }
    };
    if (head == "mesh") {
      if (mesh_stmt) c.fail("a second mesh statement", col);
      mesh_stmt = true;
      std::size_t at = c.pos();
      std::string_view rest = c.rest();
      try {
        Mesh m = Mesh::parse(rest);
        if (!mesh) {
          if (!p.tensors.empty()) c.fail("the mesh statement must come before the tensors", col);
          p.mesh = m, have_mesh = true;
        }
      } catch (const ParseError& e) {
        if (e.text() == text) throw;
        c.fail(fmt::format("bad mesh: {}", e.what()), at + std::min(e.position(), rest.size()));
      }
      c.skip_to_end();
    } else if (head == "input" || head == "param") {
      std::size_t name_col = c.pos();
      std::string name = c.ident("a tensor name");
      c.expect(':', "after the tensor name");
      std::size_t at = c.pos();
      std::string_view rest = c.rest();
      if (!have_mesh) c.fail("a type before any mesh statement (add `mesh ...` first, or pass --mesh)", at);
      Type t;
      try {
        t = Type::parse(rest, p.mesh);
      } catch (const ParseError& e) {
        c.fail(fmt::format("bad type: {}", e.what()), at + std::min(e.position(), rest.size()));
      } catch (const Error& e) {
        c.fail(fmt::format("bad type: {}", e.what()), at);
      }
      c.skip_to_end();
      where([&] { detail::declare(p, name, head == "input" ? Role::input : Role::param, t); }, name_col);
      p.tensors.back().line = ln.no;
    } else if (head == "output") {
      std::size_t at = c.pos();
      std::string name = c.ident("the name of an output tensor");
      int t = p.find(name);
      if (t < 0) c.fail(fmt::format("output '{}' is not defined", name), at);
      if (std::find(p.outputs.begin(), p.outputs.end(), t) != p.outputs.end())
        c.fail(fmt::format("'{}' is already an output", name), at);
      p.outputs.push_back(t);
    } else {
      c.expect('=', fmt::format("after '{}' (statements are mesh, input, param, output, or NAME = OP(...))", head));
      std::size_t op_col = c.pos();
      std::string opname = c.ident("an operation name");
      Operation op;
      op.kind = op_from_name(c, opname, op_col);
      op.line = ln.no;
      op.column = static_cast<int>(op_col) + 1;
      c.expect('(', fmt::format("after '{}'", opname));
      auto tensor_arg = [&] {
        std::size_t at = c.pos();
        std::string n = c.ident("a tensor name");
        int t = p.find(n);
        if (t < 0) c.fail(fmt::format("'{}' is not defined (tensors must be defined before they are used)", n), at);
        op.args.push_back(t);
      };
      if (op.kind == OpKind::einsum) {
        std::size_t at = c.pos();
        op.spec = c.string_lit("the einsum spec");
        where([&] { EinsumSpec::parse(op.spec); }, at);
        c.expect(',', "after the einsum spec");
        tensor_arg();
        c.expect(',', "between the einsum operands");
        tensor_arg();
      } else {
        tensor_arg();
        if (op.kind == OpKind::add || op.kind == OpKind::mul) {
          c.expect(',', "between the operands");
          tensor_arg();
        } else if (op.kind == OpKind::softmax || op.kind == OpKind::sum) {
          c.expect(',', "before the dim");
          std::int64_t d = c.integer("the dim", true);
          if (d < -64 || d > 64) c.fail("the dim is out of range");
          op.dim = static_cast<int>(d);
        } else if (op.kind == OpKind::transpose) {
          c.expect(',', "before the permutation");
          std::size_t at = c.pos();
          std::string perm = c.string_lit("the permutation (e.g. \"0213\")");
          for (char ch : perm) {
            if (!std::isdigit(static_cast<unsigned char>(ch))) c.fail("the permutation must be digits", at + 1);
            op.perm.push_back(ch - '0');
          }
        } else if (op.kind == OpKind::reshape) {
          c.expect(',', "before the sizes");
          c.expect('[', "to open the list of sizes");
          if (c.peek() != ']') {
            do op.sizes.push_back(c.integer("a size", false));
            while (c.accept(','));
          }
          c.expect(']', "to close the list of sizes");
        }
      }
      c.expect(')', fmt::format("to close {}(...)", opname));
      if (!c.end()) c.fail(fmt::format("unexpected {} after the statement", c.found()));
      where([&] { detail::append(p, head, std::move(op)); }, col);
      continue;
    }
    if (!c.end()) c.fail(fmt::format("unexpected {} after the statement", c.found()));
  }
  if (!have_mesh)
    throw ParseError("program: no mesh statement (add `mesh dp=2,tp=4` or pass --mesh)", std::string(text), 0);
  if (p.outputs.empty())
    throw ParseError("program: no output statement (add `output NAME`)", std::string(text), text.size());
  return p;
}

// ---- the builder ----

ProgramBuilder::ProgramBuilder(Mesh mesh) { p_.mesh = std::move(mesh); }

ProgramBuilder& ProgramBuilder::input(std::string name, std::string_view type) {
  detail::declare(p_, std::move(name), Role::input, Type::parse(type, p_.mesh));
  return *this;
}
ProgramBuilder& ProgramBuilder::param(std::string name, std::string_view type) {
  detail::declare(p_, std::move(name), Role::param, Type::parse(type, p_.mesh));
  return *this;
}

namespace {
int must_find(const Program& p, std::string_view name) {
  int i = p.find(name);
  if (i < 0) throw Error(fmt::format("'{}' is not defined", name));
  return i;
}
}  // namespace

ProgramBuilder& ProgramBuilder::einsum(std::string out, std::string_view spec, std::string_view a, std::string_view b) {
  Operation op;
  op.kind = OpKind::einsum;
  op.spec = std::string(spec);
  op.args = {must_find(p_, a), must_find(p_, b)};
  detail::append(p_, std::move(out), std::move(op));
  return *this;
}

#define RESHARD_BINARY(fn, KIND)                                                              \
  ProgramBuilder& ProgramBuilder::fn(std::string out, std::string_view a, std::string_view b) { \
    Operation op;                                                                             \
    op.kind = KIND;                                                                           \
    op.args = {must_find(p_, a), must_find(p_, b)};                                           \
    detail::append(p_, std::move(out), std::move(op));                                        \
    return *this;                                                                             \
  }
RESHARD_BINARY(add, OpKind::add)
RESHARD_BINARY(mul, OpKind::mul)
#undef RESHARD_BINARY

namespace {
// One-operand ops of the builder: the op, its operand and its dim (softmax, sum).
void append_unary(Program& p, std::string out, OpKind kind, std::string_view a, int dim = -1) {
  Operation op;
  op.kind = kind;
  op.args = {must_find(p, a)};
  op.dim = dim;
  detail::append(p, std::move(out), std::move(op));
}
}  // namespace

ProgramBuilder& ProgramBuilder::gelu(std::string out, std::string_view a) {
  append_unary(p_, std::move(out), OpKind::gelu, a);
  return *this;
}
ProgramBuilder& ProgramBuilder::relu(std::string out, std::string_view a) {
  append_unary(p_, std::move(out), OpKind::relu, a);
  return *this;
}
ProgramBuilder& ProgramBuilder::softmax(std::string out, std::string_view a, int dim) {
  append_unary(p_, std::move(out), OpKind::softmax, a, dim);
  return *this;
}
ProgramBuilder& ProgramBuilder::sum(std::string out, std::string_view a, int dim) {
  append_unary(p_, std::move(out), OpKind::sum, a, dim);
  return *this;
}
ProgramBuilder& ProgramBuilder::transpose(std::string out, std::string_view a, std::string_view perm) {
  Operation op;
  op.kind = OpKind::transpose;
  op.args = {must_find(p_, a)};
  for (char c : perm) {
    if (!std::isdigit(static_cast<unsigned char>(c))) throw Error(fmt::format("transpose: \"{}\" must be digits", perm));
    op.perm.push_back(c - '0');
  }
  detail::append(p_, std::move(out), std::move(op));
  return *this;
}
ProgramBuilder& ProgramBuilder::reshape(std::string out, std::string_view a, std::vector<std::int64_t> sizes) {
  Operation op;
  op.kind = OpKind::reshape;
  op.args = {must_find(p_, a)};
  op.sizes = std::move(sizes);
  detail::append(p_, std::move(out), std::move(op));
  return *this;
}
ProgramBuilder& ProgramBuilder::output(std::string_view name) {
  int t = must_find(p_, name);
  if (std::find(p_.outputs.begin(), p_.outputs.end(), t) != p_.outputs.end())
    throw Error(fmt::format("'{}' is already an output", name));
  p_.outputs.push_back(t);
  return *this;
}
Program ProgramBuilder::build() const {
  if (p_.outputs.empty()) throw Error("the program has no output");
  return p_;
}

}  // namespace reshard::automap
