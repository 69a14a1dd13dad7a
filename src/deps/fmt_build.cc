// fmt compiled into the project (FLANNEL_STATIC_LIBS; see CMakeLists.txt here). Without
// FMT_HEADER_ONLY, fmt's headers declare its non-template functions and leave their definitions
// to format-inl.h, which this one translation unit includes; the templates the headers expect
// to be instantiated in the library are instantiated here for char.
#ifndef FMT_STATIC_THOUSANDS_SEPARATOR
#error "FMT_STATIC_THOUSANDS_SEPARATOR must be set: flanneld carries no std::locale"
#endif
#include <fmt/format-inl.h>

FMT_BEGIN_NAMESPACE
namespace detail {

template FMT_API auto dragonbox::to_decimal(float x) noexcept -> dragonbox::decimal_fp<float>;
template FMT_API auto dragonbox::to_decimal(double x) noexcept -> dragonbox::decimal_fp<double>;
// FMT_STATIC_THOUSANDS_SEPARATOR (CMakeLists.txt here): no std::locale anywhere in fmt.
template FMT_API auto thousands_sep_impl(locale_ref) -> thousands_sep_result<char>;
template FMT_API auto decimal_point_impl(locale_ref) -> char;
template FMT_API void buffer<char>::append(const char*, const char*);
template FMT_API void vformat_to(buffer<char>&, string_view,
                                 basic_format_args<FMT_BUFFER_CONTEXT(char)>, locale_ref);

}  // namespace detail
FMT_END_NAMESPACE
