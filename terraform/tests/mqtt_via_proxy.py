"""One MQTT 3.1.1 CONNECT, optionally behind a PROXY protocol v2 header, as an AWS NLB sends
it; prints the CONNACK return code, or `closed` when the server closes without one.

  python3 mqtt_via_proxy.py HOST PORT CLIENT_ID [--proxy-from IP:PORT] [--user U --password P]

Test code only (test_user_data.sh): no retries, a 5 s timeout on every wait.
"""

import argparse
import ipaddress
import socket
import struct


def proxy_v2(src, dst):
    """A PROXY v2 PROXY-command header for TCP over IPv4 from src to dst ((ip, port) pairs)."""
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    addrs = (ipaddress.IPv4Address(src[0]).packed + ipaddress.IPv4Address(dst[0]).packed
             + struct.pack("!HH", src[1], dst[1]))
    return sig + bytes([0x21, 0x11]) + struct.pack("!H", len(addrs)) + addrs


def mqtt_string(s):
    data = s.encode()
    return struct.pack("!H", len(data)) + data


def connect_packet(client_id, user, password):
    flags = 0x02  # clean session
    payload = mqtt_string(client_id)
    if user is not None:
        flags |= 0x80
        payload += mqtt_string(user)
    if password is not None:
        flags |= 0x40
        payload += mqtt_string(password)
    variable = mqtt_string("MQTT") + bytes([4, flags]) + struct.pack("!H", 60)
    body = variable + payload
    return bytes([0x10, len(body)]) + body  # bodies here stay under 128 bytes


def main():
    p = argparse.ArgumentParser()
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("client_id")
    p.add_argument("--proxy-from")
    p.add_argument("--user")
    p.add_argument("--password")
    a = p.parse_args()
    with socket.create_connection((a.host, a.port), timeout=5) as s:
        data = b""
        if a.proxy_from:
            ip, port = a.proxy_from.rsplit(":", 1)
            data += proxy_v2((ip, int(port)), (a.host, a.port))
        data += connect_packet(a.client_id, a.user, a.password)
        try:
            s.sendall(data)
            reply = s.recv(4)
        except (ConnectionResetError, BrokenPipeError, socket.timeout):
            reply = b""
        if len(reply) == 4 and reply[0] == 0x20:
            print(reply[3], flush=True)
            if reply[3] == 0:
                # Hold the connection open until the caller has looked.
                s.settimeout(5)
                try:
                    s.recv(1)
                except (socket.timeout, ConnectionResetError):
                    pass
        else:
            print("closed")


if __name__ == "__main__":
    main()
