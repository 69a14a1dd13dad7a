# flanneld end-to-end tests (root; namespaces, real etcd, real kernel).
flannel_add_test(flanneld_e2e_tests
  SOURCES flanneld_e2e_test.cc
  LIBS flannel_test_cluster
  LABELS e2e privileged
  SERIAL
  TIMEOUT 240)
target_compile_definitions(flanneld_e2e_tests PRIVATE FLANNELD_BINARY="$<TARGET_FILE:flanneld>")
add_dependencies(flanneld_e2e_tests flanneld)

# The udp backend end to end (TUN devices, UDP sockets, a hand-made Go-format peer).
flannel_add_test(udp_e2e_tests
  SOURCES udp_e2e_test.cc
  LIBS flannel_test_cluster flannel_packet_builder
  LABELS e2e privileged
  SERIAL
  TIMEOUT 300)
target_compile_definitions(udp_e2e_tests PRIVATE FLANNELD_BINARY="$<TARGET_FILE:flanneld>")
add_dependencies(udp_e2e_tests flanneld)
