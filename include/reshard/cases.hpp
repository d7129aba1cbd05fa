#pragma once
// Case files (docs/design.md 6): one case a line, `name | mesh | from | to`, `#` starts a comment,
// a trailing `# tight` marks a case whose collective plan reaches the lower bound. An optional
// fifth field names the target mesh of a cross-mesh case: `name | src_mesh | from | to | dst_mesh`.
#include <string>
#include <vector>

namespace reshard {

struct Case {
  std::string name, mesh, from, to;
  std::string to_mesh;  // the fifth field; empty: the target lives on `mesh`
  bool tight = false;
  int line = 0;
};

// Throws Error naming the file and line of a malformed case.
std::vector<Case> read_cases(const std::string& path);
std::vector<Case> parse_cases(const std::string& text, const std::string& origin = "<text>");

}  // namespace reshard
