# reshard_add_mpi_test(NAME <name> TARGET <exe> [RANKS 1 2 3 4 6 8] [ARGS ...] [LABELS ...])
# Registers one CTest test per rank count: <name>.np<N>, run under mpirun with
# oversubscription allowed (CI has 2 cores) and a hard timeout so a hung rank fails the test.
# "@NP@" in ARGS becomes the rank count, so that tests which write files (a directory argument)
# get one per rank count and do not collide under ctest -j.
set(RESHARD_MPI_TEST_RANKS 1 2 3 4 6 8 CACHE STRING "Rank counts for MPI tests")
function(reshard_add_mpi_test)
  cmake_parse_arguments(T "" "NAME;TARGET;TIMEOUT" "RANKS;ARGS;LABELS" ${ARGN})
  if(NOT T_RANKS)
    set(T_RANKS ${RESHARD_MPI_TEST_RANKS})
  endif()
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  foreach(np IN LISTS T_RANKS)
    string(REPLACE "@NP@" "${np}" args "${T_ARGS}")
    add_test(NAME ${T_NAME}.np${np}
             COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${np} --oversubscribe
                     ${MPIEXEC_PREFLAGS} $<TARGET_FILE:${T_TARGET}> ${MPIEXEC_POSTFLAGS} ${args})
    set_tests_properties(${T_NAME}.np${np} PROPERTIES
      TIMEOUT ${T_TIMEOUT} PROCESSORS 1 LABELS "mpi;${T_LABELS}"
      ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OMPI_MCA_rmaps_base_oversubscribe=1;RESHARD_TEST_NP=${np}")
  endforeach()
endfunction()
