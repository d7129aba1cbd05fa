#include "arrays.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "reshard/error.hpp"

namespace reshard::python {

namespace {
using Code = nb::dlpack::dtype_code;

nb::dlpack::dtype dlpack_of(DType t) {
  auto make = [](Code c, int bits) { return nb::dlpack::dtype{static_cast<std::uint8_t>(c), static_cast<std::uint8_t>(bits), 1}; };
  switch (t) {
    case DType::f64: return make(Code::Float, 64);
    case DType::f32: return make(Code::Float, 32);
    case DType::f16: return make(Code::Float, 16);
    case DType::bf16: return make(Code::Bfloat, 16);
    case DType::i64: return make(Code::Int, 64);
    case DType::i32: return make(Code::Int, 32);
    case DType::i16: return make(Code::Int, 16);
    case DType::i8: return make(Code::Int, 8);
    case DType::u8: return make(Code::UInt, 8);
  }
  return make(Code::Float, 32);
}
}  // namespace

bool holds(nb::dlpack::dtype d, DType t) {
  if (d.lanes != 1) return false;
  if (d == dlpack_of(t)) return true;
  return (t == DType::f16 || t == DType::bf16) && d.code == static_cast<std::uint8_t>(Code::UInt) && d.bits == 16;
}

std::string describe(nb::dlpack::dtype d) {
  const char* kind = "type";
  switch (static_cast<Code>(d.code)) {
    case Code::Int: kind = "int"; break;
    case Code::UInt: kind = "uint"; break;
    case Code::Float: kind = "float"; break;
    case Code::Bfloat: kind = "bfloat"; break;
    case Code::Complex: kind = "complex"; break;
    case Code::Bool: return "bool";
    default: break;
  }
  return fmt::format("{}{}", kind, d.bits);
}

BufferView::~BufferView() {
  if (held_) PyBuffer_Release(&view_);
}

bool BufferView::acquire(PyObject* obj, bool writable) {
  static_assert(sizeof(Py_ssize_t) == sizeof(std::int64_t), "shapes are read in place");
  if (!PyObject_CheckBuffer(obj)) return false;
  if (PyObject_GetBuffer(obj, &view_, PyBUF_RECORDS_RO | (writable ? PyBUF_WRITABLE : 0)) != 0) {
    PyErr_Clear();
    return false;
  }
  held_ = true;
  if (!PyBuffer_IsContiguous(&view_, 'C')) return false;
  const char* f = view_.format ? view_.format : "B";
  if (*f == '@' || *f == '=' || *f == '<') ++f;  // native or little-endian (x86, arm64)
  if (!f[0] || f[1]) return false;
  auto make = [](Code c, Py_ssize_t bytes) {
    return nb::dlpack::dtype{static_cast<std::uint8_t>(c), static_cast<std::uint8_t>(bytes * 8), 1};
  };
  switch (f[0]) {
    case 'd': case 'f': case 'e': dtype_ = make(Code::Float, view_.itemsize); break;
    case 'q': case 'l': case 'i': case 'h': case 'b': dtype_ = make(Code::Int, view_.itemsize); break;
    case 'Q': case 'L': case 'I': case 'H': case 'B': dtype_ = make(Code::UInt, view_.itemsize); break;
    default: return false;
  }
  return true;
}

ArrayRef BufferView::ref() const {
  return {dtype_, static_cast<std::size_t>(view_.ndim), reinterpret_cast<const std::int64_t*>(view_.shape), view_.buf};
}

Shard check_shard(const char* what, nb::dlpack::dtype d, std::size_t ndim, const std::int64_t* shape,
                  const void* data, const Type& type, const std::vector<std::int64_t>& local_shape) {
  if (!holds(d, type.dtype))
    throw MismatchError(fmt::format("the {} array holds {} elements, but {} needs {}", what, describe(d), type,
                                    type.dtype));
  std::vector<std::int64_t> got(shape, shape + ndim);
  if (got != local_shape)
    throw MismatchError(fmt::format("the {} array has shape ({}), but this rank's shard of {} has shape ({})", what,
                                    fmt::join(got, ", "), type, fmt::join(local_shape, ", ")));
  std::int64_t n = 1;
  for (std::int64_t e : got) n *= e;
  return {data, static_cast<std::size_t>(n) * size_of(type.dtype)};
}

}  // namespace reshard::python
