"""``gcop eval`` against its peers: how busy it keeps its workers, and its CPU per request.

One loopback OpenAI-compatible server (``benchmarks/latency_server.py``, its own process) answers
after a fixed 200 ms or a latency drawn from 50–350 ms per request; 300 GSM8K test problems are
sent by

* **floor**: a minimal client: the ``openai`` SDK in a ``ThreadPoolExecutor`` of W threads;
* **gcop**: ``gcop eval --core-only`` (the real command, with a fresh response cache: every
  request misses it, so its lookups and writes are counted);
* **lm-eval**: ``lm_eval --model local-chat-completions`` (when installed; a local gsm8k task);

at W = 8 and 32 workers. Each client runs as its own process. For each run it prints, from the
server's records, the *span* (first request in to last reply out) and the client's *wall* time as
multiples of the ideal span (sum of the latencies served / W), the span relative to the floor's in
the same round, and the mean number of requests in flight. Then, at zero latency, each client's CPU
per request: marginal, ``(CPU(1000 problems) - CPU(200 problems)) / 800``, so start-up and imports
cancel out (the floor's figure is the SDK's own cost per request).

    python benchmarks/bench_eval.py [--repeat 3] [--no-lm-eval] [--n 300]

Ratios are measured within one round, against the floor of the same round: on a shared machine
the load average is printed beside each round.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "gsm8k"
SETTINGS = [("fixed 200 ms", "fixed:0.2", 8), ("fixed 200 ms", "fixed:0.2", 32),
            ("50-350 ms", "uniform:0.05:0.35", 8), ("50-350 ms", "uniform:0.05:0.35", 32)]

LM_EVAL_TASK = """task: gsm8k_local
dataset_path: json
dataset_kwargs:
  data_files:
    test: {test}
test_split: test
output_type: generate_until
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_target: "{{{{answer}}}}"
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
generation_kwargs:
  until: ["Question:"]
  do_sample: false
  temperature: 0.0
num_fewshot: 0
"""


# ---------------------------------------------------------------------------------- the server


class Server:
    def __init__(self):
        self.process = subprocess.Popen([sys.executable, str(REPO / "benchmarks" / "latency_server.py")],
                                        stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"latency server did not start: {line!r}")
        self.port = int(line.split()[1])
        self.url = f"http://127.0.0.1:{self.port}"

    def _call(self, path: str, payload: dict | None = None) -> dict:
        data = None if payload is None else json.dumps(payload).encode()
        with urllib.request.urlopen(urllib.request.Request(self.url + path, data=data), timeout=30) as reply:
            return json.loads(reply.read())

    def reset(self, latency: str) -> None:
        self._call("/control/reset", {"latency": latency})

    def stats(self) -> list[tuple[float, float, float]]:
        return [tuple(r) for r in self._call("/control/stats")["requests"]]

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


# ---------------------------------------------------------------------------------- the clients


def floor_client(port: int, workers: int, n: int) -> None:
    """The minimal client (run in a child process): the SDK in a thread pool, nothing else."""
    import openai

    from gcop_env.step.prompts import core_prompt
    from gcop_env.validators.gsm8k import load_gsm8k

    prompts = [core_prompt(p.question, "math", None) for p in load_gsm8k("test", data_files=str(DATA))[:n]]
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="EMPTY", max_retries=0)

    def call(prompt: str) -> str:
        reply = client.chat.completions.create(model="bench", messages=[{"role": "user", "content": prompt}],
                                               temperature=0.0, max_tokens=1024)
        return reply.choices[0].message.content

    with ThreadPoolExecutor(max_workers=workers) as pool:
        answers = list(pool.map(call, prompts))
    assert len(answers) == n


def command(client: str, port: int, workers: int, n: int, scratch: Path) -> list[str]:
    if client == "floor":
        return [sys.executable, __file__, "--floor-client", str(port), str(workers), str(n)]
    if client == "gcop":
        return [sys.executable, "-m", "gcop_env.cli", "eval", "--core-only", "--task", "GSM8K",
                "--core", f"openai:bench@http://127.0.0.1:{port}/v1", "--data-files", str(DATA),
                "--limit", str(n), "--workers", str(workers), "--cache", str(scratch / "responses.sqlite"),
                "--no-progress", "--no-preflight", "--max-retries", "1", "--out", str(scratch / "gcop-run")]
    task_dir = scratch / "lm_eval_task"
    task_dir.mkdir(exist_ok=True)
    (task_dir / "gsm8k_local.yaml").write_text(LM_EVAL_TASK.format(test=DATA / "test.jsonl"))
    return [sys.executable, "-m", "lm_eval", "--model", "local-chat-completions", "--model_args",
            f"model=bench,base_url=http://127.0.0.1:{port}/v1/chat/completions,num_concurrent={workers},"
            f"max_retries=1,tokenized_requests=False", "--tasks", "gsm8k_local", "--include_path", str(task_dir),
            "--limit", str(n), "--apply_chat_template", "--output_path", str(scratch / "lm-eval-out")]


def run_child_cpu(argv: list[str]) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds user + system with all its threads, output) of one child process."""
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with tempfile.TemporaryFile() as log:
        started = time.perf_counter()
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        _, status, usage = os.wait4(process.pid, 0)  # the child's own rusage (communicate() would discard it)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        output = log.read().decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} … failed (exit {process.returncode}):\n{output[-3000:]}")
    return wall, usage.ru_utime + usage.ru_stime, output


# ---------------------------------------------------------------------------------- the rounds


def one_run(server: Server, client: str, latency: str, workers: int, n: int) -> dict:
    server.reset(latency)
    with tempfile.TemporaryDirectory() as scratch:
        wall, cpu, _ = run_child_cpu(command(client, server.port, workers, n, Path(scratch)))
    records = server.stats()
    if len(records) < n:
        raise RuntimeError(f"{client}: the server saw {len(records)} requests, expected {n}")
    first = min(r[0] for r in records)
    last = max(r[1] for r in records)
    served = sum(r[2] for r in records)
    span = last - first
    ideal = served / workers
    return {"client": client, "requests": len(records), "span": span, "wall": wall, "cpu": cpu,
            "ideal": ideal, "in_flight": served / span if span else float("nan")}


def throughput_round(server: Server, clients: list[str], n: int) -> list[dict]:
    rows = []
    for name, latency, workers in SETTINGS:
        load = os.getloadavg()[0]
        runs = {client: one_run(server, client, latency, workers, n) for client in clients}
        for client, run in runs.items():
            run.update(setting=f"{name}, {workers} workers", workers=workers, load=load,
                       vs_floor=run["span"] / runs["floor"]["span"])
            rows.append(run)
    return rows


def cpu_round(server: Server, clients: list[str], small: int, large: int) -> dict[str, tuple[float, float]]:
    """client -> (marginal CPU ms per request, total CPU ms per request at ``large``), at zero latency."""
    out = {}
    for client in clients:
        big = one_run(server, client, "zero", 8, large)
        little = one_run(server, client, "zero", 8, small)
        out[client] = (1000 * (big["cpu"] - little["cpu"]) / (large - small), 1000 * big["cpu"] / large)
    return out


def breakdown(server: Server, small: int, large: int, workers: int = 8) -> list[tuple[str, float]]:
    """Marginal CPU ms per request of each layer of ``gcop eval``, in this process at zero latency:
    each layer runs ``large`` and ``small`` requests through a pool of ``workers`` threads (one
    shared SDK client, as gcop uses), and the difference over ``large - small`` is its cost."""
    import openai

    from gcop_env.cores import RetryPolicy, make_core
    from gcop_env.cores.base import CoreRequest, Message, SamplingParams
    from gcop_env.cores.openai_core import OpenAICore
    from gcop_env.evaluation.config import EvalConfig
    from gcop_env.evaluation.run import run_eval
    from gcop_env.step.prompts import core_prompt
    from gcop_env.step.reward import RewardConfig
    from gcop_env.step.scoring import GuideScorer
    from gcop_env.validators.gsm8k import GSM8KValidator, load_gsm8k

    server.reset("zero")
    problems = load_gsm8k("test", data_files=str(DATA))
    base = f"http://127.0.0.1:{server.port}/v1"
    sampling = SamplingParams(temperature=0.0, max_tokens=1024)
    requests = [CoreRequest(messages=(Message("user", core_prompt(p.question, "math", None)),), sampling=sampling)
                for p in problems]

    def pooled(fn, items) -> float:
        started = time.process_time()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(fn, items))
        return time.process_time() - started

    def marginal(make_fn) -> float:
        costs = {}
        for n in (small, large, small, large):  # alternated, each size measured twice, the lower kept
            fn, items = make_fn(n)
            costs[n] = min(costs.get(n, float("inf")), pooled(fn, items))
        return 1000 * (costs[large] - costs[small]) / (large - small)

    def sdk(n):
        client = openai.OpenAI(base_url=base, api_key="EMPTY", max_retries=0)
        return (lambda r: client.chat.completions.create(model="bench", messages=[{"role": "user", "content":
                                                                                    r.messages[0].content}],
                                                         temperature=0.0, max_tokens=1024)), requests[:n]

    def backend(n):
        core = OpenAICore("bench", base_url=base)
        return core.complete, requests[:n]

    def managed(cache):
        def make(n):
            scratch = Path(tempfile.mkdtemp())
            core = make_core(f"openai:bench@{base}", cache=str(scratch / "c.sqlite") if cache else False,
                             retry=RetryPolicy(max_attempts=1))
            return core.complete, requests[:n]
        return make

    def scorer(n):
        scratch = Path(tempfile.mkdtemp())
        core = make_core(f"openai:bench@{base}", cache=str(scratch / "c.sqlite"), retry=RetryPolicy(max_attempts=1))
        scoring = GuideScorer(GSM8KValidator(), core, reward=RewardConfig(beta=0.0, gamma=0.0, kappa=0.0, lam=0.0),
                              sampling=sampling)
        return scoring.score_unguided, problems[:n]

    layers = [("openai SDK in a thread pool (the floor)", marginal(sdk)),
              ("+ gcop's OpenAI backend (raw response, rate-limit headers)", marginal(backend)),
              ("+ retries, rate limiter, pricing (ManagedCore, no cache)", marginal(managed(False))),
              ("+ the response cache (SQLite lookup and write)", marginal(managed(True))),
              ("+ the scorer (prompt, GSM8K validation)", marginal(scorer))]

    def whole(n):
        scratch = Path(tempfile.mkdtemp())
        config = EvalConfig(kind="core-only", task="GSM8K", data_files=str(DATA), limit=n, workers=workers,
                            core=f"openai:bench@{base}", cache=str(scratch / "c.sqlite"), out=str(scratch / "run"),
                            max_retries=1)
        return (lambda config: run_eval(config, progress=False, preflight=False)), [config]
    costs = {}
    for n in (small, large, small, large):
        fn, (config,) = whole(n)
        started = time.process_time()
        fn(config)
        costs[n] = min(costs.get(n, float("inf")), time.process_time() - started)
    layers.append(("+ the eval loop (rows, records, summary): gcop eval in-process",
                   1000 * (costs[large] - costs[small]) / (large - small)))
    return layers


def print_throughput(rounds: list[list[dict]]) -> None:
    print("\n| setting | client | span / ideal | wall / ideal | span / floor's | in flight (of W) | load |")
    print("|---|---|---|---|---|---|---|")
    keys = [(r["setting"], r["client"]) for r in rounds[0]]
    for setting, client in keys:
        runs = [next(r for r in rnd if (r["setting"], r["client"]) == (setting, client)) for rnd in rounds]

        def cell(f):
            values = [f(r) for r in runs]
            return f"{values[0]:.2f}" if len(values) == 1 else f"{min(values):.2f}–{max(values):.2f}"
        print(f"| {setting} | {client} | {cell(lambda r: r['span'] / r['ideal'])} | {cell(lambda r: r['wall'] / r['ideal'])}"
              f" | {cell(lambda r: r['vs_floor'])} | {cell(lambda r: r['in_flight'])} of {runs[0]['workers']}"
              f" | {cell(lambda r: r['load'])} |")


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--floor-client":
        floor_client(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=300, help="problems per run (default 300)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of the four settings (ranges printed)")
    parser.add_argument("--no-lm-eval", action="store_true", help="leave lm-eval out even when installed")
    parser.add_argument("--no-cpu", action="store_true", help="skip the zero-latency CPU round")
    parser.add_argument("--cpu-only", action="store_true", help="only the zero-latency CPU round")
    parser.add_argument("--cpu-n", default="200,1000", help="the CPU round's two run sizes (default 200,1000)")
    parser.add_argument("--breakdown", action="store_true",
                        help="only the CPU per request of each layer of gcop eval, measured in this process")
    parser.add_argument("--clients", default=None, help="comma-separated subset of floor,gcop,lm-eval")
    args = parser.parse_args()
    clients = ["floor", "gcop"]
    try:
        import lm_eval  # noqa: F401
        if not args.no_lm_eval:
            clients.append("lm-eval")
    except ImportError:
        print("lm-eval is not installed: left out (pip install lm-eval)")
    if args.clients:
        clients = ["floor"] + [c for c in args.clients.split(",") if c != "floor"]
    print(f"{args.n} GSM8K problems per run; clients: {', '.join(clients)}; cpus: {os.cpu_count()}; "
          f"load average at start: {os.getloadavg()[0]:.1f}")
    server = Server()
    if args.breakdown:
        try:
            small, large = (int(x) for x in args.cpu_n.split(","))
            print(f"\n| layer (zero latency, 8 threads, marginal over {small} → {large} requests) | CPU ms per request "
                  f"| added by the layer |\n|---|---|---|")
            previous = 0.0
            for name, cost in breakdown(server, small, large):
                print(f"| {name} | {cost:.2f} | {cost - previous:+.2f} |")
                previous = cost
        finally:
            server.close()
        return
    try:
        rounds = []
        for i in range(0 if args.cpu_only else args.repeat):
            rounds.append(throughput_round(server, clients, args.n))
            for r in rounds[-1]:
                print(f"round {i + 1}: {r['setting']:>26} {r['client']:>8}: span {r['span']:.2f}s "
                      f"(ideal {r['ideal']:.2f}s, x{r['span'] / r['ideal']:.2f}; x{r['vs_floor']:.2f} the floor's), "
                      f"wall {r['wall']:.2f}s, {r['in_flight']:.1f} in flight, load {r['load']:.1f}", flush=True)
        if rounds:
            print_throughput(rounds)
        if not args.no_cpu:
            small, large = (int(x) for x in args.cpu_n.split(","))
            cpu = cpu_round(server, clients, small=small, large=large)
            print(f"\n| client (zero latency, 8 workers) | CPU ms per request, marginal ({small} → {large}) "
                  f"| CPU ms per request, whole process ({large}) |")
            print("|---|---|---|")
            for client, (marginal, whole) in cpu.items():
                print(f"| {client} | {marginal:.2f} | {whole:.2f} |")
            if "gcop" in cpu:
                ours = cpu["gcop"][0] - cpu["floor"][0]
                print(f"\ngcop's own CPU per request (beyond the SDK's {cpu['floor'][0]:.2f} ms): {ours:.2f} ms "
                      f"= {ours / cpu['floor'][0]:.2f}x the SDK's")
    finally:
        server.close()


if __name__ == "__main__":
    main()
