# Unit tests of the health server, metrics, sd_notify and external interface selection
# (kernel/iface_select.h). Included from tests/unit/daemon/CMakeLists.txt. The health tests bind
# 127.0.0.1 port 0 and the sd_notify tests a unix socket in a temp dir; nothing else.
flannel_add_test(daemon_health_unit_tests
  SOURCES
    ${CMAKE_CURRENT_LIST_DIR}/health_test.cc
    ${CMAKE_CURRENT_LIST_DIR}/metrics_test.cc
    ${CMAKE_CURRENT_LIST_DIR}/iface_select_test.cc
  LIBS flannel_daemon_health flannel_kernel_api flannel_fake_kernel
  LABELS unit)
