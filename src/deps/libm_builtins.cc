// ceil(), ceill() and trunc() for flanneld, so that it needs no libm.so at run time.
//
// fmt's floating-point formatting (instantiated in every file that logs) calls them. At -O2 GCC
// expands them inline and flanneld needs nothing from libm; at -Os (FLANNEL_OPTIMIZE_SIZE) GCC
// calls libm instead, and mapping libm.so costs an idle daemon ~300 kB of RSS for these three
// functions. glibc's libm.a cannot be linked into a dynamic executable (its ifunc resolvers need
// the static libc's CPU tables), so flannel_static_cxx() redirects the calls here with
// `-Wl,--wrap=` and this file is compiled with -O2, where the compiler's builtins become inline
// SSE2/x87 code (no call back into libm).
extern "C" {
double __wrap_ceil(double x) {
  return __builtin_ceil(x);
}
long double __wrap_ceill(long double x) {
  return __builtin_ceill(x);
}
double __wrap_trunc(double x) {
  return __builtin_trunc(x);
}
}
