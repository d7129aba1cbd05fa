# cmake -DMPIEXEC=mpirun -DTEST_MPI=path/to/test_mpi -DCASE=<case> -P xfaults.cmake
# A rank that dies, or stops progressing, while an asynchronous cross-mesh reshard is in flight
# (test_xfaults.cpp, hidden tag "[.xfault]", RESHARD_XFAULT=CASE) must not leave the others
# waiting: the job ends non-zero well within 30 s with rank 1 named, by mpirun for a dead rank,
# by the others' 3 s deadline (RESHARD_TIMEOUT_S) for a stuck one.
include(${CMAKE_CURRENT_LIST_DIR}/../../cmake/ReshardExpect.cmake)

function(run_xfault np)
  cmake_parse_arguments(PARSE_ARGV 1 F "" "EXIT" "MATCH")
  set(ENV{RESHARD_XFAULT} "${CASE}")
  set(ENV{RESHARD_TIMEOUT_S} 3)
  reshard_expect_failure("${CASE} (np ${np}, RESHARD_TIMEOUT_S=3)" TIMEOUT 30 EXIT ${F_EXIT} MATCH ${F_MATCH}
    COMMAND ${MPIEXEC} --oversubscribe -x RESHARD_XFAULT -x RESHARD_TIMEOUT_S -np ${np} ${TEST_MPI} "[.xfault]")
endfunction()

# Open MPI names a rank that died as "process rank R" or "[[job,1],R]".
set(died_1 "(process rank 1 |Process name: \\[\\[[0-9]+,[0-9]+\\],1\\])")
# A waiting rank's deadline: the phase, and rank 1 among the peers it still misses, either way
# (whichever rank's deadline fires first may be the only one to print before the job ends).
set(named_1 "rank [02-9]: cross-mesh phase [0-9]+ of [0-9]+ waited 3 s \\(RESHARD_TIMEOUT_S\\) for messages from ranks \\[(([0-9]+,)*1(,[0-9]+)*\\] and to ranks \\[[0-9,]*|[0-9,]*\\] and to ranks \\[([0-9]+,)*1(,[0-9]+)*)\\]")

if(CASE STREQUAL "kill")
  run_xfault(4 EXIT 137 MATCH "rank 1: kills itself with a reshard in flight" "${died_1}" "signal 9")
elseif(CASE STREQUAL "exit")
  run_xfault(4 EXIT 7 MATCH "rank 1: exits with a reshard in flight" "${died_1}")
elseif(CASE STREQUAL "nowait")
  run_xfault(3 EXIT 3 MATCH "rank 1: never calls wait\\(\\)" "${named_1}")
elseif(CASE STREQUAL "absent")
  # Rank 1 never reaches the agreement that starts the reshard: the others' watchdog on it.
  run_xfault(3 EXIT 3 MATCH "rank 1: never starts the reshard"
             "rank [02]: MPI_[A-Za-z]+ on group world made no progress for 3 s"
             "rank [02]: roll call on group world .*no answer from rank 1 \\(")
else()
  message(FATAL_ERROR "unknown CASE '${CASE}'")
endif()
