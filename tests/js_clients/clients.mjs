// Runs one scenario with a client nobody here wrote, against the agent, and prints JSON lines: a
// `{"link": ...}` line as soon as the stream shows an authorization link, then the result.
// Usage: node clients.mjs '{"client": "openai" | "ai-sdk" | "ag-ui", "server": ..., "apiKey": ..., "scenario": ...,
//                          "prompt": ..., "followUp": ...}'
// Scenarios: "stream" (text, agent events, errors as the client reports them), "tools" (a client-supplied tool),
// "unserved" (the client's other default endpoint: openai's `responses.create`, the AI SDK's `openai(model)`, both
// on /responses), "generate" (one non-stream answer with the client's default retries: openai's maxRetries 2, the
// AI SDK's generateText, maxRetries 2; `idempotencyKey` is sent as the Idempotency-Key header when given).
// The AG-UI client (HttpAgent, POST /ag-ui/agent) also reports the conversation it keeps (`messages`) and, with
// `followUp`, asks that in a second run over the same conversation.
import { HttpAgent } from "@ag-ui/client";
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, jsonSchema, streamText, tool } from "ai";
import OpenAI from "openai";

const input = JSON.parse(process.argv[2]);
const baseURL = `${input.server}/openai/v1`;
const result = { text: "", events: [], error: null, status: null };
const CONSENT = "Please click the link to authorize ";
let linkShown = false;

// As soon as the stream has shown the authorization link, say so on a line of its own (the person opens it).
function watchForLink() {
  const after = result.text.split(CONSENT)[1];
  if (!linkShown && after && after.includes(" \n\n")) {
    linkShown = true;
    console.log(JSON.stringify({ link: after.slice(after.indexOf(": ") + 2).split(/\s/)[0] }));
  }
}

function recordError(error) {
  result.error = error?.message ?? String(error);
  result.status = error?.status ?? error?.statusCode ?? error?.cause?.statusCode ?? error?.lastError?.statusCode ?? null;
}

async function withOpenAI() {
  if (input.scenario === "generate") {
    const client = new OpenAI({ baseURL, apiKey: input.apiKey, timeout: 60000 });
    const headers = input.idempotencyKey ? { "Idempotency-Key": input.idempotencyKey } : {};
    try {
      const answer = await client.chat.completions.create(
        { model: "qwen-plus", messages: [{ role: "user", content: input.prompt }] }, { headers });
      result.text = answer.choices[0].message.content;
      result.finishReason = answer.choices[0].finish_reason;
      result.events = (answer.agent_events ?? []).map((event) => event.type);
    } catch (error) {
      recordError(error);
    }
    return;
  }
  const client = new OpenAI({ baseURL, apiKey: input.apiKey, maxRetries: 0 });
  if (input.scenario === "unserved") {
    try {
      await client.responses.create({ model: "qwen-plus", input: input.prompt });
    } catch (error) {
      recordError(error);
    }
    return;
  }
  const extra = input.scenario === "tools"
    ? { tools: [{ type: "function", function: { name: "lookup", parameters: { type: "object", properties: {} } } }] }
    : {};
  try {
    const stream = await client.chat.completions.create({
      model: "qwen-plus", stream: true, messages: [{ role: "user", content: input.prompt }], ...extra });
    for await (const chunk of stream) {
      if (chunk.agent_event) result.events.push(chunk.agent_event.type);
      result.text += chunk.choices?.[0]?.delta?.content ?? "";
      watchForLink();
    }
  } catch (error) {
    recordError(error);
  }
}

async function withAiSdk() {
  const provider = createOpenAI({ baseURL, apiKey: input.apiKey });
  if (input.scenario === "generate") {
    const headers = input.idempotencyKey ? { "Idempotency-Key": input.idempotencyKey } : undefined;
    try {
      const answer = await generateText({ model: provider.chat("qwen-plus"), prompt: input.prompt, headers });
      result.text = answer.text;
      result.finishReason = answer.finishReason;
    } catch (error) {
      recordError(error);
    }
    return;
  }
  if (input.scenario === "unserved") {
    try {
      await generateText({ model: provider("qwen-plus"), prompt: input.prompt, maxRetries: 0 });
    } catch (error) {
      recordError(error);
    }
    return;
  }
  const tools = input.scenario === "tools"
    ? { lookup: tool({ description: "Look something up.", inputSchema: jsonSchema({ type: "object", properties: {} }) }) }
    : undefined;
  const run = streamText({ model: provider.chat("qwen-plus"), prompt: input.prompt, tools, maxRetries: 0,
                           onError: ({ error }) => recordError(error) });
  for await (const part of run.fullStream) {
    if (part.type === "text-delta") {
      result.text += part.text ?? part.delta ?? "";
      watchForLink();
    }
    if (part.type === "error") recordError(part.error);
    if (part.type === "finish") result.finishReason = part.finishReason;
  }
}

async function withAgUi() {
  const agent = new HttpAgent({ url: `${input.server}/ag-ui/agent`, headers: { Authorization: `Bearer ${input.apiKey}` },
                                threadId: "thread-js" });
  const tools = input.scenario === "tools"
    ? [{ name: "lookup", description: "Look something up.", parameters: { type: "object", properties: {} } }]
    : [];
  const subscriber = {
    onEvent: ({ event }) => { result.events.push(event.type === "CUSTOM" ? `CUSTOM:${event.name}` : event.type); },
    onTextMessageContentEvent: ({ event }) => { result.text += event.delta; },
    onCustomEvent: ({ event }) => {
      if (event.name === "authorization_required") console.log(JSON.stringify({ link: event.value.url }));
    },
    onRunErrorEvent: ({ event }) => { result.error = event.message; result.code = event.code; },
  };
  try {
    for (const prompt of [input.prompt, input.followUp].filter(Boolean)) {
      agent.addMessage({ id: `user-${agent.messages.length}`, role: "user", content: prompt });
      await agent.runAgent({ tools }, subscriber);
    }
  } catch (error) {
    result.error ??= error?.message ?? String(error);
    result.status = error?.status ?? null;
  }
  result.messages = agent.messages;
}

await ({ openai: withOpenAI, "ai-sdk": withAiSdk, "ag-ui": withAgUi })[input.client]();
console.log(JSON.stringify(result));
