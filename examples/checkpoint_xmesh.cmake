# cmake -DMPIEXEC=mpirun -DEXE=path/to/checkpoint_reshard -DDIR=scratch -P checkpoint_xmesh.cmake
# A checkpoint of several arrays saved on one rank set and loaded on another through one
# batched cross-mesh plan: disjoint ranks (saved on 0-3, loaded on 4-7) and overlapping ranks
# (read on 2-5, loaded on 0-2), every element of every array checked by the program; then a
# damaged list of arrays, a wrong number of types, a damaged shard and readers beyond the
# world must each end non-zero within 30 s naming the problem.
include(${CMAKE_CURRENT_LIST_DIR}/../cmake/ReshardExpect.cmake)

function(expect_loaded what np regex)
  reshard_run(TIMEOUT 60 COMMAND ${MPIEXEC} --oversubscribe -np ${np} ${EXE} ${ARGN})
  message(STATUS "${what}: exit ${rc} after ${seconds} s; output:\n${out}")
  if(NOT rc STREQUAL "0" OR NOT out MATCHES "${regex}")
    message(FATAL_ERROR "${what}: expected exit 0 and '${regex}'")
  endif()
endfunction()

set(saved --type "f32[130{fsdp}, 33{tp}]" --type "bf16[64, 96{tp}]" --type "i64[77{fsdp,tp}]" --type "u8[5, 3]")
set(rows --type "f32[130, 33{tp}]" --type "bf16[64{tp}, 96]" --type "i64[77{tp}]" --type "u8[5{tp}, 3]")
set(plan "0 wrong element\\(s\\); read on fsdp=2,tp=2(@[0-9,-]+)? and moved by one batched cross-mesh plan \\(4 array\\(s\\)")

file(REMOVE_RECURSE ${DIR})
expect_loaded("save on ranks 0-3" 8 "saved 4 array\\(s\\) on mesh fsdp=2,tp=2" --save ${DIR} --mesh "fsdp=2,tp=2@0-3" ${saved})
expect_loaded("load on disjoint ranks 4-7" 8 "${plan}" --load ${DIR} --mesh "r=2,tp=2@4-7" ${rows})
expect_loaded("load on overlapping ranks" 6 "${plan}" --load ${DIR} --mesh "tp=3@0-2" ${rows} --readers 2-5)

function(expect_refused what np regex)
  reshard_expect_failure("${what}" TIMEOUT 30 MATCH "${regex}" COMMAND ${MPIEXEC} --oversubscribe -np ${np} ${EXE} ${ARGN})
endfunction()
set(load --load ${DIR} --mesh "r=2,tp=2@4-7" ${rows})
file(READ ${DIR}/arrays.json good)
file(WRITE ${DIR}/arrays.json "{\"format\": ")
expect_refused("arrays.json not JSON" 8 "arrays.json: not valid JSON" ${load})
string(REPLACE "\"array-1\"" "\"../x\"" bad "${good}")
file(WRITE ${DIR}/arrays.json "${bad}")
expect_refused("array outside the dir" 8 "array name \"../x\" is not a plain file name" ${load})
string(REPLACE "\"array-1\"" "\"array-0\"" bad "${good}")
file(WRITE ${DIR}/arrays.json "${bad}")
expect_refused("array listed twice" 8 "array name \"array-0\" is listed twice" ${load})
file(WRITE ${DIR}/arrays.json "${good}")
expect_refused("too few types" 8 "the checkpoint holds 4 array\\(s\\), 1 target type\\(s\\) were given"
               --load ${DIR} --mesh "r=2,tp=2@4-7" --type "f32[130, 33{tp}]")
# array-1's two blocks have the same size: the copy passes the size check, not the CRC.
file(COPY_FILE ${DIR}/array-1/shard-00001.bin ${DIR}/kept.bin)
file(COPY_FILE ${DIR}/array-1/shard-00000.bin ${DIR}/array-1/shard-00001.bin)
expect_refused("damaged shard" 8 "array-1: file shard-00001.bin has CRC-32 [0-9a-f]+, the manifest says [0-9a-f]+ \\(file or manifest damaged\\)" ${load})
file(RENAME ${DIR}/kept.bin ${DIR}/array-1/shard-00001.bin)
expect_refused("readers beyond the world" 6 "--readers: mesh fsdp=2,tp=2@3-6 lists rank 6, beyond the 6 ranks here"
               --load ${DIR} --mesh "tp=3@0-2" ${rows} --readers 3-6)
expect_refused("readers not a rank list" 6 "mesh at position [0-9]+: .*\n.*fsdp=2,tp=2@3-x"
               --load ${DIR} --mesh "tp=3@0-2" ${rows} --readers 3-x)
expect_loaded("load of the restored checkpoint" 8 "${plan}" ${load})
