"""The HTTP server of a recommender run: GET /recommend?user=…&k=…, POST /recommend with
{"users": [...], "k": …}, GET /health, GET /metadata and a page at /.

The same lists as `scaletrain predict RUN users.csv --k K` (one code path: RecommenderRun).
What a request may cost is bounded before the work: the body's bytes, the users it names
(--max-rows), k (at most 1,000), the length of an id, and the reasons asked for; the lists
are computed in a worker thread, so /health answers meanwhile, and a bad request gets a 4xx
naming what was wrong.
"""
from __future__ import annotations

import asyncio
import html

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse

from scaletrain.recommend.run import MAX_K, RecommenderRun
from scaletrain.serve.http import answer_errors, body_of
from scaletrain.serve.limits import Limits, RequestError, check_text
from scaletrain.version import VERSION

MAX_REASONS = 20
WORK_SLOTS = 2  # requests computing lists at once; the rest wait their turn


def check_request(users: list, k: int, reasons: int, limits: Limits) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise RequestError(422, f"k must be a whole number from 1 to {MAX_K:,}; got {k!r}")
    if not isinstance(reasons, int) or isinstance(reasons, bool) or not 0 <= reasons <= MAX_REASONS:
        raise RequestError(422, f"explain must be a whole number from 0 to {MAX_REASONS}; got {reasons!r}")
    if len(users) > limits.rows:
        raise RequestError(413, f"{len(users):,} users, over the limit of {limits.rows:,} (--max-rows); send them in "
                                "several requests")
    if reasons and len(users) > limits.explain_rows:
        raise RequestError(413, f"reasons for {len(users):,} users, over the limit of {limits.explain_rows:,} "
                                "(--max-explain-rows)")
    for user in users:
        if isinstance(user, bool) or not isinstance(user, (str, int)):
            raise RequestError(422, f"a user id must be a string or an integer; got {str(user)[:40]!r}")
        if isinstance(user, str):
            check_text(user, "user", limits)


def answer(run: RecommenderRun, users: list, k: int, reasons: int) -> dict:
    """Each user's list as JSON: the same items and scores as `predict --k`."""
    model = run.recommender
    indices = model.user_indices(users)
    lists, scores = model.top(indices, k)
    found = []
    for user, index, items, values in zip(users, indices, lists, scores):
        entries = []
        for item, value in zip(items[items >= 0], values[items >= 0]):
            entry = {"item": model.item_ids[item], "score": float(value)}
            if reasons:
                entry["because"] = [{"item": past, "support": support}
                                    for past, support in model.reasons(int(index), int(item), reasons)]
            entries.append(entry)
        found.append({"user": user, "known": bool(index >= 0), "items": entries})
    unknown = int((indices < 0).sum())
    return {"recommendations": found,
            "warnings": [f"{unknown:,} user(s) not in the training data get the most popular items"] if unknown else []}


def create_recommend_app(run: RecommenderRun, limits: Limits = Limits()) -> FastAPI:
    working = asyncio.Semaphore(WORK_SLOTS)
    app = FastAPI(title=f"scaletrain: {run.path.name if run.path else 'recommender'}", version=VERSION)
    answer_errors(app)
    metadata = {"task": "recommend", "model": run.metrics.get("model"), "users": len(run.recommender.user_ids),
                "items": run.recommender.n_items, "metrics": run.metrics.get("test", {}),
                "run": str(run.path.name if run.path else ""), "scaletrain": VERSION, "max_k": MAX_K}
    served = {"requests": 0, "users": 0}

    async def respond(users: list, k: int, reasons: int) -> JSONResponse:
        check_request(users, k, reasons, limits)
        async with working:
            body = await asyncio.to_thread(answer, run, users, k, reasons)
        served["requests"] += 1
        served["users"] += len(users)
        return JSONResponse(body)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return PAGE.replace("{run}", html.escape(metadata["run"] or "recommender"))

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"} | served

    @app.get("/metadata")
    async def meta() -> dict:
        return metadata

    @app.get("/recommend")
    async def recommend_one(user: str, k: int = 10, explain: int = 0) -> JSONResponse:
        """One user's top-k unseen items (an unknown user gets the most popular ones)."""
        return await respond([user], k, explain)

    @app.post("/recommend")
    async def recommend_many(request: Request) -> JSONResponse:
        """{"users": [ids], "k": 10, "explain": 0}: each user's top-k unseen items."""
        body = await body_of(request, limits)
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise RequestError(400, f"the body is not JSON ({exc}); send {{\"users\": [...], \"k\": 10}}") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("users"), list):
            raise RequestError(422, 'send a JSON object {"users": [ids], "k": 10}')
        return await respond(payload["users"], payload.get("k", 10), payload.get("explain", 0))

    return app


PAGE = """<!doctype html><html><head><meta charset='utf-8'><title>{run}</title>
<style>body{font-family:system-ui,sans-serif;max-width:760px;margin:2em auto}td,th{padding:2px 10px;text-align:left}</style>
</head><body><h1>Recommendations: {run}</h1>
<form id='f'>user <input id='u' required> k <input id='k' type='number' value='10' min='1' max='1000'>
<button>recommend</button></form><p id='w'></p><table id='t'></table>
<script>
document.getElementById('f').onsubmit = async (e) => {
  e.preventDefault();
  const q = new URLSearchParams({user: document.getElementById('u').value, k: document.getElementById('k').value, explain: 3});
  const r = await fetch('/recommend?' + q); const j = await r.json(); const t = document.getElementById('t');
  t.replaceChildren();
  if (!r.ok) { document.getElementById('w').textContent = j.error; return; }
  document.getElementById('w').textContent = j.warnings.join(' ');
  j.recommendations[0].items.forEach((it, i) => { const row = t.insertRow();
    [i + 1, it.item, it.score.toFixed(4), it.because.map(b => b.item).join(', ')].forEach(v => row.insertCell().textContent = v); });
};
</script></body></html>"""
