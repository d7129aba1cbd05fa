# Run by tests/package (cmake -P). MODE=installed: install BUILD_DIR into WORK/prefix. MODE=shared:
# configure, build and install SOURCE_DIR as shared libraries (libraries and tool only) first.
# Then, against WORK/prefix: the README's consumer project (cut out of README.md) built with
# find_package and no extra flags, run under mpirun; the same program and a core-only one built
# with pkg-config; the installed `reshard` started with no LD_LIBRARY_PATH; and, for a
# CUDA-enabled build, the host-only consumer must not link libcudart itself.
cmake_minimum_required(VERSION 3.25)

function(run_step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}):\n${out}\n${err}")
  endif()
  set(step_out "${out}${err}" PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE ${WORK})
set(prefix ${WORK}/prefix)
unset(ENV{LD_LIBRARY_PATH})

if(MODE STREQUAL "shared")
  set(launcher "")
  if(LAUNCHER)
    set(launcher -DCMAKE_CXX_COMPILER_LAUNCHER=${LAUNCHER} -DCMAKE_CUDA_COMPILER_LAUNCHER=${LAUNCHER})
  endif()
  run_step("configuring reshard (shared)" ${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK}/build -G ${GENERATOR}
           -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=${CXX} -DBUILD_SHARED_LIBS=ON
           -DRESHARD_BUILD_TESTS=OFF -DRESHARD_BUILD_EXAMPLES=OFF -DRESHARD_BUILD_BENCHMARKS=OFF
           -DRESHARD_WITH_CUDA=${CUDA_OPTION} -DRESHARD_WITH_NCCL=${NCCL_OPTION} ${launcher})
  run_step("building reshard (shared)" ${CMAKE_COMMAND} --build ${WORK}/build -j2)
  set(BUILD_DIR ${WORK}/build)
endif()
run_step("installing ${BUILD_DIR}" ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})

# The consumer, exactly as the README shows it: each file follows a "<!-- consumer: NAME -->" line.
file(READ ${SOURCE_DIR}/README.md readme)
set(consumer ${WORK}/consumer)
foreach(name CMakeLists.txt main.cpp)
  string(FIND "${readme}" "<!-- consumer: ${name} -->" at)
  if(at LESS 0)
    message(FATAL_ERROR "README.md has no consumer file ${name}")
  endif()
  string(SUBSTRING "${readme}" ${at} -1 rest)
  string(REGEX MATCH "```[a-z]*\n(.*)" _ "${rest}")
  string(FIND "${CMAKE_MATCH_1}" "```" end)
  string(SUBSTRING "${CMAKE_MATCH_1}" 0 ${end} text)
  file(WRITE ${consumer}/${name} "${text}")
endforeach()

run_step("configuring the README's consumer" ${CMAKE_COMMAND} -S ${consumer} -B ${consumer}/build -G ${GENERATOR}
         -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_PREFIX_PATH=${prefix})
run_step("building the README's consumer" ${CMAKE_COMMAND} --build ${consumer}/build)
run_step("running the README's consumer" ${MPIEXEC} -np 3 ${consumer}/build/app)
if(NOT step_out MATCHES "reshard ${VERSION}: f32\\[10{x}, 7\\] -> f32\\[10, 7{x}\\] on 3 rank\\(s\\): 0 wrong")
  message(FATAL_ERROR "the README's consumer printed:\n${step_out}")
endif()
message(STATUS "find_package consumer: ${step_out}")

# CUDA links only where it is used: the host-only consumer names no libcudart of its own.
if(HAVE_CUDA AND READELF)
  run_step("reading the consumer's dynamic section" ${READELF} -d ${consumer}/build/app)
  if(step_out MATCHES "libcudart")
    message(FATAL_ERROR "the host-only consumer links libcudart:\n${step_out}")
  endif()
endif()

# The installed tool starts (its RPATH finds reshard's shared libraries) and knows its version.
run_step("running the installed reshard" ${prefix}/bin/reshard --version)
if(NOT step_out MATCHES "reshard ${VERSION}")
  message(FATAL_ERROR "installed reshard --version printed: ${step_out}")
endif()
run_step("planning with the installed reshard" ${prefix}/bin/reshard plan --mesh x=2,y=3
         --from "f32[10{x,y},7]" --to "f32[10{y},7{x}]" --verify)
if(NOT step_out MATCHES "verified on the simulator: yes")
  message(FATAL_ERROR "installed reshard plan printed: ${step_out}")
endif()

# pkg-config: the same program through reshard-mpi, and a planning-only program through reshard.
if(PKG_CONFIG)
  include(GNUInstallDirs)
  file(GLOB pc_dirs ${prefix}/lib*/pkgconfig ${prefix}/lib/*/pkgconfig)
  string(REPLACE ";" ":" pc_path "${pc_dirs}")
  set(ENV{PKG_CONFIG_PATH} "${pc_path}")
  file(WRITE ${WORK}/plan_only.cpp [=[
#include <fmt/format.h>
#include "reshard/synth.hpp"
int main() {
  auto mesh = reshard::Mesh::parse("x=2,y=4");
  auto plan = reshard::synthesize(mesh, reshard::Type::parse("f32[32{y},16]", mesh),
                                  reshard::Type::parse("f32[32{x,y},16]", mesh));
  fmt::print("{} steps, {} bytes\n", plan.steps.size(), plan.stats.bytes_recv_max);
  return plan.steps.empty() ? 1 : 0;
}
]=])
  foreach(pc reshard reshard-mpi)
    run_step("pkg-config ${pc}" ${PKG_CONFIG} --cflags --libs ${pc})
    string(STRIP "${step_out}" flags)
    separate_arguments(flags UNIX_COMMAND "${flags}")
    if(pc STREQUAL "reshard")
      set(src ${WORK}/plan_only.cpp)
    else()
      set(src ${consumer}/main.cpp)
    endif()
    # Libraries after the sources, so that static archives resolve; RPATH for a shared install.
    file(GLOB libdir LIST_DIRECTORIES true ${prefix}/lib ${prefix}/lib64)
    list(GET libdir 0 libdir)
    run_step("compiling with pkg-config ${pc}" ${CXX} ${src} -o ${WORK}/pc_${pc} ${flags} -Wl,-rpath,${libdir})
    if(pc STREQUAL "reshard")
      run_step("running the pkg-config reshard program" ${WORK}/pc_${pc})
    else()
      run_step("running the pkg-config reshard-mpi program" ${MPIEXEC} -np 2 ${WORK}/pc_${pc})
      if(NOT step_out MATCHES "on 2 rank\\(s\\): 0 wrong")
        message(FATAL_ERROR "the pkg-config consumer printed:\n${step_out}")
      endif()
    endif()
  endforeach()
endif()
message(STATUS "package test (${MODE}): ok")
