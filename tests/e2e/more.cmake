# More flanneld end-to-end tests (root; namespaces, real etcd, real kernel and netfilter):
# --ip-masq in iptables and nftables mode, the CNI plugin with the real daemon, the extension
# backend, start-up adoption of existing kernel state. Each test skips with a clear message when
# not root; SERIAL: they create namespaces and processes, and the machine has few cores.

# Helpers shared by these tests only (tests/support/e2e_helpers.h).
add_library(flannel_e2e_helpers STATIC ${PROJECT_SOURCE_DIR}/tests/support/e2e_helpers.cc)
target_link_libraries(flannel_e2e_helpers PUBLIC flannel_test_cluster PRIVATE flannel_warnings)

flannel_add_test(masq_e2e_tests
  SOURCES masq_e2e_test.cc
  LIBS flannel_e2e_helpers
  LABELS e2e privileged
  SERIAL
  TIMEOUT 240)
target_compile_definitions(masq_e2e_tests PRIVATE FLANNELD_BINARY="$<TARGET_FILE:flanneld>")
add_dependencies(masq_e2e_tests flanneld)

flannel_add_test(cni_flanneld_e2e_tests
  SOURCES cni_flanneld_e2e_test.cc
  LIBS flannel_e2e_helpers
  LABELS e2e privileged
  SERIAL
  TIMEOUT 240)
target_compile_definitions(cni_flanneld_e2e_tests PRIVATE
  FLANNELD_BINARY="$<TARGET_FILE:flanneld>" FLANNEL_CNI_BINARY="$<TARGET_FILE:flannel>")
add_dependencies(cni_flanneld_e2e_tests flanneld flannel)

flannel_add_test(extension_e2e_tests
  SOURCES extension_e2e_test.cc
  LIBS flannel_e2e_helpers
  LABELS e2e privileged
  SERIAL
  TIMEOUT 120)
target_compile_definitions(extension_e2e_tests PRIVATE FLANNELD_BINARY="$<TARGET_FILE:flanneld>")
add_dependencies(extension_e2e_tests flanneld)

flannel_add_test(adopt_e2e_tests
  SOURCES adopt_e2e_test.cc
  LIBS flannel_test_cluster
  LABELS e2e privileged
  SERIAL
  TIMEOUT 180)
target_compile_definitions(adopt_e2e_tests PRIVATE FLANNELD_BINARY="$<TARGET_FILE:flanneld>")
add_dependencies(adopt_e2e_tests flanneld)

flannel_add_test(kube_e2e_tests
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/kube_e2e_test.cc
  LIBS flannel_test_cluster flannel_test_kube_api
  LABELS e2e privileged
  SERIAL
  TIMEOUT 180)
target_compile_definitions(kube_e2e_tests PRIVATE FLANNELD_BINARY="$<TARGET_FILE:flanneld>")
add_dependencies(kube_e2e_tests flanneld)
