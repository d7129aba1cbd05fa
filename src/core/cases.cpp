#include "reshard/cases.hpp"

#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "reshard/error.hpp"

namespace reshard {

namespace {
std::string trim(const std::string& s) {
  auto b = s.find_first_not_of(" \t\r");
  auto e = s.find_last_not_of(" \t\r");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}
}  // namespace

std::vector<Case> parse_cases(const std::string& text, const std::string& origin) {
  std::vector<Case> cases;
  std::istringstream in(text);
  std::string line;
  int no = 0;
  while (std::getline(in, line)) {
    ++no;
    std::string flags;
    if (auto h = line.find('#'); h != std::string::npos) {
      flags = line.substr(h + 1);
      line = line.substr(0, h);
    }
    if (trim(line).empty()) continue;
    std::vector<std::string> parts;
    std::size_t start = 0;
    for (std::size_t bar; (bar = line.find('|', start)) != std::string::npos; start = bar + 1)
      parts.push_back(trim(line.substr(start, bar - start)));
    parts.push_back(trim(line.substr(start)));
    if (parts.size() != 4 && parts.size() != 5)
      throw Error(fmt::format("{}:{}: expected 'name | mesh | from | to [| to_mesh]', found {} fields", origin, no,
                              parts.size()));
    for (std::size_t i = 0; i < parts.size(); ++i)
      if (parts[i].empty()) throw Error(fmt::format("{}:{}: field {} is empty", origin, no, i + 1));
    Case c{parts[0], parts[1], parts[2], parts[3], parts.size() == 5 ? parts[4] : "", false, no};
    c.tight = trim(flags).rfind("tight", 0) == 0;
    cases.push_back(std::move(c));
  }
  return cases;
}

std::vector<Case> read_cases(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw Error(fmt::format("cannot read case file '{}'", path));
  std::stringstream ss;
  ss << f.rdbuf();
  return parse_cases(ss.str(), path);
}

}  // namespace reshard
