# Installs reshard as a package other projects use:
#   find_package(reshard REQUIRED [COMPONENTS mpi cuda nccl])   # cmake/reshardConfig.cmake.in
#   pkg-config --cflags --libs reshard [reshard-mpi]              # cmake/reshard*.pc.in
# Targets (namespace reshard::): reshard (the pure core: types, synthesis, simulator, host
# kernels; no MPI, no GPU), mpi (the executor over MPI: Context, DistArray), cuda_kernels (device
# kernels and memory; a shared library that alone links the CUDA runtime), nccl (the NCCL
# backend). Every target carries cxx_std_20. The libraries of the optional parts install
# themselves (src/exec, cuda_kernels, src/backends/nccl) into the same export set.
include(CMakePackageConfigHelpers)

install(DIRECTORY include/reshard DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${RESHARD_GENERATED_INCLUDE_DIR}/reshard/version.hpp DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/reshard)
install(TARGETS reshard_lib EXPORT reshardTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS reshard_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES LICENSE DESTINATION ${CMAKE_INSTALL_DATADIR}/doc/reshard)

set(_reshard_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/reshard)
install(EXPORT reshardTargets NAMESPACE reshard:: DESTINATION ${_reshard_cmake_dir})
configure_package_config_file(cmake/reshardConfig.cmake.in ${PROJECT_BINARY_DIR}/reshardConfig.cmake
  INSTALL_DESTINATION ${_reshard_cmake_dir})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/reshardConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/reshardConfig.cmake ${PROJECT_BINARY_DIR}/reshardConfigVersion.cmake
        DESTINATION ${_reshard_cmake_dir})

# pkg-config: reshard (the core) and, with MPI, reshard-mpi. Static builds list the libraries
# the archives need in Libs.private (pkg-config --static).
file(RELATIVE_PATH RESHARD_PC_UP /prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig /prefix)
set(RESHARD_PC_CUDA_LIBS "")
if(RESHARD_HAVE_CUDA)
  set(RESHARD_PC_CUDA_LIBS "-lreshard_cuda_kernels")
  set(RESHARD_PC_CUDA_CFLAGS "-DRESHARD_HAVE_CUDA=1")
endif()
configure_file(cmake/reshard.pc.in ${PROJECT_BINARY_DIR}/pkgconfig/reshard.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/pkgconfig/reshard.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
if(TARGET reshard_mpi)
  configure_file(cmake/reshard-mpi.pc.in ${PROJECT_BINARY_DIR}/pkgconfig/reshard-mpi.pc @ONLY)
  install(FILES ${PROJECT_BINARY_DIR}/pkgconfig/reshard-mpi.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
endif()
