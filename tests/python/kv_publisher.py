"""A real engine KV-event publisher driven over stdin, for Switchyard's ZMQ ingestion tests.

The publisher is SGLang's own `ZmqEventPublisher` (PUB socket + ROUTER replay socket, the same
wire protocol as vLLM's), loaded from the installed `sglang` package without running the
package's `__init__` (which imports torch). Events are msgspec structs:

- layout `sglang`: SGLang's `KVEventBatch` / `BlockStored` / ... (positional batch, map events);
- layout `vllm-array`: vLLM's older `array_like` structs (positional batch, positional events
  led by the tag), declared here with msgspec exactly as vLLM declared them;
- layout `vllm-map`: vLLM's current structs (map batch with `data_parallel_rank`, map events).

`--hashes bytes` sends block hashes as 32-byte strings (vLLM's sha256 hashes), else ints.

Protocol: prints one JSON line `{"pub": ..., "replay": ...}` once bound; then reads one JSON
command per line and answers `{"ok": true}` once the batch is queued:
  {"op": "store", "hashes": [..], "parent": h|null, "tokens": [..], "block_size": n}
  {"op": "remove", "hashes": [..]}
  {"op": "clear"}
  {"op": "drop_live", "count": n}   the next n batches go to the replay buffer only
  {"op": "restart"}                 a new publisher on the same ports (sequence from 0)
  {"op": "quit"}
"""

import argparse
import json
import os
import sys
import time
import types
from typing import Any, Optional, Union

import msgspec
import zmq


def load_sglang_kv_events():
    base = None
    for entry in sys.path:
        candidate = os.path.join(entry, "sglang")
        if os.path.isfile(os.path.join(candidate, "srt", "disaggregation", "kv_events.py")):
            base = candidate
            break
    if base is None:
        raise SystemExit("sglang is not installed (pip install --no-deps sglang)")
    # Namespace stand-ins for the packages, so importing the module runs only the modules it
    # needs, not sglang/__init__.py (torch, flashinfer, ...).
    for name, path in [
        ("sglang", base),
        ("sglang.srt", os.path.join(base, "srt")),
        ("sglang.srt.utils", os.path.join(base, "srt", "utils")),
        ("sglang.srt.disaggregation", os.path.join(base, "srt", "disaggregation")),
    ]:
        if name not in sys.modules:
            module = types.ModuleType(name)
            module.__path__ = [path]
            sys.modules[name] = module
    import sglang.srt.disaggregation.kv_events as kv_events

    return kv_events


kv = load_sglang_kv_events()


# vLLM's array_like structs (vllm/distributed/kv_events.py before the map layout).
class VllmArrayEvent(msgspec.Struct, array_like=True, omit_defaults=True, gc=False, tag=True):
    pass


class VllmArrayBlockStored(VllmArrayEvent, tag="BlockStored"):
    block_hashes: list[Union[int, bytes]]
    parent_block_hash: Optional[Union[int, bytes]]
    token_ids: list[int]
    block_size: int
    lora_id: Optional[int]
    medium: Optional[str]


class VllmArrayBlockRemoved(VllmArrayEvent, tag="BlockRemoved"):
    block_hashes: list[Union[int, bytes]]
    medium: Optional[str]


class VllmArrayAllBlocksCleared(VllmArrayEvent, tag="AllBlocksCleared"):
    pass


class VllmArrayBatch(msgspec.Struct, array_like=True, omit_defaults=True, gc=False):
    ts: float
    events: list[Any]
    # The publisher sets `attn_dp_rank`; vLLM calls it data_parallel_rank (same position).
    attn_dp_rank: Optional[int] = None


# vLLM's current structs: maps, tag under "type".
class VllmMapEvent(msgspec.Struct, omit_defaults=True, gc=False, tag=True):
    pass


class VllmMapBlockStored(VllmMapEvent, tag="BlockStored"):
    block_hashes: list[Union[int, bytes]]
    parent_block_hash: Optional[Union[int, bytes]]
    token_ids: list[int]
    block_size: int
    lora_id: Optional[int]
    medium: Optional[str]
    lora_name: Optional[str]
    extra_keys: Optional[list] = None
    group_idx: Optional[int] = None


class VllmMapBlockRemoved(VllmMapEvent, tag="BlockRemoved"):
    block_hashes: list[Union[int, bytes]]
    medium: Optional[str]
    group_idx: Optional[int] = None


class VllmMapAllBlocksCleared(VllmMapEvent, tag="AllBlocksCleared"):
    pass


class VllmMapBatch(msgspec.Struct, omit_defaults=True, gc=False):
    ts: float
    events: list[Any]
    attn_dp_rank: Optional[int] = msgspec.field(default=None, name="data_parallel_rank")


class LiveDropper:
    """Wraps the PUB socket: drops the next `count` live sends (they stay in the replay buffer,
    which the publisher fills after sending), as a lossy network would."""

    def __init__(self, socket):
        self.socket = socket
        self.count = 0

    def send_multipart(self, frames, *args, **kwargs):
        if self.count > 0:
            self.count -= 1
            return None
        return self.socket.send_multipart(frames, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.socket, name)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--layout", choices=["sglang", "vllm-array", "vllm-map"], required=True)
    parser.add_argument("--hashes", choices=["int", "bytes"], default="int")
    parser.add_argument("--dp-rank", type=int, default=0)
    args = parser.parse_args()

    def engine_hash(h):
        if h is None:
            return None
        return h.to_bytes(32, "big") if args.hashes == "bytes" else h

    def make_publisher(pub, replay):
        # After a restart the old sockets close asynchronously: retry the bind for a while.
        deadline = time.time() + 10
        while True:
            try:
                publisher = kv.ZmqEventPublisher(
                    attn_dp_rank=args.dp_rank, endpoint=pub, replay_endpoint=replay,
                    buffer_steps=1000, bind=True,
                )
                break
            except zmq.error.ZMQError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        dropper = LiveDropper(publisher._pub)
        publisher._pub = dropper
        return publisher, dropper

    publisher, dropper = make_publisher("tcp://127.0.0.1:*", "tcp://127.0.0.1:*")
    pub_endpoint = publisher._local_pub_endpoint
    replay_endpoint = publisher._local_replay_endpoint
    print(json.dumps({"pub": pub_endpoint, "replay": replay_endpoint}), flush=True)

    def batch(events):
        if args.layout == "sglang":
            return kv.KVEventBatch(ts=time.time(), events=events)
        if args.layout == "vllm-array":
            return VllmArrayBatch(ts=time.time(), events=events)
        return VllmMapBatch(ts=time.time(), events=events)

    def stored(cmd):
        hashes = [engine_hash(h) for h in cmd["hashes"]]
        parent = engine_hash(cmd.get("parent"))
        tokens, size = cmd["tokens"], cmd["block_size"]
        if args.layout == "sglang":
            return kv.BlockStored(
                block_hashes=hashes, parent_block_hash=parent, token_ids=tokens,
                block_size=size, lora_id=None, medium="GPU",
            )
        if args.layout == "vllm-array":
            return VllmArrayBlockStored(hashes, parent, tokens, size, None, "GPU")
        return VllmMapBlockStored(hashes, parent, tokens, size, None, "GPU", None)

    def removed(cmd):
        hashes = [engine_hash(h) for h in cmd["hashes"]]
        if args.layout == "sglang":
            return kv.BlockRemoved(block_hashes=hashes, medium="GPU")
        if args.layout == "vllm-array":
            return VllmArrayBlockRemoved(hashes, "GPU")
        return VllmMapBlockRemoved(hashes, "GPU")

    def cleared():
        if args.layout == "sglang":
            return kv.AllBlocksCleared()
        if args.layout == "vllm-array":
            return VllmArrayAllBlocksCleared()
        return VllmMapAllBlocksCleared()

    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "store":
            publisher.publish(batch([stored(cmd)]))
        elif op == "remove":
            publisher.publish(batch([removed(cmd)]))
        elif op == "clear":
            publisher.publish(batch([cleared()]))
        elif op == "drop_live":
            dropper.count = cmd["count"]
        elif op == "restart":
            publisher.shutdown()
            publisher, dropper = make_publisher(pub_endpoint, replay_endpoint)
        elif op == "quit":
            break
        else:
            raise SystemExit(f"unknown op {op}")
        print(json.dumps({"ok": True}), flush=True)
    publisher.shutdown()


if __name__ == "__main__":
    main()
