#include "support/free_port.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace flannel::test {

Result<std::vector<uint16_t>> pickFreeLoopbackPorts(size_t count) {
  std::vector<int> sockets;
  std::vector<uint16_t> ports;
  auto closeAll = [&sockets] {
    for (int fd : sockets) {
      ::close(fd);
    }
  };
  for (size_t i = 0; i < count; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      const int err = errno;
      closeAll();
      return makeError(Errc::Internal, fmt::format("socket: {}", std::strerror(err)), err);
    }
    sockets.push_back(fd);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof addr;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      const int err = errno;
      closeAll();
      return makeError(Errc::Internal,
                       fmt::format("binding a free loopback port: {}", std::strerror(err)), err);
    }
    ports.push_back(ntohs(addr.sin_port));
  }
  closeAll();
  return ports;
}

}  // namespace flannel::test
