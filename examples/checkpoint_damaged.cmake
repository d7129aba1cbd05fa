# cmake -DMPIEXEC=mpirun -DEXE=path/to/checkpoint_reshard -DDIR=scratch -P checkpoint_damaged.cmake
# Saves a checkpoint at 4 ranks, then damages it several ways; each load at 2 ranks must end
# within 30 s with a non-zero exit and an error that names the problem.
include(${CMAKE_CURRENT_LIST_DIR}/../cmake/ReshardExpect.cmake)
function(run_ckpt np)
  reshard_run(TIMEOUT 30 COMMAND ${MPIEXEC} --oversubscribe -np ${np} ${EXE} ${ARGN})
  set(rc "${rc}" PARENT_SCOPE)
  set(out "${out}" PARENT_SCOPE)
endfunction()

set(load --load ${DIR} --mesh tp=2 --type "f32[256, 64{tp}]")
# expect_refused(<what> <regex> [load args...]): the load fails, non-zero, saying <regex>.
function(expect_refused what regex)
  set(args ${ARGN})
  if(NOT args)
    set(args ${load})
  endif()
  reshard_expect_failure("${what}" TIMEOUT 30 MATCH "${regex}" COMMAND ${MPIEXEC} --oversubscribe -np 2 ${EXE} ${args})
endfunction()

file(REMOVE_RECURSE ${DIR})
run_ckpt(4 --save ${DIR} --mesh tp=4 --type "f32[256{tp}, 64]")
if(NOT rc STREQUAL "0")
  message(FATAL_ERROR "save failed (${rc}): ${out}")
endif()
run_ckpt(2 ${load})
if(NOT rc STREQUAL "0")
  message(FATAL_ERROR "load of the intact checkpoint failed (${rc}): ${out}")
endif()
file(READ ${DIR}/manifest.json good)

string(REPLACE "\"version\": 1" "\"version\": 7" bad "${good}")
file(WRITE ${DIR}/manifest.json "${bad}")
expect_refused("wrong version" "format version 7 is not supported")
file(WRITE ${DIR}/manifest.json "${good}")

file(RENAME ${DIR}/shard-00003.bin ${DIR}/kept.bin)
expect_refused("missing file" "file shard-00003.bin is missing")
file(WRITE ${DIR}/shard-00003.bin "short")
expect_refused("wrong size" "file shard-00003.bin has 5 bytes, the manifest says 16384")
file(COPY_FILE ${DIR}/shard-00002.bin ${DIR}/shard-00003.bin)
expect_refused("bad checksum" "file shard-00003.bin has CRC-32 [0-9a-f]+, the manifest says [0-9a-f]+ \\(file or manifest damaged\\)")
file(RENAME ${DIR}/kept.bin ${DIR}/shard-00003.bin)

expect_refused("target does not fit" "does not fit the checkpoint" --load ${DIR} --mesh tp=2 --type "f32[256, 65{tp}]")

file(WRITE ${DIR}/manifest.json "{\"format\": \"reshard-checkpoint\"")
expect_refused("truncated manifest" "not valid JSON")
file(WRITE ${DIR}/manifest.json "${good}")
run_ckpt(2 ${load})
if(NOT rc STREQUAL "0")
  message(FATAL_ERROR "load of the restored checkpoint failed (${rc}): ${out}")
endif()
