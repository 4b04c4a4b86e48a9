using System.Globalization;
using Microsoft.EntityFrameworkCore;
using Xunit.Abstractions;
using static Loom.Jobs.Tests.FineTuneCluster;

namespace Loom.Jobs.Tests;

/// <summary>A node serving two base models (Inference:ModelDirectory and one of Inference:Models) trains fine-tunes of
/// either: its fine-tune server listens to both models' queues and the run uses the engine of the job's model.</summary>
public sealed class SecondModelFineTuneTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const string Twin = "twin-chat";
    private readonly FineTuneCluster _cluster = new();

    public Task InitializeAsync() => _cluster.InitializeAsync();
    public Task DisposeAsync() => _cluster.DisposeAsync();

    [Fact]
    public async Task AFineTuneOfANodesSecondBaseModelTrainsOnThatNode()
    {
        var settings = _cluster.Settings("engine", servesModel: true).Select(kv => (kv.Key, kv.Value)).Concat(
        [
            ("Inference:Models:0:Name", Twin), ("Inference:Models:0:Directory", _cluster.ModelDir),
            ("Inference:Models:0:PoolBytes", (32 << 20).ToString(CultureInfo.InvariantCulture)),
        ]).ToArray();
        await using var node = new WebNode(_cluster.Db.ConnectionString, "api,inference", settings);
        var client = await TenantClientAsync(node);
        var id = await CreateJobAsync(client, await UploadAsync(client, Examples(3)), seed: 5, epochs: 1, model: Twin);

        var row = await _cluster.FinishedAsync(id, TimeSpan.FromSeconds(120));
        output.WriteLine($"job on {Twin}: {row.Status} after {row.Step} steps");
        Assert.True(row.Status == "succeeded", $"{row.Status} {row.ErrorCode} {row.ErrorMessage}");
        var baseModel = await _cluster.WithDbAsync(db => db.Adapters.IgnoreQueryFilters().Where(a => a.Id == row.ResultAdapterId)
            .Join(db.BaseModels, a => a.BaseModelId, m => m.Id, (_, m) => m.Name).SingleAsync());
        Assert.Equal(Twin, baseModel);
    }
}
