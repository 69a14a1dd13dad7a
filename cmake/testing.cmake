# flannel_add_test(<name> SOURCES ... [LIBS ...] [LABELS ...] [SERIAL] [TIMEOUT s])
# One GoogleTest executable; every TEST() becomes a CTest test carrying LABELS.
#
# The properties are applied at ctest time from the discovered TEST_LIST (GoogleTest's documented
# hook), because gtest_discover_tests(PROPERTIES ...) flattens list values: a second label and
# every property after it would be lost.
include(GoogleTest)
function(flannel_add_test name)
  cmake_parse_arguments(T "SERIAL" "TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE ${T_LIBS} GTest::gmock GTest::gtest_main flannel_warnings)
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  gtest_discover_tests(${name} DISCOVERY_MODE PRE_TEST DISCOVERY_TIMEOUT 30
    TEST_LIST ${name}_TESTS)
  set(serial FALSE)
  if(T_SERIAL)
    set(serial TRUE)
  endif()
  set(props "${CMAKE_CURRENT_BINARY_DIR}/${name}_properties.cmake")
  file(WRITE "${props}"
    "if(${name}_TESTS)\n"
    "  set_tests_properties(\${${name}_TESTS} PROPERTIES\n"
    "    LABELS \"${T_LABELS}\" TIMEOUT ${T_TIMEOUT} RUN_SERIAL ${serial})\n"
    "endif()\n")
  set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES "${props}")
endfunction()

# flannel_add_contract_test(target PLAIN <gtest filter> PRIVILEGED <gtest filter>): one contract
# executable discovered twice, so that the tests matching PRIVILEGED (root, own namespace) get
# the labels contract;privileged and the rest get contract. gtest_discover_tests() flattens its
# PROPERTIES list, so the second label is set at ctest time from the TEST_LIST variable.
function(flannel_add_contract_test target)
  cmake_parse_arguments(ARG "" "PLAIN;PRIVILEGED" "" ${ARGN})
  gtest_discover_tests(${target}
    TEST_FILTER "${ARG_PLAIN}"
    NO_PRETTY_TYPES DISCOVERY_MODE PRE_TEST DISCOVERY_TIMEOUT 30
    PROPERTIES LABELS contract TIMEOUT 60)
  gtest_discover_tests(${target}
    TEST_FILTER "${ARG_PRIVILEGED}"
    TEST_LIST ${target}_privileged_TESTS
    NO_PRETTY_TYPES DISCOVERY_MODE PRE_TEST DISCOVERY_TIMEOUT 30
    PROPERTIES LABELS contract TIMEOUT 60)
  set(props "${CMAKE_CURRENT_BINARY_DIR}/${target}_privileged_labels.cmake")
  file(WRITE "${props}" "
if(${target}_privileged_TESTS)
  set_tests_properties(\${${target}_privileged_TESTS} PROPERTIES
    LABELS \"contract;privileged\" TIMEOUT 60)
endif()
")
  set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES "${props}")
endfunction()
