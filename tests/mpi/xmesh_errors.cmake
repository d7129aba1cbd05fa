# cmake -DMPIEXEC=mpirun -DRESHARD=path/to/reshard -DDIR=scratch -P xmesh_errors.cmake
# Bad meshes on chosen ranks and bad batches (docs/design.md 10): each must end within 30 s,
# non-zero, with a message naming the problem (and, for text, its position).
include(${CMAKE_CURRENT_LIST_DIR}/../../cmake/ReshardExpect.cmake)
file(MAKE_DIRECTORY ${DIR})

reshard_expect_failure("a rank listed twice" TIMEOUT 30 MATCH "position 8: rank 1 is listed twice"
  COMMAND ${RESHARD} plan --mesh x=4@0-2,1 --from f32[8{x}] --to f32[8] --to-mesh y=2)
reshard_expect_failure("a range backwards" TIMEOUT 30 MATCH "the range 3-1 is empty"
  COMMAND ${RESHARD} plan --mesh x=2 --from f32[8{x}] --to f32[8] --to-mesh y=2@3-1)
reshard_expect_failure("too few ranks listed" TIMEOUT 30 MATCH "4 devices but 2 ranks are listed"
  COMMAND ${RESHARD} plan --mesh x=4@0,1 --from f32[8{x}] --to f32[8] --to-mesh y=2)
reshard_expect_failure("shapes disagree" TIMEOUT 30 MATCH "global shapes differ"
  COMMAND ${RESHARD} plan --mesh x=2 --from f32[8{x}] --to f32[9] --to-mesh y=2@2-3)

# A rank beyond the world: every rank reports it, the job ends.
reshard_expect_failure("a rank beyond the world" TIMEOUT 30 MATCH "lists rank 5, beyond the communicator's 4 ranks"
  COMMAND ${MPIEXEC} --oversubscribe -np 4 ${RESHARD} run --mesh x=2 --from f32[8{x}] --to f32[8{y}] --to-mesh y=2@4-5)

# A batch whose lines disagree on the meshes, or on an array's dtype.
file(WRITE ${DIR}/two_meshes.txt "a | x=2 | f32[8{x}] | f32[8] | y=2@2-3\nb | x=2 | f32[8{x}] | f32[8] | y=2@1-2\n")
reshard_expect_failure("a batch on two pairs of meshes" TIMEOUT 30 MATCH "two_meshes.txt:2: array 'b' is from mesh"
  COMMAND ${MPIEXEC} --oversubscribe -np 4 ${RESHARD} run --batch ${DIR}/two_meshes.txt --check)
file(WRITE ${DIR}/dtypes.txt "a | x=2 | f32[8{x}] | f32[8] | y=2@2-3\nb | x=2 | f32[8{x}] | i32[8] | y=2@2-3\n")
reshard_expect_failure("an array whose dtypes disagree" TIMEOUT 30 MATCH "dtypes.txt:2: array 'b': dtypes differ"
  COMMAND ${RESHARD} plan --batch ${DIR}/dtypes.txt --json)
reshard_expect_failure("--batch with --mesh" TIMEOUT 30 MATCH "leave out --mesh"
  COMMAND ${RESHARD} plan --batch ${DIR}/dtypes.txt --mesh x=2)
reshard_expect_failure("a cap below one element" TIMEOUT 30 MATCH "too small"
  COMMAND ${RESHARD} plan --mesh x=2 --from f32[8{x}] --to f32[8] --to-mesh y=2@2-3 --memory-cap 4)
