// DOC: ByteStream: a plain TCP or a TLS connection behind one type, for the HTTP exchange code.
//
// Beast's HTTP reader and writer are templates over the stream type; used directly with both
// beast::tcp_stream and ssl_stream<tcp_stream>, all of that machinery (and the coroutines in
// exchange.h) is compiled twice. ByteStream is an Asio AsyncReadStream / AsyncWriteStream whose
// read_some / write_some go through one virtual call to the real stream, with the completion
// handler type-erased (net::any_completion_handler), so the HTTP code exists once
// (BENCHMARKS.md, idle RSS). Per call it costs a virtual call and the handler's allocation
// (Asio's recycling allocator): nothing next to a network round trip.
//
// Buffer sequences are passed on as at most kMaxBuffers buffers; a read_some / write_some may
// transfer less than asked, so a longer sequence is simply finished by the next call.
#pragma once

#include <array>
#include <cstddef>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/buffer.hpp>

#include "async/asio.h"

namespace flannel::store::http {

class ByteStream {
 public:
  using executor_type = async::Executor;
  using Handler = net::any_completion_handler<void(boost::system::error_code, std::size_t)>;
  static constexpr std::size_t kMaxBuffers = 16;

  // A buffer sequence of up to kMaxBuffers buffers, held by value (Asio operations copy it).
  template <class Buffer>
  struct Buffers {
    std::array<Buffer, kMaxBuffers> items{};
    std::size_t count = 0;
    const Buffer* begin() const { return items.data(); }
    const Buffer* end() const { return items.data() + count; }
  };

  ByteStream() = default;
  ByteStream(const ByteStream&) = delete;
  ByteStream& operator=(const ByteStream&) = delete;
  virtual ~ByteStream() = default;

  virtual executor_type get_executor() = 0;

  template <class MutableBufferSequence, class Token>
  auto async_read_some(const MutableBufferSequence& buffers, Token&& token) {
    return net::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [this](auto handler, const Buffers<net::mutable_buffer>& b) {
          readSome(b, Handler(std::move(handler)));
        },
        token, flatten<net::mutable_buffer>(buffers));
  }

  template <class ConstBufferSequence, class Token>
  auto async_write_some(const ConstBufferSequence& buffers, Token&& token) {
    return net::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [this](auto handler, const Buffers<net::const_buffer>& b) {
          writeSome(b, Handler(std::move(handler)));
        },
        token, flatten<net::const_buffer>(buffers));
  }

 protected:
  virtual void readSome(const Buffers<net::mutable_buffer>& buffers, Handler handler) = 0;
  virtual void writeSome(const Buffers<net::const_buffer>& buffers, Handler handler) = 0;

 private:
  template <class Buffer, class Sequence>
  static Buffers<Buffer> flatten(const Sequence& sequence) {
    Buffers<Buffer> out;
    for (auto it = net::buffer_sequence_begin(sequence);
         it != net::buffer_sequence_end(sequence) && out.count < kMaxBuffers; ++it) {
      Buffer b(*it);
      if (b.size() > 0) {
        out.items[out.count++] = b;
      }
    }
    return out;
  }
};

// The ByteStream of a stream that outlives it (beast::tcp_stream, ssl_stream<tcp_stream>).
template <class Stream>
class ByteStreamOver : public ByteStream {
 public:
  explicit ByteStreamOver(Stream& stream) : stream_(stream) {}
  executor_type get_executor() override { return stream_.get_executor(); }

 protected:
  // The handler is bound to the stream's executor (where all HTTP work runs): Boost 1.81's
  // any_completion_executor cannot be required to be blocking.never, which Beast's tcp_stream
  // asks of a handler's executor when it completes an operation early (net::post).
  void readSome(const Buffers<net::mutable_buffer>& buffers, Handler handler) override {
    stream_.async_read_some(buffers,
                            net::bind_executor(stream_.get_executor(), std::move(handler)));
  }
  void writeSome(const Buffers<net::const_buffer>& buffers, Handler handler) override {
    stream_.async_write_some(buffers,
                             net::bind_executor(stream_.get_executor(), std::move(handler)));
  }

 private:
  Stream& stream_;
};

}  // namespace flannel::store::http
