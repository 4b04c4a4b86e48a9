// Drives Loom's /v1 API with the official openai client and checks what a client relies on.
// Environment: LOOM_BASE_URL (…/v1), LOOM_API_KEY, LOOM_LIMITED_KEY (a key whose tenant allows few
// requests per minute), LOOM_MODEL, and optionally LOOM_ADAPTER_DIR (a PEFT folder to upload).
// Exits non-zero on the first failed check. Run by Loom.Api.Tests.CompatibilityTests.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import OpenAI, { AuthenticationError, BadRequestError, NotFoundError, RateLimitError, toFile } from 'openai';

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
