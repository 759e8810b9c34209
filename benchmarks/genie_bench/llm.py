"""The LLM layer's own overhead per call, against bare httpx, over a local socket.

``python -m genie_bench.llm`` starts a small OpenAI-format server on 127.0.0.1 (``http.server``
in a thread, answering at once) and times, interleaved in rounds as the rest of the harness
does, a bare ``httpx.AsyncClient.post`` (plus ``.json()``) against the same call through the full
wrapper stack (deadline, cache miss, residency, retry, daily budget, kill switch, circuit, cost
observer, OpenAI adapter); and the time to the first text delta of a stream against bare httpx
reading lines until its first ``data:`` line. It prints medians and the ratio, of wall time
and of the client thread's CPU time (the server runs in another thread), which a loaded
machine disturbs far less.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import threading
import time
from collections.abc import Awaitable, Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from genie.llm import (
    BudgetLedger,
    Cache,
    CallContext,
    ChatMessage,
    Circuit,
    CostObserver,
    DailyTokenBudget,
    Deadline,
    KillSwitch,
    OpenAIProvider,
    PriceTable,
    Provider,
    Request,
    Residency,
    Retry,
    TextDelta,
)

ANSWER = json.dumps(
    {
        "id": "chatcmpl-1",
        "model": "bench",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 1},
    }
).encode()
STREAM = (
    b"".join(
        b"data: " + json.dumps(chunk).encode() + b"\n\n"
        for chunk in (
            {"model": "bench", "choices": [{"index": 0, "delta": {"content": "ok"}}]},
            {"model": "bench", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            {"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 1}},
        )
    )
    + b"data: [DONE]\n\n"
)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body in one write: separate small writes meet the peer's delayed ACK and
    # add about 40 ms per call, which would hide everything measured here.
    wbufsize = 1 << 16

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        payload = STREAM if body.get("stream") else ANSWER
        self.send_response(200)
        self.send_header(
            "content-type", "text/event-stream" if body.get("stream") else "application/json"
        )
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()


def full_stack(client: httpx.AsyncClient, url: str) -> Provider:
    adapter = OpenAIProvider(base_url=url, model="bench", region="on-prem", client=client)
    prices = PriceTable.of({"bench": {"input": 1.0, "output": 2.0}})
    ledger = BudgetLedger(max_tokens=10**12, max_cost=10**9, name="correlation")
    inner: Provider = Circuit(CostObserver(adapter, prices))
    inner = KillSwitch(inner, ledger, prices=prices, model="bench")
    inner = DailyTokenBudget(inner, 10**12)
    inner = Retry(inner, seed=1)
    return Deadline(Cache(Residency(inner)), timeout=30)


def request(n: int, *, stream: bool = False) -> Request:
    # A different question each time: every call misses the cache and goes to the server.
    return Request(
        messages=(ChatMessage.user(f"question {n}"),),
        max_tokens=16,
        context=CallContext(correlation_id=f"c{n % 50}", principal="bench"),
    )


async def _time(fn: Callable[[int], Awaitable[None]], n: int) -> tuple[float, float]:
    """Wall time and this thread's CPU time of one call. The server answers from another
    thread, so the CPU time is the client's alone: ours and httpx's, not the machine's load."""
    started, cpu = time.perf_counter(), time.thread_time()
    await fn(n)
    return time.perf_counter() - started, time.thread_time() - cpu


async def run(calls: int, rounds: int) -> dict[str, float]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        async with httpx.AsyncClient() as client:
            stack = full_stack(client, url)
            adapter = OpenAIProvider(base_url=url, model="bench", region="on-prem", client=client)

            async def bare(n: int) -> None:
                body = adapter.body(request(n), stream=False)
                (await client.post(url + "/v1/chat/completions", json=body)).json()

            async def layered(n: int) -> None:
                await stack.complete(request(n))

            async def bare_first_token(n: int) -> None:
                body = adapter.body(request(n), stream=True)
                async with client.stream("POST", url + "/v1/chat/completions", json=body) as r:
                    async for line in r.aiter_lines():
                        if line.startswith("data: "):
                            return

            async def layered_first_token(n: int) -> None:
                async with stack.stream(request(n)) as events:
                    async for event in events:
                        if isinstance(event, TextDelta):
                            return

            samples: dict[str, list[float]] = {}
            cpu: dict[str, list[float]] = {}
            fns = {
                "bare": bare,
                "stack": layered,
                "bare_ttft": bare_first_token,
                "stack_ttft": layered_first_token,
            }
            for name, fn in fns.items():  # warm up connections and code paths
                for n in range(20):
                    await fn(n)
                samples[name] = []
                cpu[name] = []
            n = 0
            for r in range(rounds):
                order = list(fns.items())
                order = order[r % len(order) :] + order[: r % len(order)]
                for name, fn in order:
                    for _ in range(calls // rounds):
                        n += 1
                        wall, spent = await _time(fn, n)
                        samples[name].append(wall)
                        cpu[name].append(spent)
    finally:
        server.shutdown()
        server.server_close()
    med = {name: statistics.median(values) for name, values in samples.items()}
    cpu_med = {name: statistics.median(values) for name, values in cpu.items()}
    return {
        **{f"{k}_ms": v * 1000 for k, v in med.items()},
        "ratio": med["stack"] / med["bare"],
        "ttft_delta_ms": (med["stack_ttft"] - med["bare_ttft"]) * 1000,
        **{f"{k}_cpu_ms": v * 1000 for k, v in cpu_med.items()},
        "cpu_ratio": cpu_med["stack"] / cpu_med["bare"],
        "ttft_cpu_delta_ms": (cpu_med["stack_ttft"] - cpu_med["bare_ttft"]) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000, help="calls per variant (default 1000)")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    result = asyncio.run(run(args.calls, args.rounds))
    for key, value in result.items():
        print(f"{key:>15}: {value:.3f}")


if __name__ == "__main__":
    main()
