"""Soak the scoring service: the slowest requests, with and without the request-timeout fix.

One closed-loop load of POST /score (8 clients by default) for a fixed time against, in turn,
the service as shipped and the same service with BentoML's own request-timeout middleware
(`stock_timeout.py`), which keeps every finished request alive for the whole timeout so that
Python's full garbage collections stall the workers (see src/credit_risk/serving/timeout.py).
Both run in the same invocation, alternating, on the same model, bodies and load generator, so
their p99 and maximum latencies compare. Beside each run it prints the share of the CPUs that
other processes took meanwhile: the figures are only as good as the machine is quiet.

    python benchmarks/soak.py [--seconds 60] [--clients 8] [--rounds 1]

Prints a table and writes benchmarks/results/soak.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from _load import Load, load_generator
from credit_risk.config import load_params
from credit_risk.files import write_json
from credit_risk.monitoring.predictions import LOG_VARIABLE
from credit_risk.serving.api_models import probability_field
from credit_risk.serving.scorer import ModelFiles, Scorer
from service import (
    ROOT,
    SERVICE,
    applicants,
    check_score,
    cpu_clock,
    free_port,
    import_model,
    note,
    request_bodies,
    serve,
    table,
    wait_ready,
)

RESULTS = ROOT / "benchmarks" / "results" / "soak.json"
VARIANTS = {
    "as shipped": SERVICE,
    "BentoML's timeout": "stock_timeout:CreditRiskService",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60, help="per run")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=1, help="runs of each variant")
    parser.add_argument("--client", choices=["auto", "wrk", "python"], default="auto")
    args = parser.parse_args()
    os.chdir(ROOT)
    params = load_params()
    paths = params.paths
    scorer = Scorer.load(ModelFiles(paths.model, paths.model_info, paths.background))
    rows = applicants(paths.test)
    first = scorer.frame(rows[:1])
    expected = float(scorer.probabilities(first)[0])
    bodies = request_bodies(rows, scorer.features).score
    results: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="credit-risk-soak-") as tmp:
        workdir = Path(tmp)
        here = Path(__file__).resolve().parent
        env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(here), os.environ.get("PYTHONPATH")])),
            "BENTOML_HOME": str(workdir / "bentoml"),
            "BENTOML_DO_NOT_TRACK": "true",
            LOG_VARIABLE: str(workdir / "predictions"),
        }
        env["CREDIT_RISK_MODEL_TAG"] = import_model(env)
        generator = load_generator(args.client, workdir)
        note(f"model {env['CREDIT_RISK_MODEL_TAG']}, load from {generator.name}")
        for round_ in range(args.rounds):
            for label, target in VARIANTS.items():
                port, (busy, own), started = free_port(), cpu_clock(), time.monotonic()
                url, log = f"http://127.0.0.1:{port}", workdir / f"serve-{round_}.log"
                command = ["bentoml", "serve", target, "--host", "127.0.0.1", "--port", str(port)]
                with serve(command, env, log) as server:
                    wait_ready(server, f"{url}/readyz", params.serve.workers)
                    check_score(f"{url}/score", bodies[0], probability_field(), expected)
                    generator.run(f"{url}/score", bodies, args.clients, 2000, 30)  # warm-up
                    note(f"{label}: soaking for {args.seconds} s")
                    load: Load = generator.run(
                        f"{url}/score", bodies, args.clients, 10**9, args.seconds
                    )
                # The server is stopped and waited for: its CPU counts among this process's.
                busy_after, own_after = cpu_clock()
                cpus = os.cpu_count() or 1
                other = (busy_after - busy - own_after + own) / (
                    (time.monotonic() - started) * cpus
                )
                results.append(
                    {"variant": label, "round": round_ + 1, **vars(load)}
                    | {"other_processes_cpu_share": round(max(other, 0.0), 3)}
                )
    table(
        f"POST /score, {args.clients} clients, {args.seconds} s per run (closed loop)",
        ["variant", "round", "requests", "req/s", "errors", "p50 ms", "p99 ms", "max ms",
         "others' CPU"],
        [
            [r["variant"], r["round"], r["requests"], r["per_second"], r["errors"], r["p50_ms"],
             r["p99_ms"], r["max_ms"], f"{r['other_processes_cpu_share']:.0%}"]
            for r in results
        ],
    )  # fmt: skip
    write_json(RESULTS, {"settings": vars(args), "runs": results})
    print(f"\nfigures written to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        raise SystemExit(130) from None
