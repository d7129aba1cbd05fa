#include "reshard/error.hpp"

namespace reshard {

ParseError::ParseError(const std::string& what, std::string text, std::size_t position)
    : Error(what), text_(std::move(text)), position_(position) {}

}  // namespace reshard
