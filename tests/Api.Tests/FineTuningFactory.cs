using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Loom.Jobs.FineTuning;
using Microsoft.Extensions.DependencyInjection;

namespace Loom.Api.Tests;

/// <summary>Loom with the api and inference roles on the tiny chat model, small fine-tuning intervals, its own blob
/// and checkpoint folders. No Hangfire server takes fine-tunes (Jobs:FineTuneWorkerCount 0): tests start a job's run
/// themselves (<see cref="RunJobAsync"/>).</summary>
public class FineTuningFactory : ChatModelFactory
{
    public string BlobRoot { get; } = Path.Combine(Path.GetTempPath(), $"loom-ft-blobs-{Guid.NewGuid():N}");
    public string CheckpointRoot { get; } = Path.Combine(Path.GetTempPath(), $"loom-ft-ckpt-{Guid.NewGuid():N}");
    protected virtual string Roles => "api,inference";
    protected virtual string FineTuneWorkers => "0";

    protected override IEnumerable<KeyValuePair<string, string?>> Settings => base.Settings.Concat(
    [
        new("Loom:Roles", Roles),
        new("Jobs:FineTuneWorkerCount", FineTuneWorkers),
        new("Loom:Blobs:Root", BlobRoot),
        new("FineTuning:CheckpointDirectory", CheckpointRoot),
        new("FineTuning:CheckpointEverySteps", "4"),
        new("FineTuning:MetricsEverySteps", "2"),
        new("FineTuning:KeepLastCheckpoints", "2"),
        new("FineTuning:MaxRunningJobsPerTenant", "1"),
        new("FineTuning:MaxQueuedJobsPerTenant", "2"),
        new("FineTuning:LeaseDuration", "00:00:04"),
        new("FineTuning:ControlPollInterval", "00:00:00.100"),
    ]);

    /// <summary>Runs the background job of a fine-tuning job here, as a Hangfire worker would.</summary>
    public async Task RunJobAsync(string jobId, CancellationToken ct = default)
    {
        await using var scope = Services.CreateAsyncScope();
        Assert.True(Loom.Api.FineTuning.FineTuneIds.TryParseJob(jobId, out var id));
        await scope.ServiceProvider.GetRequiredService<FineTuneJobRunner>().RunAsync(id, ct);
    }

    public async Task<HttpClient> TenantClientAsync(string? name = null)
    {
        var tenant = await CreateTenantAsync(name ?? $"ft-{Guid.NewGuid():N}"[..12]);
        return ClientWithKey((await CreateKeyAsync(tenant.Id)).Secret);
    }

    /// <summary>Prompt/completion lines teaching a fixed answer per word.</summary>
    public static string Examples(int count, string tag = "") => Loom.Tests.Shared.FineTuneFiles.Examples(count, tag);

    public static Task<string> UploadAsync(HttpClient client, string content) => Loom.Tests.Shared.FineTuneFiles.UploadAsync(client, content);

    public static async Task<JsonElement> CreateAsync(HttpClient client, object body)
    {
        var response = await client.PostAsJsonAsync("/v1/fine_tuning/jobs", body);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, text);
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    public static async Task<JsonElement> GetAsync(HttpClient client, string path) =>
        JsonDocument.Parse(await client.GetStringAsync(path)).RootElement.Clone();
}

/// <summary>The same with the jobs role and a fine-tune server: Hangfire runs fine-tuning jobs in this process.</summary>
public sealed class FineTuningWithJobsFactory : FineTuningFactory
{
    protected override string Roles => "api,inference,jobs";
    protected override string FineTuneWorkers => "1";
}
