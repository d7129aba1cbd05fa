# A user's clone is all there is: no file of the project may point outside the repository (a
# design document elsewhere, a steering folder next to the clone). Run by CTest (cmake -P) with
# -DSOURCE_DIR=<repository>. The patterns are assembled here so that this file does not match.
cmake_minimum_required(VERSION 3.25)
set(design "DESIGN")
string(APPEND design ".md")
set(sibling "../")
string(APPEND sibling "shared")
set(bad "")
file(GLOB_RECURSE files LIST_DIRECTORIES false RELATIVE ${SOURCE_DIR}
     ${SOURCE_DIR}/*.md ${SOURCE_DIR}/*.txt ${SOURCE_DIR}/*.cmake ${SOURCE_DIR}/*.in ${SOURCE_DIR}/*.hpp
     ${SOURCE_DIR}/*.cpp ${SOURCE_DIR}/*.cu ${SOURCE_DIR}/*.cuh ${SOURCE_DIR}/*.py ${SOURCE_DIR}/*.sh
     ${SOURCE_DIR}/*.pyi ${SOURCE_DIR}/*.toml ${SOURCE_DIR}/*.dict)
foreach(f IN LISTS files)
  if(f MATCHES "^(build[^/]*|\\.git|results)/")
    continue()
  endif()
  file(STRINGS ${SOURCE_DIR}/${f} lines)
  set(n 0)
  foreach(line IN LISTS lines)
    math(EXPR n "${n} + 1")
    string(FIND "${line}" "${design}" a)
    string(FIND "${line}" "${sibling}" b)
    if(a GREATER -1 OR b GREATER -1)
      list(APPEND bad "${f}:${n}: ${line}")
    endif()
  endforeach()
endforeach()
if(bad)
  list(JOIN bad "\n" text)
  message(FATAL_ERROR "files that refer outside the repository (use docs/design.md):\n${text}")
endif()
list(LENGTH files count)
message(STATUS "${count} files refer only to the repository")
