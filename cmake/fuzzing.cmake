# flannel_add_fuzzer(<name> SOURCE <file> CORPUS <dir> LIBS ...)
# Normal builds: a replay driver runs every corpus file through the target (label fuzz-regression).
# FLANNEL_FUZZ builds: a libFuzzer binary fuzzed for a bounded time (label fuzz).
set(FLANNEL_FUZZ_SECONDS 20 CACHE STRING "Seconds each fuzz target runs under ctest -L fuzz")
function(flannel_add_fuzzer name)
  cmake_parse_arguments(F "" "SOURCE;CORPUS" "LIBS" ${ARGN})
  add_executable(${name} ${F_SOURCE})
  target_link_libraries(${name} PRIVATE ${F_LIBS} flannel_warnings)
  if(FLANNEL_FUZZ)
    target_link_options(${name} PRIVATE -fsanitize=fuzzer)
    set(work ${CMAKE_CURRENT_BINARY_DIR}/${name}_corpus)
    add_test(NAME ${name}
      COMMAND ${CMAKE_COMMAND} -E env ASAN_OPTIONS=detect_leaks=1
              sh -c "mkdir -p '${work}' && exec '$<TARGET_FILE:${name}>' -max_total_time=${FLANNEL_FUZZ_SECONDS} -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 '${work}' '${F_CORPUS}'")
    set_tests_properties(${name} PROPERTIES LABELS fuzz TIMEOUT 300)
  else()
    target_link_libraries(${name} PRIVATE flannel_fuzz_replay)
    add_test(NAME ${name}_regression COMMAND ${name} ${F_CORPUS})
    set_tests_properties(${name}_regression PROPERTIES LABELS fuzz-regression TIMEOUT 120)
  endif()
endfunction()
