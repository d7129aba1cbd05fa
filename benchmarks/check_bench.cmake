# The test of `reshard bench` (cmake -P): runs it under mpirun on a suite and checks its outputs.
#   -DMPIEXEC=... -DNP=2 -DRESHARD=.../reshard -DSUITE=... -DOUT=<prefix of the output files>
#   -DMODE=run     every row present with the contract's fields and verified, the summary, the
#                  CSV, the SVG and the table; cases larger than the world skipped with a note
#   -DMODE=errors  bad arguments and a bad suite fail on every rank with a message, fast
#   -DMODE=sweep   nccl-tests' options: -b/-e/-f sizes (each case scaled along its largest dim),
#                  -d dtype, -n/-w; a row per case, size and strategy with S near the size asked
#                  for, the #wrong column, a progress line per case on stderr, and algbw/busbw as
#                  in `reshard run --json` for the same reshard
cmake_minimum_required(VERSION 3.25)

function(fail)
  string(JOIN "" msg ${ARGN})
  message(FATAL_ERROR "${msg}")
endfunction()

# Fails unless the CSV file has `want` lines (the header and one per row).
function(check_csv_lines path want)
  file(READ ${path} csv)
  string(REGEX MATCHALL "\n" newlines "${csv}")
  list(LENGTH newlines lines)
  if(NOT lines EQUAL want)
    fail("${path} has ${lines} lines, expected ${want}")
  endif()
endfunction()

function(run_bench rc_var out_var err_var)
  execute_process(COMMAND ${MPIEXEC} -np ${NP} --oversubscribe ${RESHARD} bench ${ARGN}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 120)
  set(${rc_var} "${rc}" PARENT_SCOPE)
  set(${out_var} "${out}" PARENT_SCOPE)
  set(${err_var} "${err}" PARENT_SCOPE)
endfunction()

if(MODE STREQUAL "errors")
  foreach(args "--suite;${SUITE};--strategies;reshard,fastest"
               "--suite;${SUITE};--cases;no_such_case"
               "--suite;${OUT}.missing.txt"
               "--suite;${SUITE};-b;1X;-e;4K"
               "--suite;${SUITE};-b;64K;-e;4K"
               "--suite;${SUITE};-b;1K;-e;4K;-f;1"
               "--suite;${SUITE};-b;1K"
               "--suite;${SUITE};-d;f128")
    run_bench(rc out err ${args})
    if(rc EQUAL 0 OR NOT err MATCHES "reshard bench: error")
      fail("bench ${args}: expected a failure with a message, got exit ${rc}\nstdout: ${out}\nstderr: ${err}")
    endif()
  endforeach()
  return()
endif()

if(MODE STREQUAL "sweep")
  # -b 1K -e 16K -f 4: sizes 1, 4 and 16 KiB (the CTest version of -b 1M -e 64M -f 4).
  run_bench(rc out err --suite ${SUITE} --cases t_gather,t_rs,t_uneven --strategies reshard,naive,raw
            -b 1K -e 16K -f 4 -d f64 -n 2 -w 1 --json ${OUT}.json --csv ${OUT}.csv)
  if(NOT rc EQUAL 0)
    fail("bench sweep exited ${rc}\nstdout: ${out}\nstderr: ${err}")
  endif()
  if(NOT out MATCHES "#wrong")
    fail("no #wrong column in the table:\n${out}")
  endif()
  foreach(k RANGE 1 9)
    if(NOT err MATCHES "\\[${k}/9\\] ")
      fail("no progress line [${k}/9] on stderr:\n${err}")
    endif()
  endforeach()
  file(READ ${OUT}.json json)
  string(JSON nrows LENGTH "${json}" rows)
  if(NOT nrows EQUAL 27)
    fail("${nrows} rows, expected 3 cases x 3 sizes x 3 strategies = 27")
  endif()
  math(EXPR last "${nrows} - 1")
  foreach(i RANGE ${last})
    string(JSON name GET "${json}" rows ${i} case)
    string(JSON from GET "${json}" rows ${i} from)
    string(JSON size GET "${json}" rows ${i} size_bytes)
    string(JSON wrong GET "${json}" rows ${i} wrong)
    string(JSON median GET "${json}" rows ${i} time_median_s)
    string(JSON algbw GET "${json}" rows ${i} algbw_GBps)
    if(NOT name MATCHES "@(1|4|16)KiB$")
      fail("row ${i}: case ${name} is not named by its size")
    endif()
    if(NOT from MATCHES "^f64\\[")
      fail("row ${i} (${name}): -d f64 not applied: ${from}")
    endif()
    # S within a factor of 1.5 of the size asked for (ceil blocks make it a staircase).
    string(REGEX REPLACE ".*@([0-9]+)KiB$" "\\1" kib "${name}")
    math(EXPR want "${kib} * 1024")
    math(EXPR lo "${want} * 2 / 3")
    math(EXPR hi "${want} * 3 / 2")
    if(size LESS lo OR size GREATER hi)
      fail("row ${i} (${name}): size_bytes ${size}, asked for ${want}")
    endif()
    if(NOT wrong EQUAL 0)
      fail("row ${i} (${name}): ${wrong} wrong elements")
    endif()
  endforeach()
  # The same reshard under `reshard run --json`: the same S, and algbw = S / its own median.
  execute_process(COMMAND ${MPIEXEC} -np ${NP} --oversubscribe ${RESHARD} run --mesh x=2 --from "f64[64{x},8]"
                          --to "f64[64,8]" --iters 3 --json
                  RESULT_VARIABLE rc OUTPUT_VARIABLE run_json ERROR_VARIABLE err TIMEOUT 60)
  if(NOT rc EQUAL 0)
    fail("reshard run exited ${rc}: ${err}")
  endif()
  string(JSON run_size GET "${run_json}" size_bytes)
  set(bench_size "")
  foreach(i RANGE ${last})
    string(JSON name GET "${json}" rows ${i} case)
    string(JSON from GET "${json}" rows ${i} from)
    if(from STREQUAL "f64[64{x}, 8]")
      string(JSON bench_size GET "${json}" rows ${i} size_bytes)
    endif()
  endforeach()
  if(NOT run_size EQUAL 4096 OR NOT bench_size EQUAL 4096)
    fail("size_bytes of f64[64{x},8] -> f64[64,8]: run ${run_size}, bench ${bench_size}; both should be 4096")
  endif()
  # algbw = S / median and busbw = algbw * F in both outputs (floating point: checked in Python).
  if(PYTHON)
    file(WRITE ${OUT}.run.json "${run_json}")
    execute_process(COMMAND ${PYTHON} -c [=[
import json, sys
bench, run = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
factor = {c["case"]: c["busbw_factor"] for c in bench["cases"]}
def close(a, b): return abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1e-30)
for r in bench["rows"] + [run]:
    want = r["size_bytes"] / r["time_median_s"] / 1e9
    assert close(r["algbw_GBps"], want), (r.get("case"), r["algbw_GBps"], want)
for r in bench["rows"]:
    assert close(r["busbw_GBps"], r["algbw_GBps"] * factor[r["case"]]), r["case"]
assert close(run["busbw_GBps"], run["algbw_GBps"] * 0.5), run["busbw_GBps"]  # all-gather over 2: (n-1)/n
]=] ${OUT}.json ${OUT}.run.json RESULT_VARIABLE rc ERROR_VARIABLE err)
    if(NOT rc EQUAL 0)
      fail("bandwidths do not follow their definitions: ${err}")
    endif()
  endif()
  check_csv_lines(${OUT}.csv 28)
  return()
endif()

run_bench(rc out err --suite ${SUITE} --iters 2 --warmup 1 --json ${OUT}.json --csv ${OUT}.csv --svg ${OUT}.svg)
if(NOT rc EQUAL 0)
  fail("bench exited ${rc}\nstdout: ${out}\nstderr: ${err}")
endif()
if(NOT out MATCHES "summary: [0-9]+ cases run")
  fail("no summary in the table:\n${out}")
endif()

file(READ ${OUT}.json json)
string(JSON nrows LENGTH "${json}" rows)
if(nrows EQUAL 0)
  fail("no rows in ${OUT}.json")
endif()
math(EXPR last "${nrows} - 1")
set(seen "")
foreach(i RANGE ${last})
  foreach(field case strategy time_median_s time_min_s time_max_s bytes_recv_max peak_bytes algbw_GBps busbw_GBps)
    string(JSON value ERROR_VARIABLE missing GET "${json}" rows ${i} ${field})
    if(missing)
      fail("row ${i} has no ${field}")
    endif()
  endforeach()
  string(JSON name GET "${json}" rows ${i} case)
  string(JSON strategy GET "${json}" rows ${i} strategy)
  string(JSON verified GET "${json}" rows ${i} verified)
  string(JSON tmin GET "${json}" rows ${i} time_min_s)
  string(JSON tmed GET "${json}" rows ${i} time_median_s)
  string(JSON tmax GET "${json}" rows ${i} time_max_s)
  if(NOT verified)
    fail("row ${name} ${strategy} is not verified")
  endif()
  if(tmin GREATER tmed OR tmed GREATER tmax)
    fail("row ${name} ${strategy}: times out of order (${tmin}, ${tmed}, ${tmax})")
  endif()
  list(APPEND seen "${name}/${strategy}")
endforeach()

# Every strategy on a single-collective case; no raw where the plan is not one collective.
foreach(s reshard naive greedy_per_axis exchange raw)
  if(NOT "t_gather/${s}" IN_LIST seen)
    fail("no row for t_gather/${s}; rows: ${seen}")
  endif()
endforeach()
if("t_uneven/raw" IN_LIST seen)
  fail("raw ran on t_uneven, whose reshard plan is an exchange")
endif()
string(JSON all_verified GET "${json}" summary all_verified)
string(JSON geomean GET "${json}" summary reshard_vs naive geomean_speedup)
if(NOT all_verified OR NOT geomean GREATER 0)
  fail("summary: all_verified ${all_verified}, geomean over naive ${geomean}")
endif()

# Meshes larger than the world are skipped with a note, smaller ones run.
string(JSON ncases LENGTH "${json}" cases)
math(EXPR last "${ncases} - 1")
foreach(i RANGE ${last})
  string(JSON devices GET "${json}" cases ${i} devices)
  string(JSON ran GET "${json}" cases ${i} ran)
  if(devices GREATER NP AND ran)
    fail("case ${i} needs ${devices} ranks but ran on ${NP}")
  endif()
  if(NOT devices GREATER NP AND NOT ran)
    fail("case ${i} (${devices} devices) did not run on ${NP} ranks")
  endif()
endforeach()

math(EXPR want "${nrows} + 1")
check_csv_lines(${OUT}.csv ${want})
file(READ ${OUT}.svg svg LIMIT 200)
if(NOT svg MATCHES "^<svg ")
  fail("${OUT}.svg is not an SVG")
endif()
