// Drives Loom's /v1 API with the official openai client and checks what a client relies on.
// Environment: LOOM_BASE_URL (…/v1), LOOM_API_KEY, LOOM_LIMITED_KEY (a key whose tenant allows few
// requests per minute), LOOM_MODEL, and optionally LOOM_ADAPTER_DIR (a PEFT folder to upload). The server must
// train fine-tunes of LOOM_MODEL (a node serving it with a fine-tune server) and checkpoint within a few steps.
// Exits non-zero on the first failed check. Run by Loom.Api.Tests.CompatibilityTests.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import OpenAI, { AuthenticationError, BadRequestError, ConflictError, NotFoundError, RateLimitError, toFile } from 'openai';
import { zodResponseFormat, zodTextFormat } from 'openai/helpers/zod';
import { z } from 'zod';

const baseURL = process.env.LOOM_BASE_URL;
const apiKey = process.env.LOOM_API_KEY;
const model = process.env.LOOM_MODEL;
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 60_000 });
const messages = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Define: harbor' }];

async function check(name, fn) {
  const started = Date.now();
  await fn();
  console.log(`ok   ${name} (${Date.now() - started} ms)`);
}

async function expectError(type, promise) {
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof type, `expected ${type.name}, got ${e?.constructor?.name}: ${e?.message}`);
    assert.equal(typeof e.error?.message, 'string', 'the error body is OpenAI\'s envelope');
    return e;
  }
  assert.fail(`expected ${type.name}, but the call succeeded`);
}

await check('models.list includes the base model', async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.ok(ids.includes(model), `models: ${ids}`);
  const one = await client.models.retrieve(model);
  assert.equal(one.object, 'model');
});

let plainText;
await check('chat.completions.create', async () => {
  const r = await client.chat.completions.create({ model, messages, max_tokens: 16, temperature: 0, seed: 11 });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason));
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
  plainText = r.choices[0].message.content;
});

await check('streamed chat reassembles to the same text', async () => {
  const stream = await client.chat.completions.create({ model, messages, max_tokens: 16, temperature: 0, seed: 11, stream: true, stream_options: { include_usage: true } });
  let text = '';
  let usage = null;
  let finish = null;
  for await (const chunk of stream) {
    assert.equal(chunk.object, 'chat.completion.chunk');
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      text += c.delta?.content ?? '';
      finish = c.finish_reason ?? finish;
    }
  }
  assert.equal(text, plainText);
  assert.ok(finish);
  assert.ok(usage && usage.completion_tokens > 0);
});

await check('completions.create (legacy)', async () => {
  const r = await client.completions.create({ model, prompt: 'harbor (noun):', max_tokens: 8, temperature: 0 });
  assert.equal(r.object, 'text_completion');
  assert.equal(typeof r.choices[0].text, 'string');
});

await check('files.create uploads fine-tuning data', async () => {
  const jsonl = JSON.stringify({ messages: [{ role: 'user', content: 'Define: cat' }, { role: 'assistant', content: 'A small feline.' }] }) + '\n';
  const f = await client.files.create({ file: await toFile(Buffer.from(jsonl), 'train.jsonl'), purpose: 'fine-tune' });
  assert.equal(f.object, 'file');
  assert.equal(f.bytes, Buffer.byteLength(jsonl));
  const again = await client.files.retrieve(f.id);
  assert.equal(again.id, f.id);
  const content = await (await client.files.content(f.id)).text();
  assert.equal(content, jsonl);
});

if (process.env.LOOM_ADAPTER_DIR) {
  await check('upload an adapter over raw HTTP, then chat with it by name', async () => {
    const dir = process.env.LOOM_ADAPTER_DIR;
    const name = `compat-adapter-${Date.now()}`;
    const form = new FormData();
    form.append('name', name);
    form.append('base_model', model);
    form.append('adapter_config.json', new Blob([await readFile(`${dir}/adapter_config.json`)]), 'adapter_config.json');
    form.append('adapter_model.safetensors', new Blob([await readFile(`${dir}/adapter_model.safetensors`)]), 'adapter_model.safetensors');
    const res = await fetch(`${baseURL}/adapters`, { method: 'POST', headers: { Authorization: `Bearer ${apiKey}` }, body: form });
    assert.equal(res.status, 201, await res.text());
    const r = await client.chat.completions.create({ model: name, messages, max_tokens: 8, temperature: 0 });
    assert.equal(r.model, name);
    assert.ok(r.usage.completion_tokens > 0);
  });
}

// Fine-tuning on the small test model: tiny hyperparameters, so the job trains within seconds.
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function waitFor(id, done, ms = 90_000) {
  const until = Date.now() + ms;
  for (;;) {
    const job = await client.fineTuning.jobs.retrieve(id);
    if (done(job) || Date.now() > until) return job;
    await sleep(200);
  }
}
const final = (job) => ['succeeded', 'failed', 'cancelled'].includes(job.status);
let trainingFile;
let fineTune;
await check('fineTuning.jobs.create from an uploaded JSONL', async () => {
  const lines = ['harbor', 'meadow', 'lantern', 'pebble'].map((w) => JSON.stringify({
    messages: [{ role: 'user', content: `Define: ${w}` }, { role: 'assistant', content: `A ${w}.` }],
  }));
  trainingFile = await client.files.create({ file: await toFile(Buffer.from(lines.join('\n') + '\n'), 'train.jsonl'), purpose: 'fine-tune' });
  // rank is Loom's LoRA extension, sent beside OpenAI's fields.
  fineTune = await client.fineTuning.jobs.create({
    model, training_file: trainingFile.id, suffix: 'compat', seed: 7,
    hyperparameters: { n_epochs: 2, batch_size: 1, learning_rate_multiplier: 10 }, rank: 2,
  });
  assert.equal(fineTune.object, 'fine_tuning.job');
  assert.ok(fineTune.id.startsWith('ftjob-'));
  assert.equal(fineTune.model, model);
  assert.equal(fineTune.training_file, trainingFile.id);
  assert.equal(fineTune.hyperparameters.n_epochs, 2);
  assert.ok(['validating_files', 'queued', 'running'].includes(fineTune.status), fineTune.status);
});

await check('fineTuning.jobs.list and retrieve', async () => {
  const ids = [];
  for await (const j of client.fineTuning.jobs.list({ limit: 1 })) ids.push(j.id); // pages through `after`
  assert.ok(ids.includes(fineTune.id), `jobs: ${ids}`);
  const again = await client.fineTuning.jobs.retrieve(fineTune.id);
  assert.equal(again.id, fineTune.id);
  assert.equal(again.seed, 7);
});

await check('the job succeeds; listEvents and checkpoints.list', async () => {
  const job = await waitFor(fineTune.id, final);
  assert.equal(job.status, 'succeeded', JSON.stringify(job.error));
  assert.ok(job.fine_tuned_model.startsWith(`ft:${model}:`), job.fine_tuned_model);
  assert.ok(job.trained_tokens > 0);
  assert.equal(job.result_files.length, 1);
  const csv = await (await client.files.content(job.result_files[0])).text();
  assert.ok(csv.startsWith('step,train_loss,valid_loss,learning_rate\n'), csv);
  const events = [];
  for await (const e of client.fineTuning.jobs.listEvents(fineTune.id, { limit: 5 })) events.push(e);
  assert.ok(events.every((e) => e.object === 'fine_tuning.job.event'));
  assert.ok(events.some((e) => e.type === 'metrics' && typeof e.data.train_loss === 'number'), 'a metrics event');
  assert.ok(events.some((e) => /successfully completed/.test(e.message)), 'the success event');
  const checkpoints = [];
  for await (const c of client.fineTuning.jobs.checkpoints.list(fineTune.id)) checkpoints.push(c);
  assert.ok(checkpoints.length > 0, 'checkpoints');
  for (const c of checkpoints) {
    assert.equal(c.object, 'fine_tuning.job.checkpoint');
    assert.equal(c.fine_tuning_job_id, fineTune.id);
    assert.equal(c.fine_tuned_model_checkpoint, `${job.fine_tuned_model}:ckpt-step-${c.step_number}`);
  }
  fineTune = job;
});

await check('chat with fine_tuned_model (and a checkpoint)', async () => {
  const r = await client.chat.completions.create({ model: fineTune.fine_tuned_model, messages, max_tokens: 8, temperature: 0 });
  assert.equal(r.model, fineTune.fine_tuned_model);
  assert.ok(r.usage.completion_tokens > 0);
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.ok(ids.includes(fineTune.fine_tuned_model), `models: ${ids}`);
  const checkpoint = ids.find((id) => id.startsWith(`${fineTune.fine_tuned_model}:ckpt-step-`));
  assert.ok(checkpoint, 'a checkpoint model');
  const c = await client.chat.completions.create({ model: checkpoint, messages, max_tokens: 4, temperature: 0 });
  assert.equal(c.model, checkpoint);
});

await check('fineTuning.jobs.cancel a second job', async () => {
  const second = await client.fineTuning.jobs.create({ model, training_file: trainingFile.id, hyperparameters: { n_epochs: 50 }, rank: 2 });
  const cancelled = await client.fineTuning.jobs.cancel(second.id);
  assert.equal(cancelled.id, second.id);
  const job = await waitFor(second.id, final, 30_000);
  assert.equal(job.status, 'cancelled');
  assert.equal(job.fine_tuned_model, null);
  await expectError(ConflictError, client.fineTuning.jobs.cancel(second.id)); // already cancelled
});

// The Responses API.
let firstResponse;
await check('responses.create, retrieve, inputItems.list', async () => {
  const r = await client.responses.create({ model, input: 'Define: harbor', instructions: 'Be brief.', max_output_tokens: 16, temperature: 0 });
  assert.equal(r.object, 'response');
  assert.ok(['completed', 'incomplete'].includes(r.status));
  assert.equal(typeof r.output_text, 'string');
  assert.ok(r.output_text.length > 0);
  assert.equal(r.usage.total_tokens, r.usage.input_tokens + r.usage.output_tokens);
  const again = await client.responses.retrieve(r.id);
  assert.equal(again.id, r.id);
  assert.equal(again.output_text, r.output_text);
  const items = [];
  for await (const item of client.responses.inputItems.list(r.id)) items.push(item);
  assert.equal(items.length, 1);
  assert.equal(items[0].role, 'user');
  firstResponse = r;
});

await check('responses.create with stream: semantic events reassemble the text', async () => {
  const stream = await client.responses.create({ model, input: 'Define: harbor', instructions: 'Be brief.', max_output_tokens: 16, temperature: 0, stream: true });
  let text = '';
  const types = [];
  let final;
  for await (const event of stream) {
    types.push(event.type);
    if (event.type === 'response.output_text.delta') text += event.delta;
    if (event.type === 'response.completed' || event.type === 'response.incomplete') final = event.response;
  }
  assert.equal(types[0], 'response.created');
  assert.ok(types.includes('response.output_text.done'), types.join(','));
  assert.equal(text, firstResponse.output_text);
  assert.equal(final.output_text ?? final.output[0].content[0].text, text);

  const helper = client.responses.stream({ model, input: 'Define: harbor', instructions: 'Be brief.', max_output_tokens: 16, temperature: 0 });
  let helperText = '';
  helper.on('response.output_text.delta', (e) => { helperText += e.delta; });
  const done = await helper.finalResponse();
  assert.equal(helperText, firstResponse.output_text);
  assert.equal(done.output_text, firstResponse.output_text);
});

await check('responses.create with previous_response_id carries the conversation', async () => {
  const next = await client.responses.create({ model, input: 'And a boat?', previous_response_id: firstResponse.id, max_output_tokens: 8, temperature: 0 });
  assert.equal(next.previous_response_id, firstResponse.id);
  const alone = await client.responses.create({ model, input: 'And a boat?', max_output_tokens: 8, temperature: 0, store: false });
  assert.ok(next.usage.input_tokens > alone.usage.input_tokens + firstResponse.usage.output_tokens, `${next.usage.input_tokens} vs ${alone.usage.input_tokens}`);
  await expectError(NotFoundError, client.responses.retrieve(alone.id));
  await client.responses.delete(next.id);
  await expectError(NotFoundError, client.responses.retrieve(next.id));
});

const City = z.object({ city: z.enum(['Oslo', 'Lima', 'Pune']), unit: z.enum(['c', 'f']) });
await check('responses.parse with a zod text format', async () => {
  const r = await client.responses.parse({ model, input: 'Weather in Oslo?', max_output_tokens: 80, temperature: 0, text: { format: zodTextFormat(City, 'weather') } });
  assert.equal(r.status, 'completed', JSON.stringify(r.output));
  assert.ok(['Oslo', 'Lima', 'Pune'].includes(r.output_parsed.city), JSON.stringify(r.output_parsed));
});

await check('chat.completions.parse with a zod response format', async () => {
  const r = await client.chat.completions.parse({ model, messages, max_tokens: 80, temperature: 0, response_format: zodResponseFormat(City, 'weather') });
  assert.equal(r.choices[0].finish_reason, 'stop', JSON.stringify(r.choices[0]));
  assert.ok(['c', 'f'].includes(r.choices[0].message.parsed.unit), JSON.stringify(r.choices[0].message));
});

const weatherTool = {
  type: 'function', name: 'get_weather', description: 'Weather in a city', strict: true,
  parameters: { type: 'object', properties: { city: { type: 'string', enum: ['Oslo', 'Lima'] } }, required: ['city'], additionalProperties: false },
};
await check('responses.create with a function tool, then its output sent back', async () => {
  const r = await client.responses.create({ model, input: 'Weather in Oslo?', tools: [weatherTool], tool_choice: 'required', parallel_tool_calls: false, max_output_tokens: 80, temperature: 0 });
  const call = r.output.find((o) => o.type === 'function_call');
  assert.ok(call, JSON.stringify(r.output));
  assert.equal(call.name, 'get_weather');
  assert.ok(['Oslo', 'Lima'].includes(JSON.parse(call.arguments).city));
  const answer = await client.responses.create({
    model, previous_response_id: r.id, tools: [weatherTool], tool_choice: 'none', max_output_tokens: 8, temperature: 0,
    input: [{ type: 'function_call_output', call_id: call.call_id, output: '{"temp": 3}' }],
  });
  assert.equal(answer.output[0].type, 'message');

  const stream = await client.responses.create({ model, input: 'Weather in Lima?', tools: [weatherTool], tool_choice: 'required', parallel_tool_calls: false, max_output_tokens: 80, temperature: 0, stream: true });
  let args = '';
  let doneArgs;
  for await (const event of stream) {
    if (event.type === 'response.function_call_arguments.delta') args += event.delta;
    if (event.type === 'response.function_call_arguments.done') doneArgs = event.arguments;
  }
  assert.equal(args, doneArgs);
  assert.ok(['Oslo', 'Lima'].includes(JSON.parse(args).city));
});

await check('chat tool-call round trip', async () => {
  const tools = [{ type: 'function', function: { name: weatherTool.name, description: weatherTool.description, parameters: weatherTool.parameters } }];
  const r = await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'Weather in Oslo?' }], tools, tool_choice: 'required', parallel_tool_calls: false, max_tokens: 80, temperature: 0 });
  const call = r.choices[0].message.tool_calls?.[0];
  assert.ok(call, JSON.stringify(r.choices[0]));
  const answer = await client.chat.completions.create({
    model, tools, tool_choice: 'none', max_tokens: 8, temperature: 0,
    messages: [{ role: 'user', content: 'Weather in Oslo?' }, r.choices[0].message, { role: 'tool', tool_call_id: call.id, content: '{"temp": 3}' }],
  });
  assert.equal(typeof answer.choices[0].message.content, 'string');
});

await check('streamed tool calls: the stream helpers assemble arguments sent in fragments', async () => {
  const tools = [{ type: 'function', function: { name: weatherTool.name, description: weatherTool.description, parameters: weatherTool.parameters, strict: true } }];
  const stream = client.chat.completions.stream({ model, messages: [{ role: 'user', content: 'Weather in Oslo?' }], tools, tool_choice: 'required', parallel_tool_calls: false, max_tokens: 80, temperature: 0 });
  const fragments = [];
  let done;
  stream.on('tool_calls.function.arguments.delta', (e) => fragments.push(e.arguments_delta));
  stream.on('tool_calls.function.arguments.done', (e) => { done = e; });
  const final = await stream.finalChatCompletion();
  const call = final.choices[0].message.tool_calls[0];
  assert.equal(final.choices[0].finish_reason, 'tool_calls');
  assert.equal(call.function.name, 'get_weather');
  assert.ok(fragments.length > 1, `the arguments came in ${fragments.length} fragment(s)`);
  assert.equal(fragments.join(''), call.function.arguments);
  assert.equal(done.name, 'get_weather');
  assert.ok(['Oslo', 'Lima'].includes(done.parsed_arguments.city), JSON.stringify(done)); // strict: the helper parses them
  const plain = await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'Weather in Oslo?' }], tools, tool_choice: 'required', parallel_tool_calls: false, max_tokens: 80, temperature: 0 });
  assert.equal(call.function.arguments, plain.choices[0].message.tool_calls[0].function.arguments);

  const helper = client.responses.stream({ model, input: 'Weather in Lima?', tools: [weatherTool], tool_choice: 'required', parallel_tool_calls: false, max_output_tokens: 80, temperature: 0 });
  const deltas = [];
  helper.on('response.function_call_arguments.delta', (e) => deltas.push(e.delta));
  const response = await helper.finalResponse();
  const item = response.output.find((o) => o.type === 'function_call');
  assert.ok(deltas.length > 1, `the arguments came in ${deltas.length} delta(s)`);
  assert.equal(deltas.join(''), item.arguments);
  assert.ok(['Oslo', 'Lima'].includes(JSON.parse(item.arguments).city));
});

await check('a bad Responses request raises BadRequestError naming the param', async () => {
  const e = await expectError(BadRequestError, client.responses.create({ model, input: 'x', tools: [{ type: 'web_search' }] }));
  assert.equal(e.param ?? e.error?.param, 'tools[0].type');
  await expectError(NotFoundError, client.responses.create({ model, input: 'x', previous_response_id: 'resp_000000000000000000000000' }));
});

await check('embeddings.create (float and base64)', async () => {
  const r = await client.embeddings.create({ model, input: ['a harbor', 'a boat'] });
  assert.equal(r.object, 'list');
  assert.equal(r.data.length, 2);
  const v = r.data[0].embedding;
  assert.ok(Array.isArray(v) && v.length > 0);
  assert.ok(Math.abs(Math.hypot(...v) - 1) < 1e-4);
  assert.equal(r.usage.prompt_tokens, r.usage.total_tokens);
  // The client asks for base64 by default when encoding_format is not given and decodes it to numbers.
  // The same request asking for base64 explicitly: the raw little-endian float32 bytes of the same vector. (The
  // same text alone is another batch, whose kernels may round differently in the last bits.)
  const b = await client.embeddings.create({ model, input: ['a harbor', 'a boat'], encoding_format: 'base64' });
  assert.equal(typeof b.data[0].embedding, 'string');
  const bytes = Buffer.from(b.data[0].embedding, 'base64');
  const floats = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
  assert.equal(floats.length, v.length);
  assert.ok(floats.every((f, i) => f === Math.fround(v[i])), 'base64 and decoded floats differ');
  await expectError(BadRequestError, client.embeddings.create({ model, input: 'x', dimensions: 3 }));
});

await check('a bad key raises AuthenticationError', async () => {
  const bad = new OpenAI({ baseURL, apiKey: 'sk-loom-' + 'A'.repeat(43), maxRetries: 0 });
  const e = await expectError(AuthenticationError, bad.models.list());
  assert.equal(e.status, 401);
});

await check('an unknown model raises NotFoundError', async () => {
  const e = await expectError(NotFoundError, client.chat.completions.create({ model: 'no-such-model', messages }));
  assert.equal(e.code, 'model_not_found');
});

await check('a bad parameter raises BadRequestError naming it', async () => {
  const e = await expectError(BadRequestError, client.chat.completions.create({ model, messages, temperature: 5 }));
  assert.equal(e.param, 'temperature');
});

await check('going over the request limit raises RateLimitError', async () => {
  const limited = new OpenAI({ baseURL, apiKey: process.env.LOOM_LIMITED_KEY, maxRetries: 0 });
  let error;
  for (let i = 0; i < 10 && !error; i++) {
    try { await limited.models.retrieve(model); } catch (e) { error = e; }
  }
  assert.ok(error instanceof RateLimitError, `expected RateLimitError, got ${error?.constructor?.name}`);
  assert.ok(Number(error.headers.get('retry-after')) > 0);
});

console.log('all compatibility checks passed');
