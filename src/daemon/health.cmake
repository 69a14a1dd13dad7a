# flannel_daemon_health: /healthz, /readyz and /metrics (health.h, metrics.h) and systemd
# notification (sd_notify.h). Included from src/daemon/CMakeLists.txt. Links core, async (Asio,
# Beast) and libsystemd's headers: sd_notify.cc loads libsystemd.so.0 itself when NOTIFY_SOCKET is
# set (a daemon without a supervisor never maps it).
add_library(flannel_daemon_health STATIC
  ${CMAKE_CURRENT_LIST_DIR}/health.cc
  ${CMAKE_CURRENT_LIST_DIR}/metrics.cc
  ${CMAKE_CURRENT_LIST_DIR}/sd_notify.cc
)
target_include_directories(flannel_daemon_health PUBLIC ${PROJECT_SOURCE_DIR}/src)
target_link_libraries(flannel_daemon_health
  PUBLIC flannel_core flannel_async
  PRIVATE flannel_warnings ${CMAKE_DL_LIBS})
target_include_directories(flannel_daemon_health
  PRIVATE $<TARGET_PROPERTY:PkgConfig::LIBSYSTEMD,INTERFACE_INCLUDE_DIRECTORIES>)

# Headers compile alone (what flannel_check_headers() does, limited to this target's headers:
# the other headers of src/daemon need other libraries).
set(_health_header_units)
foreach(_h daemon/health.h daemon/metrics.h daemon/sd_notify.h)
  string(MAKE_C_IDENTIFIER ${_h} _id)
  set(_unit ${CMAKE_CURRENT_BINARY_DIR}/header_check/${_id}.cc)
  file(CONFIGURE OUTPUT ${_unit} CONTENT "#include \"${_h}\"  // compiles alone\n")
  list(APPEND _health_header_units ${_unit})
endforeach()
add_library(flannel_daemon_health_header_check OBJECT ${_health_header_units})
target_link_libraries(flannel_daemon_health_header_check PRIVATE flannel_daemon_health
  flannel_warnings)
