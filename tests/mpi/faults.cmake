# cmake -DMPIEXEC=mpirun -DRESHARD=path/to/reshard -DCASE=<case> -P faults.cmake
# A rank that fails in the middle of a plan must end the whole job, non-zero, well within 30 s,
# with a message naming it (README "Errors and faults"). Faults are injected into the executor
# with RESHARD_FAULT (src/exec/fault.hpp) on `reshard run` under mpirun; hangs use a 3 s timeout.
include(${CMAKE_CURRENT_LIST_DIR}/../../cmake/ReshardExpect.cmake)

# Plans: one all-to-all over 3 ranks (every rank waits in the same collective); slice then
# permute on 2 x 2 (in the permute, ranks 1 and 2 swap blocks, point to point, and 0 and 3 keep
# theirs).
# The all-to-all's blocks are contiguous on both sides, so it is one MPI_Alltoallv (strided ones
# move as point-to-point messages of datatypes: hang_p2p covers those).
set(a2a_3 --mesh x=3 --from "f32[3{x},3,2]" --to "f32[3,3{x},2]")
set(two_step_4 --mesh x=2,y=2 --from "f32[32{y},16]" --to "f32[32{x,y},16]")
set(permute_4 --mesh x=2,y=2 --from "f32[8{x,y}]" --to "f32[8{y,x}]")

# run_with_fault(<np> <RESHARD_FAULT> <timeout_s> <reshard args>... EXIT <code> MATCH <regex>...)
# The messages checked are reshard's own and those mpirun prints itself: the banner that a rank
# calling MPI_Abort sends mpirun is sometimes lost when the job is torn down (Open MPI 4.1
# prints "ORTE_ERROR_LOG: ... show_help.c" instead), so MPI_Abort is checked by exit code.
function(run_with_fault np fault timeout)
  cmake_parse_arguments(PARSE_ARGV 3 F "" "EXIT" "MATCH")
  set(ENV{RESHARD_FAULT} "${fault}")
  set(ENV{RESHARD_TIMEOUT_S} "${timeout}")
  reshard_expect_failure("${CASE} (np ${np}, RESHARD_FAULT=${fault}, RESHARD_TIMEOUT_S=${timeout})" TIMEOUT 30
    EXIT ${F_EXIT} MATCH ${F_MATCH}
    COMMAND ${MPIEXEC} --oversubscribe -x RESHARD_FAULT -x RESHARD_TIMEOUT_S -np ${np} ${RESHARD} ${F_UNPARSED_ARGUMENTS})
endfunction()

# Open MPI names a rank that died as "process rank R" or "[[job,1],R]".
set(died_2 "(process rank 2 |Process name: \\[\\[[0-9]+,[0-9]+\\],2\\])")

if(CASE STREQUAL "throw")
  # Rank 1 throws before step 2 (after step 1 moved data): its own error line, then MPI_Abort(2).
  run_with_fault(4 "rank=1,step=2,kind=throw" 300 run ${two_step_4} EXIT 2
    MATCH "reshard run: error \\(rank 1\\): injected fault \\(RESHARD_FAULT\\): device 1 throws before step 2")
elseif(CASE STREQUAL "exit")
  run_with_fault(4 "rank=2,step=2,kind=exit" 300 run ${two_step_4} EXIT 7
    MATCH "device 2: injected fault \\(RESHARD_FAULT\\): exits with status 7 before step 2" "${died_2}")
elseif(CASE STREQUAL "abort")
  run_with_fault(3 "rank=2,step=1,kind=abort" 300 run ${a2a_3} EXIT 134
    MATCH "device 2: injected fault \\(RESHARD_FAULT\\): aborts" "${died_2}" "signal 6")
elseif(CASE STREQUAL "kill")
  run_with_fault(4 "rank=2,step=2,kind=kill" 300 run ${two_step_4} EXIT 137
    MATCH "device 2: injected fault \\(RESHARD_FAULT\\): kills itself" "${died_2}" "signal 9")
elseif(CASE STREQUAL "hang")
  # Rank 1 never enters the all-to-all: both others report it after 3 s, their roll call names
  # rank 1, and the job ends (MPI_Abort, exit 3).
  run_with_fault(3 "rank=1,step=1,kind=hang" 3 run ${a2a_3} EXIT 3
    MATCH "device 1: injected fault \\(RESHARD_FAULT\\): hangs before step 1"
          "rank 0: MPI_Alltoallv on group {x} made no progress for 3 s; a peer may have failed \\(last heard: "
          "rank 2: MPI_Alltoallv on group {x} made no progress for 3 s; a peer may have failed"
          "rank [02]: roll call on group {x} \\(call #[0-9]+ there, 1 s\\): no answer from rank 1 \\(")
elseif(CASE STREQUAL "hang_p2p")
  # Rank 1 hangs before the permute: rank 2, its only partner, names it; ranks 0 and 3, done with
  # the plan, wait in the command's next collective, whose watchdog also fires.
  run_with_fault(4 "rank=1,step=1,kind=hang" 3 run ${permute_4} EXIT 3
    MATCH "rank 2: exchange \\(MPI_Isend/MPI_Irecv\\) on group world made no progress for 3 s; a peer may have failed \\(waiting: nothing received from rank 1"
          "rank 0: MPI_Allreduce on group world made no progress for 3 s"
          "rank 3: MPI_Allreduce on group world made no progress for 3 s")
elseif(CASE STREQUAL "hang_after")
  # Rank 0 hangs before step 2, where it has nobody to exchange with: the others finish the plan
  # and wait for it in the command's own collective; its roll call names rank 0.
  run_with_fault(4 "rank=0,step=2,kind=hang" 3 run ${two_step_4} EXIT 3
    MATCH "rank 1: MPI_[A-Za-z]+ on group world made no progress for 3 s"
          "rank 2: MPI_[A-Za-z]+ on group world made no progress for 3 s"
          "rank 3: MPI_[A-Za-z]+ on group world made no progress for 3 s"
          "rank [123]: roll call on group world .*no answer from rank 0 \\(")
elseif(CASE STREQUAL "bench_throw")
  # `reshard bench`: the same error path as `run`.
  run_with_fault(4 "rank=2,step=1,kind=throw" 300
    bench --suite ${CMAKE_CURRENT_LIST_DIR}/../../benchmarks/suites/bench.txt --cases b_a2a_inner --strategies reshard
    --iters 1 --warmup 1 EXIT 2
    MATCH "reshard bench: error \\(rank 2\\): injected fault \\(RESHARD_FAULT\\): device 2 throws")
elseif(CASE STREQUAL "bad_timeout")
  # A malformed RESHARD_TIMEOUT_S is an error on every rank, not a silent default.
  run_with_fault(2 "" "soon" run --mesh x=2 --from "f32[8{x}]" --to "f32[8]" EXIT 2
    MATCH "error \\(rank [01]\\): RESHARD_TIMEOUT_S='soon': expected seconds")
else()
  message(FATAL_ERROR "unknown CASE '${CASE}'")
endif()
