// spdlog compiled into the project (FLANNEL_STATIC_LIBS; see CMakeLists.txt here). Debian ships
// spdlog's headers with their implementation parts (*-inl.h); in compiled-library mode
// (SPDLOG_COMPILED_LIB) the headers only declare, and this file is the one translation unit
// that includes the implementation and instantiates the sink templates the project uses.
#ifndef SPDLOG_COMPILED_LIB
#error "spdlog_build.cc is built with SPDLOG_COMPILED_LIB (src/deps/CMakeLists.txt)"
#endif

#include <mutex>

#include <spdlog/common-inl.h>
#include <spdlog/details/backtracer-inl.h>
#include <spdlog/details/console_globals.h>
#include <spdlog/details/log_msg-inl.h>
#include <spdlog/details/log_msg_buffer-inl.h>
#include <spdlog/details/null_mutex.h>
#include <spdlog/details/os-inl.h>
#include <spdlog/details/periodic_worker-inl.h>
#include <spdlog/details/registry-inl.h>
#include <spdlog/logger-inl.h>
#include <spdlog/pattern_formatter-inl.h>
#include <spdlog/sinks/ansicolor_sink-inl.h>
#include <spdlog/sinks/base_sink-inl.h>
#include <spdlog/sinks/sink-inl.h>
#include <spdlog/sinks/stdout_color_sinks-inl.h>
#include <spdlog/sinks/stdout_sinks-inl.h>
#include <spdlog/spdlog-inl.h>

namespace spdlog {
using details::console_mutex;
using details::console_nullmutex;

template class sinks::base_sink<std::mutex>;
template class sinks::base_sink<details::null_mutex>;
template class sinks::stdout_sink_base<console_mutex>;
template class sinks::stdout_sink_base<console_nullmutex>;
template class sinks::stdout_sink<console_mutex>;
template class sinks::stdout_sink<console_nullmutex>;
template class sinks::stderr_sink<console_mutex>;
template class sinks::stderr_sink<console_nullmutex>;
// The default logger (spdlog::info() before any set-up) is a colour sink on stdout.
template class sinks::ansicolor_sink<console_mutex>;
template class sinks::ansicolor_sink<console_nullmutex>;
template class sinks::ansicolor_stdout_sink<console_mutex>;
template class sinks::ansicolor_stdout_sink<console_nullmutex>;
template class sinks::ansicolor_stderr_sink<console_mutex>;
template class sinks::ansicolor_stderr_sink<console_nullmutex>;
}  // namespace spdlog
