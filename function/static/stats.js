// The numbers under an answer: time to first token and rate while it streams, usage at its end.

export function liveStats(sent, live) {
  // Chunks, not tokens: an event may carry several tokens; the true count comes with `end`.
  const seconds = (performance.now() - live.firstToken) / 1000;
  return {
    "Time to first token": `${Math.round(live.firstToken - sent)} ms`,
    "Chunks/s": seconds > 0 && live.chunks > 1 ? ((live.chunks - 1) / seconds).toFixed(1) : "…",
    Chunks: String(live.chunks),
  };
}

export function endStats(event) {
  const { ttftMs, durationMs } = event.metrics;
  // usage is null when Bedrock never sent its metadata, e.g. when the deadline stopped the stream.
  const { inputTokens, outputTokens } = event.usage ?? {};
  const streaming = (durationMs - (ttftMs ?? durationMs)) / 1000;
  return {
    "Time to first token": ttftMs == null ? "–" : `${ttftMs} ms`,
    // Under a tenth of a second is too short to give a meaningful rate.
    "Tokens/s": streaming >= 0.1 && outputTokens > 1 ? ((outputTokens - 1) / streaming).toFixed(1) : "–",
    "Stop reason": event.stopReason,
    Usage: event.usage ? `${inputTokens ?? "?"} in, ${outputTokens ?? "?"} out` : "not reported",
  };
}

export function showStats(element, stats) {
  element.replaceChildren(
    ...Object.entries(stats).map(([name, value]) => {
      const item = document.createElement("div");
      const term = document.createElement("dt");
      const detail = document.createElement("dd");
      term.textContent = name;
      detail.textContent = value;
      item.append(term, detail);
      return item;
    }),
  );
}
