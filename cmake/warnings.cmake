# Warning flags for every flannel target (DESIGN.md "Build and tooling").
option(FLANNEL_WERROR "Treat warnings as errors" OFF)
add_library(flannel_warnings INTERFACE)
target_compile_options(flannel_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wimplicit-fallthrough
  # GCC 12 at -O2 reports Asio's coroutine frame allocator (operator new/delete of
  # awaitable_frame_base over aligned_alloc/free) as mismatched: a known false positive.
  $<$<CXX_COMPILER_ID:GNU>:-Wno-mismatched-new-delete>
  $<$<BOOL:${FLANNEL_WERROR}>:-Werror>)
