# flannel_check_headers(<library target>): every header next to the target's sources must compile
# on its own (DESIGN.md "Headers compile alone"). Generates one translation unit per header and
# builds them as an object library with the target's usage requirements.
function(flannel_check_headers target)
  file(GLOB headers RELATIVE ${PROJECT_SOURCE_DIR}/src ${CMAKE_CURRENT_SOURCE_DIR}/*.h)
  set(units)
  foreach(h ${headers})
    string(MAKE_C_IDENTIFIER ${h} id)
    set(unit ${CMAKE_CURRENT_BINARY_DIR}/header_check/${id}.cc)
    file(CONFIGURE OUTPUT ${unit} CONTENT "#include \"${h}\"  // compiles alone\n")
    list(APPEND units ${unit})
  endforeach()
  if(units)
    add_library(${target}_header_check OBJECT ${units})
    target_link_libraries(${target}_header_check PRIVATE ${target} flannel_warnings)
  endif()
endfunction()
