#pragma once
// Random meshes and type pairs for property tests: 1-4 axes of sizes 1-5, arrays of rank 0-4,
// even and uneven sizes, pending reductions, replication.
#include <random>

#include "reshard/mesh.hpp"
#include "reshard/type.hpp"

namespace reshard::test {

struct RandomCase {
  Mesh mesh;
  Type src, dst;
};

class TypeGen {
 public:
  explicit TypeGen(std::uint64_t seed) : rng_(seed) {}

  int uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }

  Mesh mesh(int max_devices) {
    for (;;) {
      std::vector<Axis> axes;
      int n = uniform(1, 4);
      const char* names[] = {"x", "y", "z", "w"};
      long devices = 1;
      for (int i = 0; i < n; ++i) {
        axes.push_back({names[i], uniform(1, 5)});
        devices *= axes.back().size;
      }
      if (devices <= max_devices) return Mesh(axes);
    }
  }

  // Each axis goes to a random dim (appended at a random position), the reduce clause (if
  // allowed), or nowhere.
  Type type(const Mesh& m, DType dt, const std::vector<std::int64_t>& shape, ReduceOp op, bool allow_reduce) {
    Type t;
    t.dtype = dt;
    for (auto n : shape) t.dims.push_back({n, {}});
    for (const Axis& a : m.axes()) {
      int where = uniform(-2, static_cast<int>(shape.size()) - 1);
      if (where >= 0) {
        auto& ax = t.dims[where].axes;
        ax.insert(ax.begin() + uniform(0, static_cast<int>(ax.size())), a.name);
      } else if (where == -2 && allow_reduce && uniform(0, 1)) {
        t.reduce_axes.push_back(a.name);
      }
    }
    if (!t.reduce_axes.empty()) t.op = op;
    return t;
  }

  RandomCase next(int max_devices = 64) {
    RandomCase c{mesh(max_devices), {}, {}};
    int rank = uniform(0, 4);
    std::vector<std::int64_t> shape;
    std::int64_t elems = 1;
    for (int i = 0; i < rank; ++i) {
      // Mostly multiples of small numbers (even splits), often not (uneven, empty blocks).
      std::int64_t n = uniform(0, 2) ? uniform(1, 4) * 12 / (rank > 2 ? 2 : 1) : uniform(1, 13);
      if (elems * n > 20000) n = 1;
      shape.push_back(n);
      elems *= n;
    }
    DType dts[] = {DType::f32, DType::i64, DType::i32, DType::f64, DType::i8, DType::u8, DType::i16, DType::f16, DType::bf16};
    DType dt = dts[uniform(0, 8)];
    ReduceOp ops[] = {ReduceOp::sum, ReduceOp::max, ReduceOp::min, ReduceOp::prod};
    ReduceOp op = ops[uniform(0, 3)];
    // Every dtype with every op: where the index fill's max/min partials (i -/+ j) wrap (8- and
    // 16-bit integers), the checks hold the data to the reduction of the wrapped partials.
    c.src = type(c.mesh, dt, shape, op, true);
    c.dst = type(c.mesh, dt, shape, op, true);
    return c;
  }

 private:
  std::mt19937_64 rng_;
};

}  // namespace reshard::test
