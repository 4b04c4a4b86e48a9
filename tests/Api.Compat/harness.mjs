// Shared by the compatibility scripts: the server's address and keys from the environment, and named checks.
export const baseURL = process.env.LOOM_BASE_URL;
export const apiKey = process.env.LOOM_API_KEY;
export const model = process.env.LOOM_MODEL;

export async function check(name, fn) {
  const started = Date.now();
  await fn();
  console.log(`ok   ${name} (${Date.now() - started} ms)`);
}

