using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Loom.Api.Usage;
using Loom.Data;
using Loom.Data.Blobs;
using Loom.Data.Entities;
using Loom.Jobs.Maintenance;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace Loom.Jobs.Tests;

/// <summary>The recurring maintenance jobs on a real database and blob store.</summary>
public sealed class MaintenanceTests : IAsyncLifetime
{
    private readonly JobsDatabase _db = new();
    private readonly string _blobRoot = Path.Combine(Path.GetTempPath(), $"loom-jobs-blobs-{Guid.NewGuid():N}");
    private WebNode? _node;

    private WebNode Node => _node!;

    public async Task InitializeAsync()
    {
        await _db.InitializeAsync();
        _node = new WebNode(_db.ConnectionString, "api", ("Loom:Blobs:Root", _blobRoot), ("Jobs:BlobGracePeriod", "01:00:00"));
        _ = _node.Server;
    }

    public async Task DisposeAsync()
    {
        if (_node is not null) await _node.DisposeAsync();
        await _db.DisposeAsync();
        if (Directory.Exists(_blobRoot)) Directory.Delete(_blobRoot, recursive: true);
    }

    private IBlobStore Blobs => Node.Services.GetRequiredService<IBlobStore>();
    private string PathOf(string sha) => Path.Combine(_blobRoot, sha[..2], sha);
    private void Age(string sha, TimeSpan by) => File.SetLastWriteTimeUtc(PathOf(sha), DateTime.UtcNow - by);
    private Task<BlobRef> PutAsync(string content) => Blobs.PutAsync(new MemoryStream(Encoding.UTF8.GetBytes(content)));

    private Task<BlobCollectionResult> CollectAsync() =>
        Node.InTenantAsync(null, (sp, _) => sp.GetRequiredService<BlobCollectionJob>().RunAsync(CancellationToken.None));

    [Fact]
    public async Task BlobCollectionDeletesOnlyUnreferencedBlobsPastTheGracePeriod()
    {
        var tenant = await Node.CreateTenantAsync("gc");
        var referenced = await PutAsync("a training file someone still has");
        var orphan = await PutAsync("a file that was deleted long ago");
        var young = await PutAsync("an upload whose row is still committing");
        var reuploaded = await PutAsync("deleted, then uploaded again by another tenant");
        await Node.InTenantAsync(tenant.Id, async (_, db) =>
        {
            db.Files.Add(new FileObject { Id = Guid.NewGuid(), TenantId = tenant.Id, FileName = "f.jsonl", Purpose = "fine-tune", Bytes = referenced.Length, BlobSha256 = referenced.Sha256, CreatedAt = DateTimeOffset.UtcNow });
            return await db.SaveChangesAsync();
        });
        Age(referenced.Sha256, TimeSpan.FromDays(3));
        Age(orphan.Sha256, TimeSpan.FromHours(2));
        Age(young.Sha256, TimeSpan.FromMinutes(10));
        Age(reuploaded.Sha256, TimeSpan.FromDays(3));
        await PutAsync("deleted, then uploaded again by another tenant"); // an upload of equal bytes refreshes it

        var result = await CollectAsync();

        Assert.Equal(1, result.Deleted);
        Assert.False(File.Exists(PathOf(orphan.Sha256)));
        Assert.True(File.Exists(PathOf(referenced.Sha256)));
        Assert.True(File.Exists(PathOf(young.Sha256)));
        Assert.True(File.Exists(PathOf(reuploaded.Sha256)));
        Assert.Empty(Directory.EnumerateFiles(_blobRoot, ".collect-*"));

        // Once its row goes (and the grace period has passed) the referenced blob goes too; a second run finds nothing.
        await Node.InTenantAsync(tenant.Id, async (_, db) => await db.Files.ExecuteDeleteAsync());
        Assert.Equal(1, (await CollectAsync()).Deleted);
        Assert.False(File.Exists(PathOf(referenced.Sha256)));
        Assert.Equal(0, (await CollectAsync()).Deleted);
    }

    [Fact]
    public async Task ABlobReferencedWhileBeingCollectedIsPutBack()
    {
        var blob = await PutAsync("committed by another tenant during collection");
        Age(blob.Sha256, TimeSpan.FromDays(1));
        var checks = 0;
        // The first reference check says no; by the second (after the blob was moved aside) a row refers to it.
        var deleted = await Blobs.CollectAsync(blob.Sha256, DateTimeOffset.UtcNow.AddHours(-1), _ => Task.FromResult(++checks > 1));
        Assert.False(deleted);
        Assert.Equal(2, checks);
        Assert.True(File.Exists(PathOf(blob.Sha256)));
        await using var read = Blobs.OpenRead(blob.Sha256);
        Assert.Equal("committed by another tenant during collection", await new StreamReader(read).ReadToEndAsync());
    }

    [Fact]
    public async Task UsageRollupTotalsEqualTheRawRowsAndTheApiReadsThem()
    {
        var a = await Node.CreateTenantAsync("usage-a");
        var b = await Node.CreateTenantAsync("usage-b");
        var today = DateTimeOffset.UtcNow.Date;
        var random = new Random(7);
        foreach (var tenant in new[] { a, b })
            await Node.InTenantAsync(tenant.Id, async (_, db) =>
            {
                for (var i = 0; i < 300; i++)
                    db.UsageRecords.Add(new UsageRecord
                    {
                        TenantId = tenant.Id, Model = random.Next(3) switch { 0 => "loom-demo", 1 => "adapter-x", _ => "adapter-y" },
                        PromptTokens = random.Next(1, 500), CompletionTokens = random.Next(0, 300), LatencyMs = 1,
                        CreatedAt = new DateTimeOffset(today, TimeSpan.Zero).AddDays(-random.Next(0, 5)).AddMinutes(random.Next(0, 1440)).AddMinutes(-1),
                    });
                return await db.SaveChangesAsync();
            });
        // Rows stamped before today that land in "today minus 5 days" onwards; today's rows stay raw.
        const string rawSums = """
            SELECT "TenantId", ("CreatedAt" AT TIME ZONE 'UTC')::date, "Model", count(*), sum("PromptTokens"), sum("CompletionTokens")
            FROM usage_records WHERE "CreatedAt" < date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
            """;
        const string rolled = """SELECT "TenantId", "Day", "Model", "Requests"::bigint, "PromptTokens", "CompletionTokens" FROM usage_daily ORDER BY 1, 2, 3""";
        static string Row(Npgsql.NpgsqlDataReader r) => $"{r.GetGuid(0)} {r.GetFieldValue<DateOnly>(1)} {r.GetString(2)} {r.GetInt64(3)} {r.GetInt64(4)} {r.GetInt64(5)}";

        var job = () => Node.InTenantAsync(null, (sp, _) => sp.GetRequiredService<UsageRollupJob>().RunAsync(CancellationToken.None));
        await job();
        var expected = await _db.QueryAsync(rawSums, Row);
        Assert.NotEmpty(expected);
        Assert.Equal(expected, await _db.QueryAsync(rolled, Row));
        await job(); // idempotent
        Assert.Equal(expected, await _db.QueryAsync(rolled, Row));

        // The API answers closed days from the roll-up: with their raw rows gone, its totals do not change.
        var client = Node.CreateClient();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", await Node.CreateKeyAsync(a.Id));
        var url = $"/v1/usage?start={DateOnly.FromDateTime(today.AddDays(-6)):yyyy-MM-dd}&end={DateOnly.FromDateTime(today.AddDays(1)):yyyy-MM-dd}";
        var before = await client.GetStringAsync(url);
        await _db.ExecuteAsync("""DELETE FROM usage_records WHERE "CreatedAt" < date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'""");
        var after = await client.GetStringAsync(url);
        Assert.Equal(before, after);
        var data = JsonDocument.Parse(after).RootElement.GetProperty("data").EnumerateArray().ToList();
        var aRows = expected.Where(e => e.StartsWith(a.Id.ToString())).ToList();
        Assert.Equal(aRows.Sum(r => long.Parse(r.Split(' ')[4])), data.Where(d => d.GetProperty("date").GetString() != $"{DateOnly.FromDateTime(today):yyyy-MM-dd}").Sum(d => d.GetProperty("prompt_tokens").GetInt64()));
        // Today is still read from the raw rows.
        var todayRaw = (await _db.QueryAsync($"""SELECT coalesce(sum("PromptTokens"), 0) FROM usage_records WHERE "TenantId" = '{a.Id}'""", r => r.GetInt64(0))).Single();
        Assert.True(todayRaw > 0);
        Assert.Equal(todayRaw, data.Where(d => d.GetProperty("date").GetString() == $"{DateOnly.FromDateTime(today):yyyy-MM-dd}").Sum(d => d.GetProperty("prompt_tokens").GetInt64()));
    }

    [Fact]
    public async Task AFailedUsageWriteIsRetriedUntilItLandsOnce()
    {
        var tenant = await Node.CreateTenantAsync("retry");
        var recorder = Node.Services.GetRequiredService<UsageRecorder>();
        var record = new UsageRecord { TenantId = tenant.Id, Model = "loom-demo", PromptTokens = 11, CompletionTokens = 13, LatencyMs = 2, CreatedAt = DateTimeOffset.UtcNow };

        // The table is away (as during a failover or a migration): the write fails and waits for a retry.
        await _db.ExecuteAsync("ALTER TABLE usage_records RENAME TO usage_records_away");
        await recorder.RecordAsync(record);
        Assert.Equal(1, recorder.Pending);
        await Task.Delay(1000);
        Assert.Equal(1, recorder.Pending);
        await _db.ExecuteAsync("ALTER TABLE usage_records_away RENAME TO usage_records");

        Assert.True(await JobsDatabase.UntilAsync(() => Task.FromResult(recorder.Pending == 0), TimeSpan.FromSeconds(60)), "the write was never retried");
        // A second write of the same request (its first attempt had in fact committed) inserts nothing.
        await recorder.RecordAsync(record);
        var rows = await _db.QueryAsync($"""SELECT "PromptTokens" + "CompletionTokens" FROM usage_records WHERE "RequestId" = '{record.RequestId}'""", r => r.GetInt32(0));
        Assert.Equal([24], rows);
    }
}
