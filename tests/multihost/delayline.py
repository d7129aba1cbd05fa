#!/usr/bin/env python3
"""A user-space delay line for the multi-host tests, for kernels without sch_netem.

    delayline.py DEV DELAY_MS LIFETIME_S

Creates the TUN device DEV (layer 3, no packet information header) in the caller's network
namespace, and writes every packet the kernel routes into it back into the kernel DELAY_MS
later, in order, as if it had arrived on DEV. run.sh (the `delay` case) routes h2's packets for
h1 into DEV and routes what comes back out of DEV onto eth0, so each packet h2 sends to h1 is
held DELAY_MS once: the round trip h2-h1 grows by DELAY_MS; replies travel the real veth.

Prints "ready" once the device exists. Exits after LIFETIME_S seconds at the latest (so a test
that could not kill it leaves nothing running), on SIGTERM, or on an error, with a message.
Nothing is dropped here: a packet the kernel cannot take back (EAGAIN) is retried in order.
"""
import collections
import fcntl
import os
import select
import signal
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def main(argv):
    if len(argv) != 4:
        sys.exit("usage: delayline.py DEV DELAY_MS LIFETIME_S")
    dev, delay, lifetime = argv[1], float(argv[2]) / 1000.0, float(argv[3])
    if len(dev.encode()) >= 16 or not 0 <= delay <= 10 or lifetime <= 0:
        sys.exit(f"delayline: bad arguments {argv[1:]}: DEV under 16 bytes, 0 <= DELAY_MS <= 10000, LIFETIME_S > 0")
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", dev.encode(), IFF_TUN | IFF_NO_PI))
    except OSError as e:
        sys.exit(f"delayline: cannot create TUN device {dev}: {e}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("ready", flush=True)
    end = time.monotonic() + lifetime
    held = collections.deque()  # (due time, packet), in arrival order, so due times ascend
    while True:
        now = time.monotonic()
        if now >= end:
            return 0
        while held and held[0][0] <= now:
            try:
                os.write(fd, held[0][1])
            except BlockingIOError:
                break  # the kernel's backlog is full: retry on the next turn, keeping the order
            except OSError as e:
                # A packet the kernel refuses (EINVAL for a malformed one) is lost, as on a wire.
                print(f"delayline: a packet was refused: {e}", file=sys.stderr)
            held.popleft()
        wait = min(end - now, held[0][0] - now if held else 1.0)
        readable, _, _ = select.select([fd], [], [], max(wait, 0.0005))
        if readable:
            arrived = time.monotonic()
            while True:
                try:
                    packet = os.read(fd, 65536)
                except BlockingIOError:
                    break
                held.append((arrived + delay, packet))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
