// The official openai Node SDK against the relay: one streamed completion, and one aborted
// partway through its AbortController. Prints one JSON line of what it saw, for the test to check.
import OpenAI from "openai";

const [baseURL, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "local", maxRetries: 0 });
const seen = {};

const stream = await client.chat.completions.create({
  model,
  messages: [{ role: "user", content: "[standin tokens=12 id=node-whole] hi" }],
  stream: true,
  stream_options: { include_usage: true },
});
let text = "";
for await (const chunk of stream) {
  if (chunk.choices.length) {
    text += chunk.choices[0].delta.content ?? "";
    if (chunk.choices[0].finish_reason) seen.finish = chunk.choices[0].finish_reason;
  } else {
    seen.completionTokens = chunk.usage?.completion_tokens;
  }
}
seen.words = text.trim().split(/\s+/).length;

const controller = new AbortController();
const aborted = await client.chat.completions.create(
  { model, messages: [{ role: "user", content: "[standin tokens=2000 tps=20 ttft=0 id=node-abort] go" }], stream: true },
  { signal: controller.signal },
);
seen.abortedChunks = 0;
try {
  for await (const chunk of aborted) {
    seen.abortedChunks += 1;
    if (seen.abortedChunks === 3) controller.abort();
  }
} catch (error) {
  seen.abortError = error.name;
}
console.log(JSON.stringify(seen));
