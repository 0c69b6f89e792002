
/**
 * Polls a voyzu background request (`?async=true`) until it is processed or fails,
 * backing off between polls.
 *
 *   const poller = new RequestPoller(requestId)
 *     .onTick((status) => showProgress(status.PercentComplete, status.Commentary))
 *     .onProcessed((result) => render(result))
 *     .onFail((status) => console.error(status.ErrorMessage));
 *   poller.start();
 */
export class RequestPoller {
  /**
   * @param {string} requestId the RequestId the async call answered with
   * @param {{baseUrl?: string, intervalMs?: number, maxIntervalMs?: number, backoff?: number,
   *          timeoutMs?: number, fetch?: Function, setTimeout?: Function,
   *          onTick?: Function, onProcessed?: Function, onFail?: Function}} [options]
   */
  constructor(requestId, options = {}) {
    this.requestId = requestId;
    this.baseUrl = options.baseUrl ?? "/api";
    this.intervalMs = options.intervalMs ?? 500;
    this.maxIntervalMs = options.maxIntervalMs ?? 5000;
    this.backoff = options.backoff ?? 1.5;
    this.timeoutMs = options.timeoutMs ?? 0;
    this._fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this._setTimeout = options.setTimeout ?? globalThis.setTimeout.bind(globalThis);
    this._tick = options.onTick ?? (() => {});
    this._processed = options.onProcessed ?? (() => {});
    this._fail = options.onFail ?? (() => {});
    this._stopped = false;
  }

  /** @param {(status: RequestStatus) => void} callback */
  onTick(callback) { this._tick = callback; return this; }

  /** @param {(result: Object, status: RequestStatus) => void} callback */
  onProcessed(callback) { this._processed = callback; return this; }

  /** @param {(status: RequestStatus) => void} callback */
  onFail(callback) { this._fail = callback; return this; }

  /** Begin polling; resolves with the final RequestStatus. */
  start() {
    this._stopped = false;
    const started = Date.now();
    let delay = this.intervalMs;
    return new Promise((resolve) => {
      const poll = async () => {
        if (this._stopped) return resolve(null);
        let status;
        try {
          const response = await this._fetch(
            `${this.baseUrl}/request/get/${encodeURIComponent(this.requestId)}`,
            { method: "POST", credentials: "include" },
          );
          const body = await response.json();
          status = response.ok
            ? RequestStatus.fromJSON(body)
            : RequestStatus.fromJSON({
                RequestId: this.requestId, ProcessStatus: "FAILED",
                ErrorMessage: body.ErrorMessage ?? `HTTP ${response.status}`, StatusCode: response.status,
              });
        } catch (error) {
          status = RequestStatus.fromJSON({
            RequestId: this.requestId, ProcessStatus: "FAILED", ErrorMessage: String(error),
          });
        }
        this._tick(status);
        if (status.ProcessStatus === "PROCESSED") {
          this._processed(status.Result, status);
          return resolve(status);
        }
        if (status.ProcessStatus === "FAILED") {
          this._fail(status);
          return resolve(status);
        }
        if (this.timeoutMs && Date.now() - started + delay > this.timeoutMs) {
          const timedOut = RequestStatus.fromJSON({
            ...status.toJSON(), ProcessStatus: "FAILED", ErrorMessage: "Timed out waiting for the request.",
          });
          this._fail(timedOut);
          return resolve(timedOut);
        }
        this._setTimeout(poll, delay);
        delay = Math.min(delay * this.backoff, this.maxIntervalMs);
      };
      poll();
    });
  }

  /** Stop polling; no further callbacks are made. */
  stop() { this._stopped = true; }
}
