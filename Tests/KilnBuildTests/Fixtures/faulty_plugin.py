#!/usr/bin/env python3
"""A provider plugin that misbehaves on purpose, one way per name it is installed under:

kiln-provider-crash      exits with status 3 (and a last word on stderr) when asked to exec
kiln-provider-hang       never answers create-instance
kiln-provider-garbage    answers the handshake with a line that is not JSON
kiln-provider-oldproto   speaks protocol version 99
kiln-provider-refuse     answers exec with a structured error
kiln-provider-orphan     starts a child (in its process group) on exec, then hangs
kiln-provider-notready   creates its instance, then answers wait-ready with an error

It writes its pid (and the orphan's) to $FAULTY_PLUGIN_PIDS, so a test can check nothing survives,
and "destroy ID" to $FAULTY_PLUGIN_PIDS.destroyed when asked to destroy an instance.
"""
import json
import os
import subprocess
import sys
import time

mode = os.path.basename(sys.argv[0]).removeprefix("kiln-provider-")
pids = os.environ.get("FAULTY_PLUGIN_PIDS")


def note(pid):
    if pids:
        with open(pids, "a") as f:
            f.write(f"{pid}\n")


def send(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


note(os.getpid())
for line in sys.stdin:
    message = json.loads(line)
    method, request = message.get("method"), message.get("id")
    if method == "handshake":
        if mode == "garbage":
            print("hello there, I am not JSON", flush=True)
            continue
        send({"id": request, "result": {"protocol": 99 if mode == "oldproto" else 1, "capabilities": ["exec"]}})
    elif method == "create-instance":
        if mode == "hang":
            time.sleep(3600)
        os.makedirs(message["params"]["scratch_directory"], exist_ok=True)
        send({"id": request, "result": {"instance_id": "i-1"}})
    elif method == "wait-ready":
        if mode == "notready":
            send({"id": request, "error": {"code": "not_ready", "message": "the instance never came up"}})
            continue
        send({"id": request, "result": {}})
    elif method == "exec":
        send({"id": request, "event": "output", "stream": "stdout", "text": "step output before the fault"})
        if mode == "crash":
            print("segmentation fault (not really)", file=sys.stderr, flush=True)
            sys.exit(3)
        if mode == "refuse":
            send({"id": request, "error": {"code": "quota_exceeded", "message": "no more instances today"}})
            continue
        if mode == "orphan":
            child = subprocess.Popen(["sleep", "3600"])
            note(child.pid)
            time.sleep(3600)
        send({"id": request, "result": {"exit_status": 0}})
    elif method == "destroy":
        if pids:
            with open(pids + ".destroyed", "a") as f:
                f.write(f"destroy {message['params']['instance_id']}\n")
        send({"id": request, "result": {}})
    elif method != "cancel":
        send({"id": request, "result": {}})
