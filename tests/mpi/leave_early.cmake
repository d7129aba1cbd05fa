# cmake -DMPIEXEC=mpirun -DTEST_MPI=path/to/test_mpi -P leave_early.cmake
# A rank that leaves early (it returns and ends MPI while the others call one more reshard) must
# be named by the others' roll call, and the job must end (MPI_Abort, exit 3) soon after their
# 3 s deadline: test_hardening.cpp's hidden "[.leave_early]" case.
include(${CMAKE_CURRENT_LIST_DIR}/../../cmake/ReshardExpect.cmake)
reshard_expect_failure("rank 1 leaves early (np 3)" TIMEOUT 30 EXIT 3
  MATCH "rank 1 leaves early"
        "rank [02]: MPI_[A-Za-z]+ on group world made no progress for 3 s"
        "rank [02]: roll call on group world .*no answer from rank 1 \\("
  COMMAND ${MPIEXEC} --oversubscribe -np 3 ${TEST_MPI} "[.leave_early]")
