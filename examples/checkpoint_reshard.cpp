// checkpoint_reshard: save sharded arrays from one mesh and type, load them on another mesh and
// type (the everyday "trained with TP=8, serving with TP=2"), on the same ranks or on others.
//
//   mpirun -np 8 build/bin/checkpoint_reshard --save /tmp/ckpt --mesh tp=8 --type 'f32[1024{tp}, 256]'
//   mpirun -np 2 build/bin/checkpoint_reshard --load /tmp/ckpt --mesh tp=2 --type 'f32[1024, 256{tp}]'
//   mpirun -np 8 build/bin/checkpoint_reshard --save /tmp/model --mesh 'fsdp=2,tp=2@0-3' \
//       --type 'f32[4096{fsdp}, 1024{tp}]' --type 'bf16[1024, 4096{tp}]'
//   mpirun -np 8 build/bin/checkpoint_reshard --load /tmp/model --mesh 'r=2,tp=2@4-7' \
//       --type 'f32[4096, 1024{tp}]' --type 'bf16[1024{tp}, 4096]'        # read on 0-3, served on 4-7
//   mpirun -np 4 build/bin/checkpoint_reshard --selftest /tmp/ckpt-test
//
// The saved arrays are index fills (element i of the global array holds i, docs/design.md 5); a
// load checks every element it got against it.
//
// Layout of a checkpoint of one array (directory DIR):
//
//   manifest.json      {
//                        "format": "reshard-checkpoint",
//                        "version": 1,
//                        "mesh": "tp=8",
//                        "type": "f32[1024{tp}, 256]",
//                        "dtype": "f32",
//                        "shape": [1024,256],
//                        "byte_order": "little",
//                        "files": [
//                         {"file":"shard-00000.bin","device":0,"box":[[0,128],[0,256]],"bytes":131072,"crc32":"21cadba2"},
//                         ...
//                        ]
//                       }
//   shard-DDDDD.bin    device D's block of the type, dense, row-major, little-endian
//
// A checkpoint of several arrays (--type repeated) holds one such directory per array,
// array-0, array-1, ..., listed in DIR/arrays.json (checkpoint_manifest.hpp); the arrays share
// the mesh they were saved on. The mesh is recorded without the ranks it ran on.
//
// A block held by several devices (axes the type does not use replicate it) is written once,
// by the device whose coordinates on those axes are all 0. A load first checks, on rank 0, the
// list of arrays and every manifest (format, version, mesh, type, that the files cover every
// block, that each file exists with its size). Then, when the saved mesh fits in the world, it
// is placed on reader ranks (--readers, default its first ranks), each reader reads its saved
// block of every array whole (one pread each, CRC-32 checked in the same pass unless
// --no-checksum), and ONE batched cross-mesh plan (reshard::XContext) moves all arrays to the
// target mesh: every rank receives exactly the target bytes it did not read, one message per
// peer and phase for all arrays together. When the saved mesh has more devices than the world
// has ranks, each rank reads from every file whose block meets its target block only the
// intersection, one pread per contiguous run (checksums shared out over the ranks first).
// Any problem is agreed by all ranks (the lowest rank's message wins): every rank exits 1 with
// the same message, none hangs.
#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <mpi.h>
#include <nlohmann/json.hpp>
#include <zlib.h>

#include "reshard/context.hpp"
#include "reshard/error.hpp"
#include "reshard/host_kernels.hpp"
#include "reshard/xcontext.hpp"
#include "checkpoint_manifest.hpp"

namespace {

using namespace checkpoint;
namespace fs = std::filesystem;
using idx = std::int64_t;
using reshard::Box;
using reshard::Mesh;
using reshard::Type;

static_assert(std::endian::native == std::endian::little, "shards are written in host byte order: little-endian");

// A problem every rank agreed on (same message everywhere).
struct CheckpointError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

int rank_of(MPI_Comm comm) {
  int r = 0;
  MPI_Comm_rank(comm, &r);
  return r;
}
int size_of(MPI_Comm comm) {
  int n = 0;
  MPI_Comm_size(comm, &n);
  return n;
}

// Collective over `comm`: if any rank has a local error, every rank throws the lowest such
// rank's message.
void agree(MPI_Comm comm, const std::string& local_error) {
  const int me = rank_of(comm);
  int who = local_error.empty() ? INT_MAX : me;
  MPI_Allreduce(MPI_IN_PLACE, &who, 1, MPI_INT, MPI_MIN, comm);
  if (who == INT_MAX) return;
  std::string msg = who == me ? local_error : std::string();
  int len = static_cast<int>(msg.size());
  MPI_Bcast(&len, 1, MPI_INT, who, comm);
  msg.resize(static_cast<std::size_t>(len));
  MPI_Bcast(msg.data(), len, MPI_CHAR, who, comm);
  throw CheckpointError(msg);
}

// CRC-32 (IEEE 802.3) by zlib, the same value as Python's zlib.crc32; zlib takes uInt lengths,
// so large buffers go in pieces.
std::uint32_t crc32(const void* data, std::size_t n, std::uint32_t crc = 0) {
  const auto* p = static_cast<const Bytef*>(data);
  uLong c = crc;
  for (constexpr std::size_t kPiece = std::size_t{1} << 30; n > 0;) {
    const std::size_t piece = std::min(n, kPiece);
    c = ::crc32(c, p, static_cast<uInt>(piece));
    p += piece, n -= piece;
  }
  return static_cast<std::uint32_t>(c);
}

std::string human(idx bytes) {
  if (bytes >= (idx{1} << 20)) return fmt::format("{:.1f} MiB", double(bytes) / double(1 << 20));
  if (bytes >= (idx{1} << 10)) return fmt::format("{:.1f} KiB", double(bytes) / double(1 << 10));
  return fmt::format("{} B", bytes);
}

// ------------------------------------------------------------------------------------------
// File I/O.

std::string write_file(const fs::path& path, const void* data, std::size_t n) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return fmt::format("cannot create {}: {}", path.string(), std::strerror(errno));
  const bool ok = std::fwrite(data, 1, n, f) == n;
  const int err = errno;
  if (std::fclose(f) != 0 || !ok) return fmt::format("cannot write {}: {}", path.string(), std::strerror(ok ? errno : err));
  return {};
}

// Reads n bytes at `offset`; an error message, or empty.
std::string pread_all(int fd, const fs::path& path, void* out, std::size_t n, idx offset) {
  auto* p = static_cast<char*>(out);
  while (n > 0) {
    const ssize_t r = ::pread(fd, p, n, static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return fmt::format("cannot read {}: {}", path.string(), std::strerror(errno));
    if (r == 0) return fmt::format("{} ends early, at byte {}", path.string(), offset);
    p += r, n -= static_cast<std::size_t>(r), offset += r;
  }
  return {};
}

// Reads a whole regular file of at most `limit` bytes into `out`; an error message, or empty.
// Opened without blocking and checked with fstat first: a FIFO (whose open and read wait for a
// writer) or a link to a device such as /dev/zero (endless) is refused, not read.
std::string read_regular_file(const fs::path& path, idx limit, std::string& out) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return fmt::format("{} cannot be opened: {}", path.filename().string(), std::strerror(errno));
  struct stat st {};
  std::string err;
  if (::fstat(fd, &st) != 0) err = fmt::format("{}: fstat failed: {}", path.filename().string(), std::strerror(errno));
  else if (!S_ISREG(st.st_mode)) err = fmt::format("{} is not a regular file (a FIFO, device or directory)", path.filename().string());
  else if (st.st_size > limit) err = fmt::format("{} has {} bytes, over the limit of {}", path.filename().string(), st.st_size, limit);
  if (err.empty()) {
    out.resize(static_cast<std::size_t>(st.st_size));
    err = pread_all(fd, path, out.data(), out.size(), 0);
  }
  ::close(fd);
  return err;
}

// CRC-32 of a whole file.
std::string file_crc(const fs::path& path, std::uint32_t& crc) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return fmt::format("cannot open {}: {}", path.string(), std::strerror(errno));
  std::vector<char> buf(1 << 20);
  crc = 0;
  std::string err;
  for (;;) {
    const ssize_t r = ::read(fd, buf.data(), buf.size());
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) err = fmt::format("cannot read {}: {}", path.string(), std::strerror(errno));
    if (r <= 0) break;
    crc = crc32(buf.data(), static_cast<std::size_t>(r), crc);
  }
  ::close(fd);
  return err;
}

struct ReadStats {
  idx bytes = 0;  // bytes this rank read from shard files (the load itself, not the checksums)
  idx reads = 0;  // pread calls
  int files = 0;  // files opened
};

// Reads `piece` (a box inside the file's block `fbox`, row-major in the file) into `out`, dense
// with the piece's extents. The dims after k are whole in the piece, so each run over dim k and
// the dims after it is contiguous both in the file and in `out`: one pread per run.
std::string read_piece(int fd, const fs::path& path, const Box& fbox, const Box& piece, std::size_t elem, std::byte* out,
                       ReadStats& st) {
  const int r = static_cast<int>(fbox.dims.size());
  if (r == 0) {
    st.bytes += static_cast<idx>(elem), ++st.reads;
    return pread_all(fd, path, out, elem, 0);
  }
  std::vector<idx> stride(r, 1);  // of the file's array, in elements
  for (int d = r - 2; d >= 0; --d) stride[d] = stride[d + 1] * fbox.dims[d + 1].extent();
  int k = r - 1;
  while (k > 0 && piece.dims[k] == fbox.dims[k]) --k;
  const idx run = piece.dims[k].extent() * stride[k];
  std::vector<idx> at(k);  // index over dims 0..k-1 of the piece, last fastest
  for (int d = 0; d < k; ++d) at[d] = piece.dims[d].lo;
  const idx runs = piece.volume() / run;
  for (idx i = 0; i < runs; ++i) {
    idx offset = (piece.dims[k].lo - fbox.dims[k].lo) * stride[k];
    for (int d = 0; d < k; ++d) offset += (at[d] - fbox.dims[d].lo) * stride[d];
    const auto n = static_cast<std::size_t>(run) * elem;
    if (auto err = pread_all(fd, path, out + static_cast<std::size_t>(i) * n, n, offset * static_cast<idx>(elem)); !err.empty())
      return err;
    st.bytes += static_cast<idx>(n), ++st.reads;
    for (int d = k - 1; d >= 0 && ++at[d] == piece.dims[d].hi; --d) at[d] = piece.dims[d].lo;
  }
  return {};
}

// ------------------------------------------------------------------------------------------
// Save and load. Both are collective over `world` (every rank of it calls them); the Context
// may cover only its first ranks.

// Writes this rank's shard `local` of `type` (on ctx's mesh) and, on rank 0, the manifest.
// Returns the bytes written by all ranks together.
idx save(reshard::Context& ctx, MPI_Comm world, const Type& type, const void* local, const fs::path& dir) {
  const Mesh& mesh = ctx.mesh();
  std::string err;
  if (type.op != reshard::ReduceOp::none)
    err = fmt::format("cannot save {}: it has a pending reduction; reshard it to a type without a reduce clause first", type);
  if (err.empty() && rank_of(world) == 0) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) err = fmt::format("cannot create directory {}: {}", dir.string(), ec.message());
  }
  agree(world, err);

  struct Record {  // what each rank wrote
    std::int32_t device = -1, wrote = 0;
    std::int64_t bytes = 0;
    std::uint32_t crc = 0;
  } mine;
  if (ctx.participates() && writes_block(mesh, type, ctx.device())) {
    const auto bytes = static_cast<std::size_t>(ctx.local_bytes(type));
    mine = {ctx.device(), 1, static_cast<std::int64_t>(bytes), crc32(local, bytes)};
    err = write_file(dir / file_name(ctx.device()), local, bytes);
  }
  agree(world, err);

  std::vector<Record> all(static_cast<std::size_t>(size_of(world)));
  MPI_Gather(&mine, sizeof(Record), MPI_BYTE, all.data(), sizeof(Record), MPI_BYTE, 0, world);
  idx total = 0;
  if (rank_of(world) == 0) {
    Manifest m{mesh.without_ranks(), type, {}};  // the ranks it ran on are not part of the checkpoint
    for (const Record& r : all)
      if (r.wrote) {
        m.files.push_back({file_name(r.device), r.device, type.block(mesh, r.device), r.bytes, r.crc});
        total += r.bytes;
      }
    const fs::path tmp = dir / "manifest.json.tmp";
    const std::string text = manifest_text(m);
    err = write_file(tmp, text.data(), text.size());
    std::error_code ec;
    if (err.empty()) fs::rename(tmp, dir / "manifest.json", ec);  // readers never see half a manifest
    if (ec) err = fmt::format("cannot rename {}: {}", tmp.string(), ec.message());
  }
  agree(world, err);
  MPI_Bcast(&total, 1, MPI_INT64_T, 0, world);
  return total;
}

// One string from rank 0 to every rank of `world`.
void bcast_string(MPI_Comm world, std::string& s) {
  long long len = static_cast<long long>(s.size());
  MPI_Bcast(&len, 1, MPI_LONG_LONG, 0, world);
  s.resize(static_cast<std::size_t>(len));
  MPI_Bcast(s.data(), static_cast<int>(len), MPI_CHAR, 0, world);
}

// What rank 0 found in a checkpoint directory: the arrays' names (one empty name: the directory
// holds a single array) and their manifests' texts.
struct Listing {
  std::vector<std::string> names;
  std::vector<std::string> manifests;
};

fs::path array_dir(const fs::path& dir, const std::string& name) { return name.empty() ? dir : dir / name; }

// Rank 0: reads and checks the list of arrays, every manifest, the files' presence and sizes,
// and that every target type fits its array. Throws std::runtime_error naming the problem.
Listing list_checkpoint(const fs::path& dir, const std::vector<Type>& targets) {
  Listing l;
  std::error_code ec;
  const fs::path list = dir / "arrays.json";
  if (fs::exists(fs::symlink_status(list, ec))) {
    std::string text;
    if (std::string e = read_regular_file(list, kMaxArraysBytes, text); !e.empty()) throw std::runtime_error(e);
    try {
      l.names = parse_arrays(text);
    } catch (const std::exception& e) {
      throw std::runtime_error(fmt::format("arrays.json: {}", e.what()));
    }
  } else {
    l.names = {""};
  }
  if (l.names.size() != targets.size())
    throw std::runtime_error(fmt::format("the checkpoint holds {} array(s), {} target type(s) were given", l.names.size(),
                                         targets.size()));
  std::optional<Mesh> mesh;
  for (std::size_t i = 0; i < l.names.size(); ++i) {
    const fs::path adir = array_dir(dir, l.names[i]);
    const std::string where = l.names[i].empty() ? std::string() : fmt::format("array '{}': ", l.names[i]);
    std::string text;
    if (std::string e = read_regular_file(adir / "manifest.json", kMaxManifestBytes, text); !e.empty())
      throw std::runtime_error(where + e);
    Manifest m;
    try {
      m = parse_manifest(text);
    } catch (const std::exception& e) {
      throw std::runtime_error(fmt::format("{}manifest.json: {}", where, e.what()));
    }
    for (const auto& f : m.files) {
      const auto size = fs::file_size(adir / f.name, ec);
      if (ec) throw std::runtime_error(fmt::format("{}file {} is missing or unreadable: {}", where, f.name, ec.message()));
      if (!fs::is_regular_file(adir / f.name, ec))  // a FIFO or a device would block or never end
        throw std::runtime_error(fmt::format("{}file {} is not a regular file", where, f.name));
      if (static_cast<idx>(size) != f.bytes)
        throw std::runtime_error(fmt::format("{}file {} has {} bytes, the manifest says {}", where, f.name, size, f.bytes));
    }
    const Type& target = targets[i];
    if (target.dtype != m.type.dtype || target.global_shape() != m.type.global_shape())
      throw std::runtime_error(fmt::format("{}target type {} does not fit the checkpoint's {} (dtype and global shape must match)",
                                           where, target, m.type));
    if (target.op != reshard::ReduceOp::none)
      throw std::runtime_error(fmt::format("{}target type {} has a reduce clause; load into a type without one", where, target));
    // One batched plan reads every array on one mesh: the arrays' saved meshes must agree.
    if (mesh && !(*mesh == m.mesh))
      throw std::runtime_error(fmt::format("array '{}' was saved on mesh {}, array '{}' on {}: arrays of one checkpoint "
                                           "share their mesh", l.names[0], *mesh, l.names[i], m.mesh));
    mesh = m.mesh;
    l.manifests.push_back(std::move(text));
  }
  return l;
}

struct Loaded {
  std::vector<std::string> names;
  std::vector<Manifest> saved;
  std::vector<std::vector<std::byte>> local;  // per array: this rank's block of its target type
  ReadStats stats;
  // The batched path: the saved mesh placed on reader ranks, to the target mesh.
  std::unique_ptr<reshard::XContext> x;
  std::shared_ptr<const reshard::XPlan> plan;
};

// Direct reads (the saved mesh has more devices than the world has ranks, so it cannot be
// placed on reader ranks): checksums shared out over the ranks (file i by rank i % ranks),
// then each rank reads the intersections of its target block with the saved blocks.
std::string read_direct(reshard::Context& ctx, MPI_Comm world, const Type& target, const Manifest& saved,
                        const fs::path& dir, bool checksums, std::vector<std::byte>& local, ReadStats& stats) {
  const int me = rank_of(world), ranks = size_of(world);
  const auto& files = saved.files;
  std::string err;
  if (checksums) {
    for (std::size_t i = static_cast<std::size_t>(me); i < files.size() && err.empty(); i += static_cast<std::size_t>(ranks)) {
      std::uint32_t crc = 0;
      err = file_crc(dir / files[i].name, crc);
      if (err.empty() && crc != files[i].crc)
        err = fmt::format("checkpoint {}: file {} has CRC-32 {:08x}, the manifest says {:08x} (file or manifest damaged)",
                          dir.string(), files[i].name, crc, files[i].crc);
    }
    agree(world, err);
  }
  if (!ctx.participates()) return err;
  const std::size_t elem = reshard::size_of(target.dtype);
  const Box mine = ctx.local_block(target);
  local.resize(static_cast<std::size_t>(ctx.local_bytes(target)));
  std::vector<idx> shape(mine.dims.size()), at(mine.dims.size()), extent(mine.dims.size()), zero(mine.dims.size(), 0);
  for (std::size_t d = 0; d < mine.dims.size(); ++d) shape[d] = mine.dims[d].extent();
  std::vector<std::byte> stage;
  for (const auto& f : files) {
    const Box piece = reshard::intersect(mine, f.box);
    if (piece.empty() || !err.empty()) continue;
    const fs::path path = dir / f.name;
    const int fd = ::open(path.c_str(), O_RDONLY);
    if (fd < 0) {
      err = fmt::format("cannot open {}: {}", path.string(), std::strerror(errno));
      continue;
    }
    ++stats.files;
    const bool direct = piece == mine;  // the piece is the whole target block: read in place
    if (!direct) stage.resize(static_cast<std::size_t>(piece.volume()) * elem);
    err = read_piece(fd, path, f.box, piece, elem, direct ? local.data() : stage.data(), stats);
    ::close(fd);
    if (err.empty() && !direct) {
      for (std::size_t d = 0; d < mine.dims.size(); ++d)
        at[d] = piece.dims[d].lo - mine.dims[d].lo, extent[d] = piece.dims[d].extent();
      reshard::copy_box(stage.data(), extent, zero, local.data(), shape, at, extent, elem);
    }
  }
  return err;
}

// Reader rank `device` of `readers` (the saved mesh on chosen ranks): reads its saved block of
// array `saved`, the whole file of the device that wrote that block, in one pass that also
// checks its CRC-32.
std::string read_own_block(const Mesh& readers, int device, const Manifest& saved, const fs::path& dir, bool checksums,
                           std::vector<std::byte>& in, ReadStats& stats) {
  const Mesh mesh = readers.without_ranks();
  const Box block = saved.type.block(mesh, device);
  in.resize(static_cast<std::size_t>(saved.type.local_bytes(mesh, device)));
  const FileEntry* file = nullptr;
  for (const auto& f : saved.files)
    if (f.box == block) file = &f;
  if (!file) return fmt::format("checkpoint {}: no file holds block {}", dir.string(), block);  // parse_manifest checked
  const fs::path path = dir / file->name;
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return fmt::format("cannot open {}: {}", path.string(), std::strerror(errno));
  std::string err = pread_all(fd, path, in.data(), in.size(), 0);
  ::close(fd);
  ++stats.files, ++stats.reads, stats.bytes += static_cast<idx>(in.size());
  if (err.empty() && checksums)
    if (const std::uint32_t crc = crc32(in.data(), in.size()); crc != file->crc)
      err = fmt::format("checkpoint {}: file {} has CRC-32 {:08x}, the manifest says {:08x} (file or manifest damaged)",
                        dir.string(), file->name, crc, file->crc);
  return err;
}

// Loads every array of the checkpoint in `dir` as its type of `targets` on ctx's mesh.
//
// When the saved mesh fits in the world it is placed on reader ranks (`readers`, a rank list
// such as "4-7"; by default its first ranks), each reader reads its own saved blocks whole
// (one read per array, CRC-32 checked on the way), and one batched cross-mesh plan
// (XContext) moves every array from the readers to the target mesh: every rank receives
// exactly the target bytes it does not read itself, one message per peer and phase for all
// arrays. Otherwise each rank reads the pieces of its target blocks from the files.
Loaded load(reshard::Context& ctx, MPI_Comm world, const std::vector<Type>& targets, const fs::path& dir, bool checksums,
            const std::string& readers) {
  const int me = rank_of(world), ranks = size_of(world);
  // 1. Rank 0 reads and checks the list of arrays, the manifests and the files' sizes.
  Listing listing;
  std::string err;
  if (me == 0) {
    try {
      listing = list_checkpoint(dir, targets);
    } catch (const std::exception& e) {
      err = fmt::format("checkpoint {}: {}", dir.string(), e.what());
    }
  }
  agree(world, err);
  long long n = static_cast<long long>(listing.names.size());
  MPI_Bcast(&n, 1, MPI_LONG_LONG, 0, world);
  listing.names.resize(static_cast<std::size_t>(n));
  listing.manifests.resize(static_cast<std::size_t>(n));
  Loaded r;
  for (long long i = 0; i < n; ++i) {
    bcast_string(world, listing.names[i]);
    bcast_string(world, listing.manifests[i]);
    r.saved.push_back(parse_manifest(listing.manifests[i]));  // checked on rank 0: cannot throw here
  }
  r.names = listing.names;
  r.local.resize(static_cast<std::size_t>(n));
  const Mesh saved_mesh = r.saved[0].mesh.without_ranks();

  if (saved_mesh.num_devices() > ranks) {
    if (!readers.empty())
      throw CheckpointError(fmt::format("--readers: the checkpoint's mesh {} has {} devices, more than the {} ranks here",
                                        saved_mesh, saved_mesh.num_devices(), ranks));
    for (long long i = 0; i < n; ++i) {
      err = read_direct(ctx, world, targets[i], r.saved[i], array_dir(dir, r.names[i]), checksums, r.local[i], r.stats);
      agree(world, err);
    }
    return r;
  }

  // 2. Readers read their own saved blocks.
  const Mesh placed = readers.empty() ? saved_mesh : Mesh::parse(fmt::format("{}@{}", saved_mesh, readers));
  for (int d = 0; d < placed.num_devices(); ++d)
    if (placed.rank_of(d) >= ranks)
      throw CheckpointError(fmt::format("--readers: mesh {} lists rank {}, beyond the {} ranks here", placed,
                                        placed.rank_of(d), ranks));
  std::vector<std::vector<std::byte>> in(static_cast<std::size_t>(n));
  if (const int s = placed.device_of(me); s >= 0)
    for (long long i = 0; i < n && err.empty(); ++i)
      err = read_own_block(placed, s, r.saved[i], array_dir(dir, r.names[i]), checksums, in[i], r.stats);
  agree(world, err);

  // 3. One batched cross-mesh plan moves all arrays from the readers to the target mesh.
  r.x = std::make_unique<reshard::XContext>(placed, ctx.mesh(), world);  // MismatchError: a reader beyond the world
  std::vector<reshard::XArray> arrays;
  for (long long i = 0; i < n; ++i)
    arrays.push_back({r.names[i].empty() ? "array" : r.names[i], r.saved[i].type, targets[i]});
  r.plan = r.x->plan(arrays);
  std::vector<reshard::ConstBuffer> cin;
  std::vector<reshard::MutBuffer> mout;
  for (long long i = 0; i < n; ++i) {
    r.local[i].resize(static_cast<std::size_t>(ctx.local_bytes(targets[i])));
    cin.push_back({in[i].data(), in[i].size()});
    mout.push_back({r.local[i].data(), r.local[i].size()});
  }
  r.x->reshard(*r.plan, cin, mout);
  return r;
}

// ------------------------------------------------------------------------------------------
// Modes.

// Saves the index fill of each type on `mesh`: one type to `dir` itself, several to one
// subdirectory each (array-0, array-1, ...) listed in dir/arrays.json.
void run_save(MPI_Comm world, const fs::path& dir, const Mesh& mesh, const std::vector<std::string>& type_texts) {
  reshard::Context ctx(mesh, world);
  const bool several = type_texts.size() > 1;
  std::vector<std::string> names;
  idx total = 0;
  int files = 0;
  for (std::size_t i = 0; i < type_texts.size(); ++i) {
    const Type type = Type::parse(type_texts[i], mesh);
    std::vector<std::byte> local(static_cast<std::size_t>(ctx.local_bytes(type)));
    ctx.fill_index(type, local.data());
    names.push_back(several ? fmt::format("array-{}", i) : std::string());
    total += save(ctx, world, type, local.data(), array_dir(dir, names.back()));
    for (int d = 0; d < mesh.num_devices(); ++d) files += writes_block(mesh, type, d);
  }
  std::string err;
  if (several && rank_of(world) == 0) {
    const std::string text = arrays_text(names);
    err = write_file(dir / "arrays.json.tmp", text.data(), text.size());
    std::error_code ec;
    if (err.empty()) fs::rename(dir / "arrays.json.tmp", dir / "arrays.json", ec);
    if (ec) err = fmt::format("cannot rename {}: {}", (dir / "arrays.json.tmp").string(), ec.message());
  }
  agree(world, err);
  if (rank_of(world) == 0)
    fmt::print("saved {} array(s) on mesh {} to {}: {} in {} file(s) and their manifests\n", type_texts.size(), mesh,
               dir.string(), human(total), files);
}

// Loads into the types on `mesh`, checks every element; returns the number of wrong elements.
idx run_load(MPI_Comm world, const fs::path& dir, const Mesh& mesh, const std::vector<std::string>& type_texts,
             bool checksums, const std::string& readers = {}) {
  reshard::Context ctx(mesh, world);
  std::vector<Type> types;
  for (const auto& t : type_texts) types.push_back(Type::parse(t, mesh));
  const Loaded l = load(ctx, world, types, dir, checksums, readers);
  idx wrong = 0;
  for (std::size_t i = 0; i < types.size(); ++i)
    wrong += l.x ? l.x->count_index_mismatches(l.plan->arrays[i], l.local[i].data(), l.local[i].size())
                 : ctx.count_index_mismatches(types[i], l.local[i].data(), l.local[i].size());  // 0 outside the mesh
  MPI_Allreduce(MPI_IN_PLACE, &wrong, 1, MPI_INT64_T, MPI_MAX, world);
  idx most[3] = {l.stats.bytes, l.stats.reads, l.stats.files};
  MPI_Allreduce(MPI_IN_PLACE, most, 3, MPI_INT64_T, MPI_MAX, world);
  if (rank_of(world) == 0) {
    idx saved_bytes = 0;
    for (const auto& m : l.saved)
      for (const auto& f : m.files) saved_bytes += f.bytes;
    const std::string how =
        l.x ? fmt::format("read on {} and moved by one batched cross-mesh plan ({} array(s), {} message(s) and {} "
                          "received on the busiest rank)",
                          l.x->src_mesh(), l.plan->arrays.size(), l.plan->stats.calls_max,
                          human(l.plan->stats.bytes_recv_max))
            : fmt::format("read directly (the saved mesh has more devices than the {} ranks)", size_of(world));
    fmt::print("loaded {} ({} array(s), saved as {} on mesh {}) as {} on mesh {}: {} wrong element(s); {}; "
               "the busiest rank read {} of {} in {} pread(s) from {} file(s)\n",
               dir.string(), l.saved.size(), l.saved[0].type, l.saved[0].mesh, fmt::join(type_texts, ", "), mesh, wrong,
               how, human(most[0]), human(saved_bytes), most[1], most[2]);
  }
  return wrong;
}

// Expects the load to fail on every rank with a message containing `expect`.
bool expect_failure(MPI_Comm world, const char* what, const std::string& expect, const fs::path& dir, const Mesh& mesh,
                    const std::string& type_text) {
  std::string msg;
  try {
    run_load(world, dir, mesh, {type_text}, true);
  } catch (const CheckpointError& e) {
    msg = e.what();
  }
  int ok = msg.find(expect) != std::string::npos;
  MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, world);
  if (rank_of(world) == 0)
    fmt::print("  {:<22} {}: {}\n", what, ok ? "refused on every rank" : fmt::format("NOT REFUSED AS EXPECTED (wanted \"{}\")", expect),
               msg.empty() ? "(no error)" : msg);
  return ok != 0;
}

// Save on all ranks, load on the first half and on all, then damage the checkpoint in several
// ways and expect each load to be refused, the same way, on every rank.
bool run_selftest(MPI_Comm world, const fs::path& dir) {
  const int n = size_of(world), half = std::max(1, n / 2), me = rank_of(world);
  if (me == 0) fs::remove_all(dir);
  MPI_Barrier(world);
  bool ok = true;
  // Row-split on n ranks -> column-split on n/2: each rank reads a column strip of every file.
  const fs::path a = dir / "rows";
  const Mesh tp_n = Mesh::parse(fmt::format("tp={}", n)), tp_half = Mesh::parse(fmt::format("tp={}", half));
  run_save(world, a, tp_n, {"f32[1024{tp}, 256]"});
  ok &= run_load(world, a, tp_half, {"f32[1024, 256{tp}]"}, true) == 0;
  ok &= run_load(world, a, tp_half, {"f32[1024{tp}, 256]"}, true) == 0;
  // Uneven blocks, replicated over an axis (written once), loaded on another 2-D mesh.
  const fs::path b = dir / "uneven";
  const Mesh ab = Mesh::parse(n % 2 == 0 ? fmt::format("a=2,b={}", n / 2) : fmt::format("a=1,b={}", n));
  run_save(world, b, ab, {"f64[97{b}, 3, 45]"});
  ok &= run_load(world, b, Mesh::parse(fmt::format("x={},y={}", half, n / half)), {"f64[97{y}, 3, 45{x}]"}, true) == 0;
  ok &= run_load(world, b, Mesh::parse("x=1"), {"f64[97, 3, 45]"}, false) == 0;
  // Several arrays (uneven, mixed dtypes, one replicated) saved on the first ranks, loaded
  // through one batched plan on the other ranks (disjoint), then on every rank with the
  // readers on the last ranks (overlapping), then onto one device with the readers reversed.
  const fs::path c = dir / "arrays";
  const std::vector<std::string> saved_types = {"f32[67{tp}, 5]", "f64[9, 31{tp}]", "i32[130]", "u8[3{tp}, 7, 2]"};
  run_save(world, c, Mesh::parse(fmt::format("tp={}@0-{}", half, half - 1)), saved_types);
  const std::vector<std::string> row_types = {"f32[67, 5{x}]", "f64[9{x}, 31]", "i32[130{x}]", "u8[3, 7{x}, 2]"};
  if (n >= 2)
    ok &= run_load(world, c, Mesh::parse(fmt::format("x={}@{}-{}", n - half, half, n - 1)), row_types, true) == 0;
  ok &= run_load(world, c, Mesh::parse(fmt::format("x={}", n)), row_types, true, fmt::format("{}-{}", n - half, n - 1)) == 0;
  std::vector<int> reversed;  // readers in reverse order: device d of the saved mesh on rank half-1-d
  for (int r = half - 1; r >= 0; --r) reversed.push_back(r);
  ok &= run_load(world, c, Mesh::parse("x=1"), row_types, true, fmt::format("{}", fmt::join(reversed, ","))) == 0;

  // Damage the first checkpoint, one way at a time, restoring it after each.
  if (me == 0) fmt::print("damaged checkpoints:\n");
  const fs::path manifest = a / "manifest.json";
  std::string good;
  {
    std::ifstream in(manifest, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    good = s.str();
  }
  // Every rank has read the intact manifest before rank 0 starts damaging it.
  MPI_Barrier(world);
  const std::string last = file_name(n - 1);  // the shard file the damage goes to
  const fs::path backup = a / "backup.bin";
  auto damage = [&](const std::function<void()>& change, const char* what, const std::string& expect,
                    const std::string& type_text = "f32[1024, 256{tp}]") {
    if (me == 0) {
      fs::copy_file(a / last, backup, fs::copy_options::overwrite_existing);
      change();
    }
    MPI_Barrier(world);
    ok &= expect_failure(world, what, expect, a, tp_half, type_text);
    if (me == 0) {  // undo (the damage may have put a FIFO or a link in the manifest's place)
      fs::remove(manifest);
      write_file(manifest, good.data(), good.size());
      fs::rename(backup, a / last);
    }
    MPI_Barrier(world);
  };
  auto edit = [&](const std::string& from, const std::string& to) {
    return [&, from, to] {
      std::string t = good;
      const auto at = t.find(from);
      if (at != std::string::npos) t.replace(at, from.size(), to);
      write_file(manifest, t.data(), t.size());
    };
  };
  auto flip_byte = [&](long offset) {
    return [&, offset] {
      std::FILE* f = std::fopen((a / last).c_str(), "r+b");
      std::fseek(f, offset, SEEK_SET);
      const int c = std::fgetc(f);
      std::fseek(f, offset, SEEK_SET);
      std::fputc(c ^ 0x5a, f);
      std::fclose(f);
    };
  };
  const std::string crc_key = "\"crc32\":\"";
  const std::string first_crc = good.substr(good.find(crc_key) + crc_key.size(), 8);
  damage(edit("\"version\": 1", "\"version\": 2"), "wrong version", "format version 2 is not supported");
  damage(edit(crc_key + first_crc, crc_key + (first_crc == "00000000" ? "00000001" : "00000000")), "wrong checksum",
         "(file or manifest damaged)");
  damage(flip_byte(100), "damaged shard", "(file or manifest damaged)");
  damage([&] { std::FILE* f = std::fopen((a / last).c_str(), "ab"); std::fputc(0, f); std::fclose(f); }, "wrong file size",
         fmt::format("file {} has", last));
  damage([&] { fs::remove(a / last); }, "missing file", fmt::format("file {} is missing", last));
  damage(edit(fmt::format("\"file\":\"{}\"", last), "\"file\":\"../x.bin\""), "file outside the dir",
         "is not a plain file name");
  damage(edit("\"type\": \"f32[1024{tp}, 256]\"", "\"type\": \"f32[1024{tp}, 128]\""), "type vs shape",
         "does not match the type");
  damage([&] {
           auto j = nlohmann::json::parse(good);
           j["files"].erase(j["files"].size() - 1);
           const std::string t = j.dump(1);
           write_file(manifest, t.data(), t.size());
         },
         "entry missing", "no file holds device");
  damage(edit("{", "["), "not JSON", "not valid JSON");
  // Hostile manifests (issue 15): refused by name, never a crash, a hang or a truncation.
  damage([&] {
           const std::string t = std::string(200000, '[') + std::string(200000, ']');
           write_file(manifest, t.data(), t.size());
         },
         "nested 200,000 deep", "nested more than");
  damage([&] { fs::remove(manifest); ::mkfifo(manifest.c_str(), 0600); }, "manifest is a FIFO", "is not a regular file");
  damage([&] { fs::remove(manifest); fs::create_symlink("/dev/zero", manifest); }, "manifest links to /dev/zero",
         "is not a regular file");
  damage(edit("\"shape\": [1024,256]", "\"shape\": [1024,64.5]"), "fractional shape", "is not an integer");
  damage(edit("\"device\":0", "\"device\":1099511627776"), "device 2^40", "is out of range");
  damage(edit(fmt::format("\"file\":\"{}\"", file_name(0)), "\"file\":\"shard\\u0000.bin\""), "NUL in a file name",
         "control character");
  damage([] {}, "target does not fit", "does not fit the checkpoint", "f32[1024, 255{tp}]");
  if (me == 0) fmt::print("selftest: {}\n", ok ? "ok" : "FAILED");
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  const int me = rank_of(MPI_COMM_WORLD);
  std::string save_dir, load_dir, selftest_dir, mesh_text, readers;
  std::vector<std::string> type_texts;
  bool checksums = true;
  CLI::App app{"Save sharded arrays, load them on another mesh and type (run under mpirun)"};
  auto* mode = app.add_option_group("mode");
  mode->add_option("--save", save_dir, "save the index fill of each --type on --mesh to DIR");
  mode->add_option("--load", load_dir, "load DIR as the --type(s) on --mesh and check every element");
  mode->add_option("--selftest", selftest_dir, "save and load several ways, damaged checkpoints included, in DIR");
  mode->require_option(1);
  app.add_option("--mesh", mesh_text, "mesh, e.g. tp=8 or tp=4@4-7 (on chosen ranks)");
  app.add_option("--type", type_texts, "type, e.g. 'f32[1024{tp}, 256]'; repeat it for a checkpoint of several arrays");
  app.add_option("--readers", readers,
                 "load: the ranks that read the saved blocks, e.g. 0-3 (default: the first ranks); the arrays then "
                 "move to --mesh by one batched cross-mesh plan");
  app.add_flag("!--no-checksum", checksums, "load: skip the CRC-32 checks of the files");
  try {
    app.parse(argc, argv);
    if (selftest_dir.empty() && (mesh_text.empty() || type_texts.empty()))
      throw CLI::ValidationError("--save and --load need --mesh and --type");
    if (!readers.empty() && load_dir.empty()) throw CLI::ValidationError("--readers is an option of --load");
  } catch (const CLI::ParseError& e) {
    const int rc = me == 0 ? app.exit(e) : (e.get_exit_code() == 0 ? 0 : 2);
    MPI_Finalize();
    return rc;
  }

  int rc = 0;
  try {
    if (!selftest_dir.empty()) {
      rc = run_selftest(MPI_COMM_WORLD, selftest_dir) ? 0 : 1;
    } else {
      const Mesh mesh = Mesh::parse(mesh_text);
      for (const auto& t : type_texts) Type::parse(t, mesh);  // bad text fails here, on every rank alike
      if (!save_dir.empty()) run_save(MPI_COMM_WORLD, save_dir, mesh, type_texts);
      else rc = run_load(MPI_COMM_WORLD, load_dir, mesh, type_texts, checksums, readers) == 0 ? 0 : 1;
    }
  } catch (const CheckpointError& e) {  // agreed: every rank has the same message
    if (me == 0) fmt::print(stderr, "checkpoint_reshard: error: {}\n", e.what());
    rc = 1;
  } catch (const reshard::Error& e) {  // bad --mesh/--type, or a mesh larger than the world
    if (me == 0) fmt::print(stderr, "checkpoint_reshard: error: {}\n", e.what());
    rc = 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "checkpoint_reshard: rank {}: {}\n", me, e.what());
    MPI_Abort(MPI_COMM_WORLD, 3);
  }
  MPI_Finalize();
  return rc;
}
