"""A fake EC2 instance metadata service (IMDSv2) on loopback, for the lifecycle-handler test.

Serves only what terraform/scripts/lifecycle-handler reads: PUT latest/api/token, then (with
that token; 401 without it) meta-data/instance-id, meta-data/placement/region and
meta-data/autoscaling/target-lifecycle-state, which answers InService for the first
`--in-service` requests and Terminated after that (as an Auto Scaling group does when it
scales the instance in). Writes its port to `--port-file` once it listens. Test code only.
"""

import argparse
import os
import http.server
import threading

TOKEN = "fake-imds-token"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--instance-id", default="i-0fake0000test")
    parser.add_argument("--region", default="eu-north-1")
    parser.add_argument("--in-service", type=int, default=2)
    args = parser.parse_args()
    lock = threading.Lock()
    polls = {"n": 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *_):
            pass

        def reply(self, code, body):
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_PUT(self):
            if self.path == "/latest/api/token" and self.headers.get(
                "X-aws-ec2-metadata-token-ttl-seconds"
            ):
                self.reply(200, TOKEN)
            else:
                self.reply(400, "bad token request")

        def do_GET(self):
            if self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
                self.reply(401, "")
                return
            path = self.path.removeprefix("/latest/meta-data/")
            if path == "instance-id":
                self.reply(200, args.instance_id)
            elif path == "placement/region":
                self.reply(200, args.region)
            elif path == "autoscaling/target-lifecycle-state":
                with lock:
                    polls["n"] += 1
                    n = polls["n"]
                self.reply(200, "InService" if n <= args.in_service else "Terminated")
            else:
                self.reply(404, "")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(args.port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(args.port_file + ".tmp", args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
