// Drives the served RequestPoller with a fake fetch and a recording timer.
const { RequestPoller } = await import(process.argv[2]);

function fakeFetch(replies) {
  const urls = [];
  const fetch = async (url) => {
    urls.push(url);
    const [status, body] = replies.shift();
    return { ok: status === 200, status, json: async () => body };
  };
  return { fetch, urls };
}

function immediateTimer(delays) {
  return (callback, delay) => { delays.push(delay); queueMicrotask(callback); };
}

async function run(replies, events, options = {}) {
  const { fetch, urls } = fakeFetch(replies);
  const delays = [];
  await new RequestPoller("req_1", { fetch, setTimeout: immediateTimer(delays), intervalMs: 100, backoff: 1.5, ...options })
    .onTick((s) => events.push(["tick", s.ProcessStatus, s.PercentComplete || ""].filter(Boolean).join(":")))
    .onProcessed((result) => events.push(`processed:${result.Answer}`))
    .onFail((s) => events.push(`fail:${s.ErrorMessage}:${s.StatusCode}`))
    .start();
  return { events, delays, urls };
}

const processed = await run([
  [200, { RequestId: "req_1", ProcessStatus: "PENDING" }],
  [200, { RequestId: "req_1", ProcessStatus: "PROCESSING", PercentComplete: 50 }],
  [200, { RequestId: "req_1", ProcessStatus: "PROCESSED", PercentComplete: 100, Result: { Answer: 42 } }],
], [], { baseUrl: "/api" });
processed.events = processed.events.map((e) => e.replace(/:100$/, ""));
const failed = await run([[200, { RequestId: "req_1", ProcessStatus: "FAILED", ErrorMessage: "Boom", StatusCode: 400 }]], []);
const httpError = await run([[401, { ErrorMessage: "Invalid or missing credentials." }]], []);
console.log(JSON.stringify({ processed, failed: failed.events, http_error: httpError.events }));
