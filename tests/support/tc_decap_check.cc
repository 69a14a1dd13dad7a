#include "support/tc_decap_check.h"

#include <linux/pkt_cls.h>

#include <algorithm>
#include <span>
#include <string>

namespace flannel::test {

void setBe16(Frame& b, size_t at, uint16_t v) {
  b[at] = std::byte(v >> 8);
  b[at + 1] = std::byte(v & 0xff);
}

uint16_t be16(const Frame& b, size_t at) {
  return static_cast<uint16_t>((std::to_integer<unsigned>(b[at]) << 8) |
                               std::to_integer<unsigned>(b[at + 1]));
}

void fixIpv4Checksum(Frame& b, size_t at) {
  setBe16(b, at + 10, 0);
  setBe16(b, at + 10,
          backend::udp::checksumFold(backend::udp::checksumAdd(std::span(b).subspan(at, 20))));
}

Frame tcFrame(const Frame& inner, Ip4 from) {
  Frame f(14 + 28, std::byte{0});
  for (int i = 0; i < 12; ++i) {
    f[i] = std::byte(0x02 + i);  // some unicast MACs
  }
  setBe16(f, 12, 0x0800);
  f[14] = std::byte{0x45};
  setBe16(f, 16, static_cast<uint16_t>(28 + inner.size()));
  setBe16(f, 20, 0x4000);  // DF
  f[22] = std::byte{64};
  f[23] = std::byte{17};
  const auto s = from.bytes();
  const auto d = kTcLocal.bytes();
  for (int i = 0; i < 4; ++i) {
    f[26 + i] = std::byte{s[i]};
    f[30 + i] = std::byte{d[i]};
  }
  fixIpv4Checksum(f, 14);
  setBe16(f, 34, kTcPort);
  setBe16(f, 36, kTcPort);
  setBe16(f, 38, static_cast<uint16_t>(8 + inner.size()));
  f.insert(f.end(), inner.begin(), inner.end());
  return f;
}

DecapCheck checkDecap(const kernel::TcPath& path, const backend::udp::RouteTable& table,
                      const Frame& frame) {
  DecapCheck c;
  auto v = path.testDecap(frame);
  if (!v) {
    c.problem = "test run failed: " + v.error().message;
    return c;
  }
  c.action = v->action;
  if (v->action == TC_ACT_OK) {
    if (v->frame != frame) {
      c.problem = "a frame left to user space was changed";
    }
    return c;
  }
  if (v->action != TC_ACT_REDIRECT) {
    c.problem = "unexpected tc action " + std::to_string(v->action);
    return c;
  }
  // What user space would do with the same datagram, from the outer source.
  const size_t outer_len = frame.size() >= 18 ? be16(frame, 16) : 0;
  if (outer_len < 28 + 20 || frame.size() < 14 + outer_len) {
    c.problem = "taken, but its outer length does not fit the frame";
    return c;
  }
  Frame dgram(frame.begin() + 42, frame.begin() + static_cast<long>(14 + outer_len));
  const Ip4 from =
      Ip4::fromBytes(std::to_integer<uint8_t>(frame[26]), std::to_integer<uint8_t>(frame[27]),
                     std::to_integer<uint8_t>(frame[28]), std::to_integer<uint8_t>(frame[29]));
  const auto r = backend::udp::decap(dgram, from, table);
  if (r.drop != backend::udp::Drop::None) {
    c.problem = std::string("taken, but user space drops it as ") + backend::udp::dropName(r.drop);
    return c;
  }
  dgram.resize(r.length);
  if (v->frame.size() < 14 + dgram.size() ||
      !std::equal(frame.begin(), frame.begin() + 14, v->frame.begin())) {
    c.problem = "taken, but the output is short or its Ethernet header changed";
    return c;
  }
  Frame inner(v->frame.begin() + 14, v->frame.begin() + 14 + static_cast<long>(dgram.size()));
  if (!backend::udp::ipv4HeaderChecksumOk(std::span(inner).first(20))) {
    c.problem = "taken, but the inner header checksum is wrong after the TTL change";
    return c;
  }
  inner[10] = dgram[10];
  inner[11] = dgram[11];
  if (inner != dgram) {
    c.problem = "taken, but the kernel's inner packet differs from user space's";
  }
  return c;
}

}  // namespace flannel::test
