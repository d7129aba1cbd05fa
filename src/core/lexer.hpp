#pragma once
// A small cursor over text for the mesh and type parsers: every error carries the position.
#include <cctype>
#include <cstdint>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "reshard/error.hpp"

namespace reshard::detail {

class Lexer {
 public:
  Lexer(std::string_view text, std::string_view what) : text_(text), what_(what) {}

  [[noreturn]] void fail(const std::string& msg, std::size_t pos) const {
    std::string caret(pos, ' ');
    throw ParseError(fmt::format("{} at position {}: {}\n  {}\n  {}^", what_, pos, msg, text_, caret),
                     std::string(text_), pos);
  }
  [[noreturn]] void fail(const std::string& msg) const { fail(msg, pos_); }

  void skip_ws() {
    while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  }
  bool at_end() {
    skip_ws();
    return pos_ >= text_.size();
  }
  std::size_t pos() const { return pos_; }
  // Moves the cursor to `p` (for callers that scan a token themselves). Pre: pos() <= p <= size.
  void skip_to(std::size_t p) { pos_ = p; }
  char peek() {
    skip_ws();
    return pos_ < text_.size() ? text_[pos_] : '\0';
  }
  bool accept(char c) {
    if (peek() != c) return false;
    ++pos_;
    return true;
  }
  void expect(char c, std::string_view context) {
    if (!accept(c)) {
      if (at_end()) fail(fmt::format("expected '{}' {}, found the end of the text", c, context));
      fail(fmt::format("expected '{}' {}, found '{}'", c, context, text_[pos_]));
    }
  }
  bool at_ident() {
    char c = peek();
    return std::isalpha(static_cast<unsigned char>(c)) || c == '_';
  }
  std::string_view ident(std::string_view context) {
    skip_ws();
    if (!at_ident()) {
      if (at_end()) fail(fmt::format("expected {}, found the end of the text", context));
      fail(fmt::format("expected {}, found '{}'", context, text_[pos_]));
    }
    std::size_t start = pos_;
    while (pos_ < text_.size() &&
           (std::isalnum(static_cast<unsigned char>(text_[pos_])) || text_[pos_] == '_'))
      ++pos_;
    return text_.substr(start, pos_ - start);
  }
  // A non-negative decimal integer; rejects signs and overflow with a message.
  std::int64_t integer(std::string_view context) {
    skip_ws();
    std::size_t start = pos_;
    if (pos_ < text_.size() && (text_[pos_] == '-' || text_[pos_] == '+'))
      fail(fmt::format("{} must be a positive integer", context));
    if (pos_ >= text_.size() || !std::isdigit(static_cast<unsigned char>(text_[pos_]))) {
      if (at_end()) fail(fmt::format("expected {}, found the end of the text", context));
      fail(fmt::format("expected {}, found '{}'", context, text_[pos_]));
    }
    std::int64_t v = 0;
    while (pos_ < text_.size() && std::isdigit(static_cast<unsigned char>(text_[pos_]))) {
      int d = text_[pos_] - '0';
      if (v > (INT64_MAX - d) / 10) fail(fmt::format("{} is too large", context), start);
      v = v * 10 + d;
      ++pos_;
    }
    return v;
  }

 private:
  std::string_view text_;
  std::string_view what_;
  std::size_t pos_ = 0;
};

}  // namespace reshard::detail
