# cmake -DMPIEXEC=mpirun -DRESHARD=path/to/reshard -P rank_mismatch.cmake
# Runs `reshard run` as two MPMD programs whose source types differ. Passes when the run ends
# within 30 s, non-zero, saying that the ranks disagree.
execute_process(
  COMMAND ${MPIEXEC} --oversubscribe
          -np 1 ${RESHARD} run --mesh x=2 --from f32[8{x},4] --to f32[8,4] :
          -np 1 ${RESHARD} run --mesh x=2 --from f32[8,4{x}] --to f32[8,4]
  TIMEOUT 30
  RESULT_VARIABLE rc
  OUTPUT_VARIABLE out
  ERROR_VARIABLE err)
message(STATUS "exit: ${rc}\nstdout:\n${out}\nstderr:\n${err}")
if(rc STREQUAL "0" OR rc MATCHES "timeout|Process terminated")
  message(FATAL_ERROR "expected a non-zero exit within 30 s, got: ${rc}")
endif()
# Each rank prints before MPI_Abort; the first abort may kill the other before it prints.
if(NOT err MATCHES "ranks disagree on the plan \\(rank [01] has [^;]+; rank [01] has")
  message(FATAL_ERROR "expected a message that the ranks disagree on the plan")
endif()
