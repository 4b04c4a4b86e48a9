using System.Diagnostics;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Loom.Inference.Formats;

namespace Loom.Benchmarks.FineTuning;

/// <summary>
/// Fine-tuning end to end through the HTTP API on models/loom-demo (run by tests/Benchmarks/FineTuning/run-e2e.sh, which
/// starts PostgreSQL and one Loom process with the api, jobs and inference roles and the default fine-tuning settings):
/// upload the training file of the training suite's quality task (TrainingBenchmark.WriteQualityData: "Define: w" →
/// "I can't define w yet.", 200 words), create a job (3 epochs, batch 4, learning rate multiplier 20 = 2e-3, rank 8 on
/// all seven modules), follow it to success, then chat with the fine-tuned model by name on the 100 held-out words and
/// score greedy exact match (the base model too, before). Prints each phase's wall time and, from the checkpoint events,
/// each checkpoint's stall against the step time at the default interval.
/// </summary>
internal static class FineTuningEndToEnd
{
    public static async Task RunAsync()
    {
        var baseUrl = Environment.GetEnvironmentVariable("LOOM_URL") ?? "http://127.0.0.1:5091";
        var key = File.ReadAllText(Environment.GetEnvironmentVariable("LOOM_KEY_FILE") ?? throw new InvalidOperationException("LOOM_KEY_FILE is not set")).Trim();
        var modelDir = Environment.GetEnvironmentVariable("LOOM_MODEL_DIR") ?? throw new InvalidOperationException("LOOM_MODEL_DIR is not set");
        Console.WriteLine($"machine: {Machine.Describe()}");
        Console.WriteLine($"load average at start: {File.ReadAllText("/proc/loadavg").Trim()}");
        using var http = new HttpClient { BaseAddress = new Uri(baseUrl), Timeout = TimeSpan.FromMinutes(5) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);

        var models = await GetAsync(http, "/v1/models");
        string baseModel = models.GetProperty("data").EnumerateArray().Select(m => m.GetProperty("id").GetString()!)
            .FirstOrDefault(id => id == Path.GetFileName(modelDir.TrimEnd('/'))) ?? throw new InvalidOperationException($"no base model in {models}");
        string dir = Directory.CreateTempSubdirectory("loom-ft-e2e-").FullName;
        var (train, heldout) = TrainingBenchmark.WriteQualityData(modelDir, dir);
        var cases = File.ReadLines(heldout).Select(l => JsonDocument.Parse(l).RootElement.GetProperty("messages"))
            .Select(m => (Prompt: m[0].GetProperty("content").GetString()!, Answer: m[1].GetProperty("content").GetString()!)).ToArray();
        Console.WriteLine($"== fine-tuning end to end on {baseModel} through {baseUrl}: {File.ReadLines(train).Count()} training chats, {cases.Length} held out ==");

        var before = await ExactMatchAsync(http, baseModel, cases);
        Console.WriteLine($"held-out exact match of the base model: {before.Rate:P0} ({before.Seconds:F1} s for {cases.Length} chats)");

        var total = Stopwatch.StartNew();
        var form = new MultipartFormDataContent();
        var file = new ByteArrayContent(await File.ReadAllBytesAsync(train));
        file.Headers.ContentType = new MediaTypeHeaderValue("application/jsonl");
        form.Add(file, "file", "train.jsonl");
        form.Add(new StringContent("fine-tune"), "purpose");
        string fileId = (await SendAsync(http, HttpMethod.Post, "/v1/files", form)).GetProperty("id").GetString()!;
        double uploaded = total.Elapsed.TotalSeconds;

        var create = JsonContent.Create(new
        {
            model = baseModel, training_file = fileId, seed = 1, suffix = "bench",
            hyperparameters = new { n_epochs = 3, batch_size = 4, learning_rate_multiplier = 20, rank = 8, alpha = 16, target_modules = Enum.GetValues<LoraTarget>().Select(LoraTargets.Name).ToArray() },
        });
        string jobId = (await SendAsync(http, HttpMethod.Post, "/v1/fine_tuning/jobs", create)).GetProperty("id").GetString()!;
        double created = total.Elapsed.TotalSeconds, running = double.NaN;
        JsonElement job;
        string lastLine = "";
        while (true)
        {
            job = await GetAsync(http, $"/v1/fine_tuning/jobs/{jobId}");
            string status = job.GetProperty("status").GetString()!;
            if (status == "running" && double.IsNaN(running)) running = total.Elapsed.TotalSeconds;
            if (status is "succeeded" or "failed" or "cancelled") break;
            var events = await GetAsync(http, $"/v1/fine_tuning/jobs/{jobId}/events?limit=1");
            string line = $"  {total.Elapsed.TotalSeconds,5:F0} s {status}: {events.GetProperty("data").EnumerateArray().Select(e => e.GetProperty("message").GetString()).FirstOrDefault()}";
            if (job.GetProperty("estimated_finish") is { ValueKind: JsonValueKind.Number } eta)
                line += $" (ETA {DateTimeOffset.FromUnixTimeSeconds(eta.GetInt64()) - DateTimeOffset.UtcNow:mm\\:ss})";
            if (line != lastLine) Console.WriteLine(lastLine = line);
            await Task.Delay(1000);
        }
        double trained = total.Elapsed.TotalSeconds;
        if (job.GetProperty("status").GetString() != "succeeded") throw new InvalidOperationException($"the job ended {job}");
        string fineTuned = job.GetProperty("fine_tuned_model").GetString()!;
        var firstChat = Stopwatch.StartNew();
        var first = await ChatAsync(http, fineTuned, cases[0].Prompt);
        double chatted = total.Elapsed.TotalSeconds;
        Console.WriteLine($"{fineTuned}: first answer in {firstChat.Elapsed.TotalMilliseconds:F0} ms: {cases[0].Prompt} → {first}");

        var all = await GetAsync(http, $"/v1/fine_tuning/jobs/{jobId}/events?limit=100");
        var checkpoints = all.GetProperty("data").EnumerateArray().Where(e => e.GetProperty("kind").GetString() == "checkpoint")
            .Select(e => e.GetProperty("data")).OrderBy(d => d.GetProperty("step").GetInt32()).ToList();
        foreach (var c in checkpoints)
            Console.WriteLine($"  checkpoint at step {c.GetProperty("step").GetInt32()}: stall {c.GetProperty("stall_ms").GetDouble():F2} ms against a step of {c.GetProperty("step_time_ms").GetDouble():F0} ms " +
                              $"({c.GetProperty("stall_ms").GetDouble() / c.GetProperty("step_time_ms").GetDouble():P2}); written, stored and recorded in {c.GetProperty("write_ms").GetDouble():F0} ms " +
                              $"(folder {c.GetProperty("files_ms").GetDouble():F0} ms, blobs {c.GetProperty("blobs_ms").GetDouble():F0} ms); " +
                              $"durable when training was at step {c.GetProperty("training_step").GetInt32()}");
        if (all.GetProperty("data").EnumerateArray().FirstOrDefault(e => e.GetProperty("kind").GetString() == "succeeded") is { ValueKind: JsonValueKind.Object } done
            && checkpoints.Count > 0)
        {
            // every copy and every wait over the run (the last checkpoint's wait included), per checkpoint, against the mean step
            double stall = done.GetProperty("data").GetProperty("checkpoint_stall_ms").GetDouble(), step = checkpoints[^1].GetProperty("step_time_ms").GetDouble();
            Console.WriteLine($"  checkpoint stall over the run: {stall:F1} ms for {checkpoints.Count} checkpoints = {stall / checkpoints.Count:F1} ms per checkpoint, " +
                              $"{stall / checkpoints.Count / step:P2} of a mean step of {step:F0} ms");
        }
        var after = await ExactMatchAsync(http, fineTuned, cases);
        Console.WriteLine();
        Console.WriteLine($"wall time: upload {uploaded:F1} s; create {created - uploaded:F1} s; queued → running {running - created:F1} s; running → succeeded {trained - running:F1} s " +
                          $"({job.GetProperty("trained_tokens").GetInt64()} trained tokens); first chat with {fineTuned} {chatted - trained:F1} s; upload to first answer {chatted:F1} s");
        Console.WriteLine($"held-out exact match: base model {before.Rate:P0}, fine-tuned {after.Rate:P0} ({cases.Length} prompts, greedy, {after.Seconds:F1} s)");
        Console.WriteLine($"load average at the end: {File.ReadAllText("/proc/loadavg").Trim()}");
        Directory.Delete(dir, recursive: true);
    }

    private static async Task<(double Rate, double Seconds)> ExactMatchAsync(HttpClient http, string model, (string Prompt, string Answer)[] cases)
    {
        var sw = Stopwatch.StartNew();
        int hits = 0, shown = 0;
        foreach (var chunk in cases.Chunk(4))
        {
            var answers = await Task.WhenAll(chunk.Select(c => ChatAsync(http, model, c.Prompt)));
            for (int i = 0; i < chunk.Length; i++)
            {
                if (answers[i] == chunk[i].Answer) hits++;
                if (shown++ < 2) Console.WriteLine($"  {model}: {chunk[i].Prompt} → {answers[i]}");
            }
        }
        return ((double)hits / cases.Length, sw.Elapsed.TotalSeconds);
    }

    private static async Task<string> ChatAsync(HttpClient http, string model, string prompt)
    {
        var body = JsonContent.Create(new { model, messages = new[] { new { role = "user", content = prompt } }, temperature = 0, max_tokens = 24 });
        var reply = await SendAsync(http, HttpMethod.Post, "/v1/chat/completions", body);
        return reply.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!.Trim();
    }

    private static Task<JsonElement> GetAsync(HttpClient http, string path) => SendAsync(http, HttpMethod.Get, path, null);

    private static async Task<JsonElement> SendAsync(HttpClient http, HttpMethod method, string path, HttpContent? content)
    {
        using var request = new HttpRequestMessage(method, path) { Content = content };
        using var response = await http.SendAsync(request);
        string text = await response.Content.ReadAsStringAsync();
        if (!response.IsSuccessStatusCode) throw new InvalidOperationException($"{method} {path}: {(int)response.StatusCode} {text}");
        return JsonDocument.Parse(text).RootElement.Clone();
    }
}
