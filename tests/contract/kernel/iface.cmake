# External interface selection against the real kernel (NetlinkKernel) in a fresh namespace.
# Root only; the tests skip otherwise. Included from tests/contract/kernel/CMakeLists.txt.
flannel_add_test(iface_select_privileged_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/iface_select_privileged_test.cc
  LIBS flannel_kernel_netlink flannel_test_support
  LABELS contract privileged
  SERIAL
  TIMEOUT 60)
