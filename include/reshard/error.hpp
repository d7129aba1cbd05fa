#pragma once
// Errors reshard reports. Every user-facing failure is one of these, never a crash.
#include <cstddef>
#include <stdexcept>
#include <string>

namespace reshard {

// Base class: a message that names the problem.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Malformed or invalid text. `position` is the 0-based character offset in `text`.
class ParseError : public Error {
 public:
  ParseError(const std::string& what, std::string text, std::size_t position);
  const std::string& text() const { return text_; }
  std::size_t position() const { return position_; }

 private:
  std::string text_;
  std::size_t position_;
};

// Source and target (or a type and a mesh, or a buffer and a type) do not fit together.
class MismatchError : public Error {
 public:
  using Error::Error;
};

}  // namespace reshard
