#pragma once
// The checkpoint manifest of checkpoint_reshard.cpp: its text and its reader, apart so that the
// fuzz target (tests/fuzz/fuzz_manifest.cpp) runs the same reader. The reader checks everything
// that can be known without touching the shard files and throws std::runtime_error naming the
// problem; it never recurses with the input's nesting, truncates a number or accepts a name
// with a control character.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "reshard/error.hpp"
#include "reshard/mesh.hpp"
#include "reshard/type.hpp"

namespace checkpoint {

using idx = std::int64_t;
using reshard::Box;
using reshard::Mesh;
using reshard::Type;

inline constexpr int kVersion = 1;
inline constexpr const char* kFormat = "reshard-checkpoint";

// Whether `device` writes its block: its coordinate is 0 on every axis the type does not use
// (those axes only replicate the block).
inline bool writes_block(const Mesh& mesh, const Type& type, int device) {
  for (int a = 0; a < mesh.num_axes(); ++a)
    if (!type.uses(mesh.axes()[a].name) && mesh.coord(device, a) != 0) return false;
  return true;
}

inline std::string file_name(int device) { return fmt::format("shard-{:05d}.bin", device); }

struct FileEntry {
  std::string name;
  int device = 0;
  Box box;
  idx bytes = 0;
  std::uint32_t crc = 0;
};

struct Manifest {
  Mesh mesh;
  Type type;
  std::vector<FileEntry> files;
};

// The manifest's text: the header fields, then one line per file.
inline std::string manifest_text(const Manifest& m) {
  nlohmann::ordered_json head = {{"format", kFormat},
                                 {"version", kVersion},
                                 {"mesh", m.mesh.to_string()},
                                 {"type", m.type.to_string()},
                                 {"dtype", std::string(reshard::name_of(m.type.dtype))},
                                 {"shape", m.type.global_shape()},
                                 {"byte_order", "little"}};
  std::string text = "{\n";
  for (const auto& [key, value] : head.items()) text += fmt::format(" \"{}\": {},\n", key, value.dump(-1, ' ', false));
  text += " \"files\": [";
  for (std::size_t i = 0; i < m.files.size(); ++i) {
    const FileEntry& f = m.files[i];
    nlohmann::ordered_json box = nlohmann::ordered_json::array();
    for (const auto& iv : f.box.dims) box.push_back({iv.lo, iv.hi});
    const nlohmann::ordered_json e = {{"file", f.name}, {"device", f.device}, {"box", box}, {"bytes", f.bytes},
                                      {"crc32", fmt::format("{:08x}", f.crc)}};
    text += (i ? ",\n  " : "\n  ") + e.dump();
  }
  return text + "\n ]\n}\n";
}

// Limits of what a manifest may be: the reader refuses more, by name, instead of recursing
// off the stack (nlohmann's parser recurses per nesting level) or reading without end.
inline constexpr int kMaxManifestDepth = 16;                        // a real manifest nests 4 deep
inline constexpr idx kMaxManifestBytes = idx{64} << 20;            // ~300 bytes per file entry

// The deepest nesting of arrays and objects in `text` (strings skipped), found without
// recursion; stops counting at `limit + 1`.
inline int json_depth(const std::string& text, int limit) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
      if (deepest > limit) return deepest;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

// An integer field in [lo, hi]: JSON numbers such as 64.5 or 2^40 for an int are refused, not
// truncated.
inline idx integer_field(const nlohmann::json& v, const std::string& what, idx lo, idx hi) {
  if (!v.is_number_integer()) throw std::runtime_error(fmt::format("{} {} is not an integer", what, v.dump()));
  if (v.is_number_unsigned() ? v.get<std::uint64_t>() > static_cast<std::uint64_t>(hi) : (v.get<idx>() < lo || v.get<idx>() > hi))
    throw std::runtime_error(fmt::format("{} {} is out of range [{}, {}]", what, v.dump(), lo, hi));
  return v.get<idx>();
}

inline std::vector<idx> integer_list(const nlohmann::json& v, const std::string& what, idx lo, idx hi) {
  if (!v.is_array()) throw std::runtime_error(fmt::format("{} {} is not a list", what, v.dump()));
  std::vector<idx> r;
  for (const auto& x : v) r.push_back(integer_field(x, what, lo, hi));
  return r;
}

// Parses and checks a manifest: everything that can be known without touching the shard files.
// Throws std::runtime_error naming the problem.
inline Manifest parse_manifest(const std::string& text) {
  nlohmann::json j;
  if (static_cast<idx>(text.size()) > kMaxManifestBytes)
    throw std::runtime_error(fmt::format("{} bytes, over the limit of {}", text.size(), kMaxManifestBytes));
  if (int depth = json_depth(text, kMaxManifestDepth); depth > kMaxManifestDepth)
    throw std::runtime_error(fmt::format("nested more than {} levels deep", kMaxManifestDepth));
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(fmt::format("not valid JSON ({})", e.what()));
  }
  auto field = [&](const nlohmann::json& obj, const char* key) -> const nlohmann::json& {
    if (!obj.is_object() || !obj.contains(key)) throw std::runtime_error(fmt::format("no \"{}\" field", key));
    return obj.at(key);
  };
  try {
    if (field(j, "format") != kFormat)
      throw std::runtime_error(fmt::format("format is {}, not \"{}\"", field(j, "format").dump(), kFormat));
    const auto& version = field(j, "version");
    if (!version.is_number_integer() || version.get<int>() != kVersion)
      throw std::runtime_error(fmt::format("format version {} is not supported (this program reads version {})",
                                           version.dump(), kVersion));
    if (field(j, "byte_order") != "little")
      throw std::runtime_error(fmt::format("byte_order {} is not supported (only \"little\")", field(j, "byte_order").dump()));
    Manifest m;
    try {
      m.mesh = Mesh::parse(field(j, "mesh").get<std::string>());
      m.type = Type::parse(field(j, "type").get<std::string>(), m.mesh);
    } catch (const reshard::Error& e) {
      throw std::runtime_error(fmt::format("mesh {} / type {}: {}", field(j, "mesh").dump(), field(j, "type").dump(), e.what()));
    }
    if (field(j, "dtype").get<std::string>() != reshard::name_of(m.type.dtype))
      throw std::runtime_error(fmt::format("dtype {} does not match the type {}", field(j, "dtype").dump(), m.type));
    if (integer_list(field(j, "shape"), "shape entry", 0, std::numeric_limits<idx>::max()) != m.type.global_shape())
      throw std::runtime_error(fmt::format("shape {} does not match the type {}", field(j, "shape").dump(), m.type));
    if (m.type.op != reshard::ReduceOp::none)
      throw std::runtime_error(fmt::format("type {} has a reduce clause; checkpoints hold reduced values", m.type));

    const std::size_t elem = reshard::size_of(m.type.dtype);
    std::map<int, std::string> seen;
    for (const auto& f : field(j, "files")) {
      FileEntry e;
      e.name = field(f, "file").get<std::string>();
      if (std::any_of(e.name.begin(), e.name.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }))
        throw std::runtime_error(fmt::format("file name {} holds a control character (NUL included)", field(f, "file").dump()));
      e.device = static_cast<int>(integer_field(field(f, "device"), fmt::format("file {}: device", e.name), 0,
                                                m.mesh.num_devices() - 1));
      e.bytes = integer_field(field(f, "bytes"), fmt::format("file {}: bytes", e.name), 0, std::numeric_limits<idx>::max());
      const std::string crc = field(f, "crc32").get<std::string>();
      std::size_t used = 0;
      try {
        e.crc = static_cast<std::uint32_t>(std::stoul(crc, &used, 16));
      } catch (const std::exception&) {
        used = 0;
      }
      if (used == 0 || used != crc.size() || crc.size() > 8) throw std::runtime_error(fmt::format("file {}: crc32 \"{}\" is not hexadecimal", e.name, crc));
      for (const auto& iv : field(f, "box")) {
        const auto p = integer_list(iv, fmt::format("file {}: box bound", e.name), 0, std::numeric_limits<idx>::max());
        if (p.size() != 2) throw std::runtime_error(fmt::format("file {}: box {} is not a list of [lo, hi]", e.name, field(f, "box").dump()));
        e.box.dims.push_back({p[0], p[1]});
      }
      if (e.name.empty() || e.name.find('/') != std::string::npos || e.name == "." || e.name == "..")
        throw std::runtime_error(fmt::format("file name \"{}\" is not a plain file name", e.name));
      if (e.device < 0 || e.device >= m.mesh.num_devices())
        throw std::runtime_error(fmt::format("file {}: device {} is not a device of mesh {}", e.name, e.device, m.mesh));
      if (!seen.emplace(e.device, e.name).second)
        throw std::runtime_error(fmt::format("files {} and {} both hold device {}'s block", seen[e.device], e.name, e.device));
      if (!writes_block(m.mesh, m.type, e.device))
        throw std::runtime_error(fmt::format("file {}: device {} does not write a block of {} (another device holds the same block)",
                                             e.name, e.device, m.type));
      const Box want = m.type.block(m.mesh, e.device);
      if (e.box != want)
        throw std::runtime_error(fmt::format("file {}: box {} is not device {}'s block {} of {}", e.name, e.box, e.device, want, m.type));
      if (e.bytes != want.volume() * static_cast<idx>(elem))
        throw std::runtime_error(fmt::format("file {}: {} bytes listed, but block {} of {} has {} bytes", e.name, e.bytes, want,
                                             m.type.dtype, want.volume() * static_cast<idx>(elem)));
      m.files.push_back(std::move(e));
    }
    for (int d = 0; d < m.mesh.num_devices(); ++d)
      if (writes_block(m.mesh, m.type, d) && !seen.count(d))
        throw std::runtime_error(fmt::format("no file holds device {}'s block {} (expected {})", d, m.type.block(m.mesh, d), file_name(d)));
    return m;
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(fmt::format("malformed field ({})", e.what()));
  }
}

// ---- checkpoints of several arrays ------------------------------------------------------
// A checkpoint of several arrays is a directory with one subdirectory per array, each a
// checkpoint of one array as above, and `arrays.json` listing them in order:
//
//   {"format": "reshard-checkpoint-arrays", "version": 1, "arrays": ["wq", "wk", "norm"]}

inline constexpr const char* kArraysFormat = "reshard-checkpoint-arrays";
inline constexpr idx kMaxArraysBytes = idx{1} << 20;

// A plain name for a file or directory of a checkpoint: not empty, no '/', not . or .., no
// control character. Throws std::runtime_error naming `what`.
inline void check_plain_name(const std::string& name, const std::string& what) {
  if (std::any_of(name.begin(), name.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }))
    throw std::runtime_error(fmt::format("{} \"{}\" holds a control character (NUL included)", what, name));
  if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..")
    throw std::runtime_error(fmt::format("{} \"{}\" is not a plain file name", what, name));
}

inline std::string arrays_text(const std::vector<std::string>& names) {
  nlohmann::ordered_json j = {{"format", kArraysFormat}, {"version", kVersion}, {"arrays", names}};
  return j.dump(1) + "\n";
}

// Parses and checks arrays.json: the names, unique and plain. Throws std::runtime_error.
inline std::vector<std::string> parse_arrays(const std::string& text) {
  if (static_cast<idx>(text.size()) > kMaxArraysBytes)
    throw std::runtime_error(fmt::format("{} bytes, over the limit of {}", text.size(), kMaxArraysBytes));
  if (json_depth(text, kMaxManifestDepth) > kMaxManifestDepth)
    throw std::runtime_error(fmt::format("nested more than {} levels deep", kMaxManifestDepth));
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(fmt::format("not valid JSON ({})", e.what()));
  }
  if (!j.is_object() || j.value("format", nlohmann::json()) != kArraysFormat)
    throw std::runtime_error(fmt::format("format is not \"{}\"", kArraysFormat));
  if (!j.contains("version") || !j["version"].is_number_integer() || j["version"].get<idx>() != kVersion)
    throw std::runtime_error(fmt::format("format version {} is not supported (this program reads version {})",
                                         j.value("version", nlohmann::json()).dump(), kVersion));
  if (!j.contains("arrays") || !j["arrays"].is_array() || j["arrays"].empty())
    throw std::runtime_error("no \"arrays\" list, or an empty one");
  std::vector<std::string> names;
  std::set<std::string> seen;  // a list of a million short names must not take quadratic time
  for (const auto& v : j["arrays"]) {
    if (!v.is_string()) throw std::runtime_error(fmt::format("array name {} is not a string", v.dump()));
    names.push_back(v.get<std::string>());
    check_plain_name(names.back(), "array name");
    if (!seen.insert(names.back()).second)
      throw std::runtime_error(fmt::format("array name \"{}\" is listed twice", names.back()));
  }
  return names;
}

}  // namespace checkpoint
