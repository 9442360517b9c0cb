"""I/O at the edges: capture files today; TUN devices and sockets join here later."""

from meshcore.io.pcap import Capture, read_pcap, write_pcap

__all__ = ["Capture", "read_pcap", "write_pcap"]
