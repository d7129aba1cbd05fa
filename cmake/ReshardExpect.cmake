# Helpers for test scripts run with `cmake -P` that start programs and judge how they end
# (tests/mpi/faults.cmake, tests/mpi/rank_mismatch.cmake, examples/checkpoint_damaged.cmake):
#
#   include(${CMAKE_CURRENT_LIST_DIR}/../../cmake/ReshardExpect.cmake)
#
# reshard_run(TIMEOUT <s> COMMAND <command...>)
#   Runs the command, killed after <s> seconds. Sets in the caller's scope: rc (the exit code,
#   or execute_process's text for a timeout or a signal), out (stdout, then stderr) and seconds
#   (wall time, 0.1 s resolution).
#
# reshard_expect_failure(<what> TIMEOUT <s> [EXIT <code>] [MATCH <regex>...] COMMAND <command...>)
#   Runs the command and stops the script with an error unless it ends within <s> seconds
#   with a non-zero exit (<code> when given) and its output matches every MATCH regex. Prints the exit, the time and
#   the output either way. Regexes may contain ';' (arguments are parsed with PARSE_ARGV).

function(reshard_run)
  cmake_parse_arguments(PARSE_ARGV 0 R "" "TIMEOUT" "COMMAND")
  string(TIMESTAMP t0 "%s%f")
  execute_process(COMMAND ${R_COMMAND} TIMEOUT ${R_TIMEOUT}
                  RESULT_VARIABLE result OUTPUT_VARIABLE stdout ERROR_VARIABLE stderr)
  string(TIMESTAMP t1 "%s%f")
  math(EXPR tenths "(${t1} - ${t0}) / 100000")
  math(EXPR whole "${tenths} / 10")
  math(EXPR frac "${tenths} % 10")
  set(rc "${result}" PARENT_SCOPE)
  set(out "${stdout}${stderr}" PARENT_SCOPE)
  set(seconds "${whole}.${frac}" PARENT_SCOPE)
endfunction()

function(reshard_expect_failure what)
  cmake_parse_arguments(PARSE_ARGV 1 E "" "TIMEOUT;EXIT" "MATCH;COMMAND")
  reshard_run(TIMEOUT ${E_TIMEOUT} COMMAND ${E_COMMAND})
  message(STATUS "${what}: exit ${rc} after ${seconds} s; output:\n${out}")
  if(rc STREQUAL "0" OR NOT rc MATCHES "^[0-9]+$")
    message(FATAL_ERROR "${what}: expected a non-zero exit within ${E_TIMEOUT} s, got: ${rc} after ${seconds} s")
  endif()
  if(DEFINED E_EXIT AND NOT rc STREQUAL E_EXIT)
    message(FATAL_ERROR "${what}: expected exit code ${E_EXIT}, got ${rc}")
  endif()
  foreach(regex IN LISTS E_MATCH)
    if(NOT out MATCHES "${regex}")
      message(FATAL_ERROR "${what}: the output does not match '${regex}'")
    endif()
  endforeach()
  message(STATUS "${what}: ok (exit ${rc} after ${seconds} s)")
endfunction()
