// DOC: PacketIo on Linux: /dev/net/tun queues and UDP sockets with recvmmsg/sendmmsg, UDP
// GSO/GRO and TUN virtio-net offloads, each probed when opening and dropped when the kernel
// refuses it (the log line from the caller says what was kept).
#pragma once

#include "kernel/packet_io.h"

namespace flannel::kernel {

class LinuxPacketIo final : public PacketIo {
 public:
  Result<TunDevice> openTun(const TunOptions& opts) override;
  Result<std::vector<std::unique_ptr<UdpBatchSocket>>> openUdp(const UdpOptions& opts) override;
  // tc BPF programs attached with tcx links (kernel/tun/tc_path.h).
  Result<std::unique_ptr<UdpFastPath>> attachUdpFastPath(const UdpFastPathOptions& opts) override;
  // Whether the last openUdp() with more than one socket got its inner-flow steering program.
  bool steering() const { return steering_; }

 private:
  bool steering_ = false;
};

}  // namespace flannel::kernel
