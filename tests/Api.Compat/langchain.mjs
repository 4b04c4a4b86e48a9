// Drives Loom's /v1 API with LangChain.js's ChatOpenAI and OpenAIEmbeddings (pinned in package.json).
// Environment: LOOM_BASE_URL (…/v1), LOOM_API_KEY, LOOM_MODEL. Run by Loom.Api.Tests.CompatibilityTests.
import assert from 'node:assert/strict';
import { ChatOpenAI, OpenAIEmbeddings } from '@langchain/openai';
import { HumanMessage, SystemMessage, ToolMessage } from '@langchain/core/messages';
import { tool } from '@langchain/core/tools';
import { z } from 'zod';
import { apiKey, baseURL, check, model } from './harness.mjs';

const configuration = { baseURL };
const chat = (options = {}) => new ChatOpenAI({ model, apiKey, configuration, temperature: 0, maxRetries: 0, ...options });
const messages = [new SystemMessage('Be brief.'), new HumanMessage('Define: harbor')];
// maxTokens 256 for calls and objects: the random test model is drawn to whitespace, which the server's JSON
// grammar bounds per gap, so greedy decoding ends the value well within it.
const City = z.object({ city: z.enum(['Oslo', 'Lima', 'Pune']), unit: z.enum(['c', 'f']) });

let invoked;
await check('ChatOpenAI.invoke', async () => {
  const r = await chat({ maxTokens: 16 }).invoke(messages);
  assert.equal(typeof r.content, 'string');
  assert.ok(r.content.length > 0);
  assert.ok(r.usage_metadata.output_tokens > 0, JSON.stringify(r.usage_metadata));
  invoked = r.content;
});

await check('ChatOpenAI.stream reassembles to the same text', async () => {
  let text = '';
  for await (const chunk of await chat({ maxTokens: 16 }).stream(messages)) text += chunk.content;
  assert.equal(text, invoked);
});

await check('ChatOpenAI.batch', async () => {
  const rs = await chat({ maxTokens: 8 }).batch([[new HumanMessage('Define: harbor')], [new HumanMessage('Define: meadow')]]);
  assert.equal(rs.length, 2);
  assert.ok(rs.every((r) => typeof r.content === 'string'));
});

for (const method of ['jsonSchema', 'functionCalling']) {
  await check(`withStructuredOutput (${method}) gives an object of the schema`, async () => {
    const structured = chat({ maxTokens: 256 }).withStructuredOutput(City, { name: 'weather', method, strict: true });
    const r = await structured.invoke([new HumanMessage('Weather in Oslo?')]);
    assert.deepEqual(City.parse(r), r);
  });
}

const getWeather = tool(async ({ city }) => JSON.stringify({ city, temp: 3 }), {
  name: 'get_weather', description: 'Weather in a city', schema: z.object({ city: z.enum(['Oslo', 'Lima']) }),
});
await check('bindTools: a required tool call, its result sent back', async () => {
  const llm = chat({ maxTokens: 256 }).bindTools([getWeather], { tool_choice: 'required', parallel_tool_calls: false });
  const question = new HumanMessage('Weather in Oslo?');
  const r = await llm.invoke([question]);
  assert.equal(r.tool_calls.length, 1, JSON.stringify(r.tool_calls));
  const call = r.tool_calls[0];
  assert.equal(call.name, 'get_weather');
  assert.ok(['Oslo', 'Lima'].includes(call.args.city), JSON.stringify(call.args));
  const result = await getWeather.invoke(call);
  assert.ok(result instanceof ToolMessage);
  const answer = await chat({ maxTokens: 8 }).bindTools([getWeather], { tool_choice: 'none' }).invoke([question, r, result]);
  assert.equal(typeof answer.content, 'string');
  assert.equal(answer.tool_calls.length, 0);
});

await check('bindTools streamed: the chunks add up to the call', async () => {
  const llm = chat({ maxTokens: 256 }).bindTools([getWeather], { tool_choice: 'required', parallel_tool_calls: false });
  let whole;
  let pieces = 0;
  for await (const chunk of await llm.stream([new HumanMessage('Weather in Lima?')])) {
    if (chunk.tool_call_chunks?.length) pieces++;
    whole = whole === undefined ? chunk : whole.concat(chunk);
  }
  assert.ok(pieces > 1, `the call came in ${pieces} chunk(s)`);
  assert.equal(whole.tool_calls.length, 1, JSON.stringify(whole.tool_call_chunks));
  assert.ok(['Oslo', 'Lima'].includes(whole.tool_calls[0].args.city), JSON.stringify(whole.tool_calls));
});

await check('OpenAIEmbeddings.embedDocuments and embedQuery', async () => {
  const embeddings = new OpenAIEmbeddings({ model, apiKey, configuration, maxRetries: 0 });
  const docs = await embeddings.embedDocuments(['a harbor', 'a boat']);
  assert.equal(docs.length, 2);
  assert.ok(Math.abs(Math.hypot(...docs[0]) - 1) < 1e-4);
  const query = await embeddings.embedQuery('a harbor');
  assert.equal(query.length, docs[0].length);
});

console.log('all langchain checks passed');
