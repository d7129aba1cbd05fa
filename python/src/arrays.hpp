#pragma once
// Arrays from Python (NumPy, torch CPU tensors, anything with the buffer protocol or DLPack)
// seen as a reshard shard: checked against a Type's dtype and this rank's local shape, never
// copied. What the checks refuse raises reshard.MismatchError naming both sides.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include "reshard/type.hpp"

namespace reshard::python {

namespace nb = nanobind;

// Read-only input and writable output: C-contiguous host arrays of any dtype. Inputs that are
// not contiguous are copied by nanobind first (the caller's array is never written); outputs
// are taken as they are (noconvert), since the result must land in the caller's memory.
using InArray = nb::ndarray<nb::ro, nb::device::cpu, nb::c_contig>;
using OutArray = nb::ndarray<nb::device::cpu, nb::c_contig>;

// Whether an array of this DLPack dtype stores elements of `t` (f16 and bf16 also as their
// 16 bits in uint16, as the C++ DistArray keeps them).
bool holds(nb::dlpack::dtype d, DType t);
std::string describe(nb::dlpack::dtype d);

struct Shard {
  const void* data = nullptr;
  std::size_t bytes = 0;
};

// An array as the checks see it: element type, shape and data, from whichever protocol.
struct ArrayRef {
  nb::dlpack::dtype dtype{};
  std::size_t ndim = 0;
  const std::int64_t* shape = nullptr;
  const void* data = nullptr;
};

// The buffer protocol's view of an object, held for one call: the fast way in for NumPy
// arrays (a fraction of a microsecond, where the DLPack route costs several).
class BufferView {
 public:
  BufferView() = default;
  BufferView(const BufferView&) = delete;
  BufferView& operator=(const BufferView&) = delete;
  ~BufferView();
  // Whether `obj` exports a C-contiguous buffer (writable if asked) of an element type
  // reshard knows; false leaves no Python error set (the caller then tries DLPack).
  bool acquire(PyObject* obj, bool writable);
  ArrayRef ref() const;

 private:
  Py_buffer view_{};
  bool held_ = false;
  nb::dlpack::dtype dtype_{};
};

// Pre: `local_shape` is this rank's local shape of `type`. Post: the array has exactly that
// shape and type.dtype's element type; else MismatchError naming `what` ("input", "output").
Shard check_shard(const char* what, nb::dlpack::dtype d, std::size_t ndim, const std::int64_t* shape,
                  const void* data, const Type& type, const std::vector<std::int64_t>& local_shape);

}  // namespace reshard::python
