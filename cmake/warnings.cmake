# Warning flags for every flannel target (DESIGN.md "Build and tooling").
option(FLANNEL_WERROR "Treat warnings as errors" OFF)
add_library(flannel_warnings INTERFACE)
target_compile_options(flannel_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wimplicit-fallthrough
  $<$<BOOL:${FLANNEL_WERROR}>:-Werror>)
