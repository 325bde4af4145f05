"""The service's own documentation page, served at ``/``: one self-contained HTML document.

BentoML's default page loads Google Tag Manager, shows badge images from outside hosts and a
generic text. This page names no outside host at all (styles are inline, there are no scripts,
fonts or images): it says what the service predicts, which model version answers, what each
endpoint does, and the data contract behind every request, with a working example.
"""

from __future__ import annotations

import json
from html import escape

from credit_risk.config import Serve
from credit_risk.schema import column_specs, contract, example_record, feature_columns

STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; margin: 2rem auto; max-width: 60rem;
       padding: 0 1rem; color: #1d2430; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
.version { color: #4a5568; } code, pre { font: 13px/1.4 ui-monospace, monospace; }
pre { background: #f4f6f8; padding: .8rem; border-radius: 6px; overflow-x: auto; }
table { border-collapse: collapse; width: 100%; } th, td { text-align: left;
        padding: .35rem .6rem; border-bottom: 1px solid #e2e8f0; vertical-align: top; }
th { background: #f4f6f8; } .muted { color: #718096; }
"""


def _rule(name: str) -> str:
    spec = column_specs()[name]
    if spec.allowed is not None:
        return "one of " + ", ".join(f"<code>{escape(json.dumps(v))}</code>" for v in spec.allowed)
    low = "" if spec.minimum is None else f"{spec.minimum:g}"
    high = "" if spec.maximum is None else f"{spec.maximum:g}"
    return f"{low} to {high}" if low or high else "any finite number"


def _path(method: str, path: str) -> str:
    return f"<a href='{path}'>{path}</a>" if method == "GET" else f"<code>{path}</code>"


def docs_page(model_version: str, settings: Serve, used: set[str], threshold: float) -> str:
    """The page for a service serving ``model_version`` (using the ``used`` features)."""
    terms = contract()
    target = terms.target
    probability = f"probability_{target.positive_label}"
    above, below = terms.decisions.at_or_above_threshold, terms.decisions.below_threshold
    example = json.dumps({terms.entity: example_record()}, indent=2, ensure_ascii=False)
    endpoints = [
        ("POST", "/score", f'<code>{{"{terms.entity}": {{...}}}}</code>: one score'),
        (
            "POST",
            "/score_batch",
            f'<code>{{"{terms.entity_plural}": [...]}}</code>: 1 to '
            f"{settings.max_batch_size} scores, in order",
        ),
        ("POST", "/explain", "the score, and each feature's contribution to its log-odds"),
        ("GET", "/readyz", "200 once the model is loaded and answered a warm-up request"),
        ("GET", "/livez", "200 while the process is alive"),
        ("GET", "/metrics", "Prometheus metrics: requests, latency, probabilities, decisions"),
        ("GET", "/docs.json", "the OpenAPI description of every request and response"),
    ]
    rows = "".join(
        f"<tr><td><code>{method}</code></td><td>{_path(method, path)}</td><td>{what}</td></tr>"
        for method, path, what in endpoints
    )
    fields = "".join(
        f"<tr><td><code>{escape(name)}</code></td><td>{column_specs()[name].python_type.__name__}"
        f"</td><td>{_rule(name)}</td><td>{escape(column_specs()[name].description)}"
        f"{'' if name in used else ' <span class=muted>(optional: not used to score)</span>'}"
        "</td></tr>"
        for name in feature_columns()
    )
    title = f"{settings.model_name} scoring service"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{escape(title)}</h1>
<p class="version">Model version <code>{escape(model_version)}</code></p>
<p>Each request describes one {escape(terms.entity)}. The answer is
<code>{escape(probability)}</code>, the probability that <code>{escape(target.column)}</code> is
<code>{escape(json.dumps(target.positive))}</code> ({escape(target.positive_label)}), and a
decision: <code>{escape(above)}</code> at or above the threshold {threshold:g},
<code>{escape(below)}</code> below it. Every answer names the model version that produced it, and
every response carries <code>X-Request-ID</code> (yours, if you send one) and
<code>X-Model-Version</code>. A request that breaks the contract below gets a 4xx that names the
field and the problem.</p>
<h2>Endpoints</h2>
<table><tr><th>method</th><th>path</th><th>what it does</th></tr>{rows}</table>
<h2>Example</h2>
<pre>curl -X POST "$SERVICE/score" -H 'Content-Type: application/json' -d '{escape(example)}'</pre>
<h2>The data contract</h2>
<p>Every field is required unless marked optional; no other field is accepted, numbers must be
JSON numbers (finite), and categories must be given exactly as listed.</p>
<table><tr><th>field</th><th>type</th><th>allowed</th><th>meaning</th></tr>{fields}</table>
</body></html>
"""


def spec_info(model_version: str, settings: Serve) -> dict[str, str]:
    """The OpenAPI document's ``info``: this service's title, version and a plain description."""
    terms = contract()
    description = (
        f"Scores {terms.entity} records with model {model_version}: "
        f"probability_{terms.target.positive_label} and a decision. The page at / describes "
        "every endpoint and the data contract behind each request."
    )
    title = f"{settings.model_name} scoring service"
    return {"title": title, "version": model_version, "description": description}
