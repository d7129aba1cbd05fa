# cmake -DMPIEXEC=mpirun -DRESHARD=path/to/reshard -P rank_mismatch.cmake
# Runs `reshard run` as two MPMD programs whose source types differ. Passes when the run ends
# within 30 s, non-zero, saying that the ranks disagree.
include(${CMAKE_CURRENT_LIST_DIR}/../../cmake/ReshardExpect.cmake)
# Each rank prints before MPI_Abort; the first abort may kill the other before it prints.
reshard_expect_failure("ranks given different types" TIMEOUT 30
  MATCH "ranks disagree on the plan \\(rank [01] has [^;]+; rank [01] has"
  COMMAND ${MPIEXEC} --oversubscribe
          -np 1 ${RESHARD} run --mesh x=2 --from f32[8{x},4] --to f32[8,4] :
          -np 1 ${RESHARD} run --mesh x=2 --from f32[8,4{x}] --to f32[8,4])
