using System.Globalization;
using System.Text;
using System.Text.Json;
using Loom.Api.FineTuning;
using Loom.Data;
using Loom.Data.Blobs;
using Loom.Data.Entities;
using Microsoft.EntityFrameworkCore;

namespace Loom.Jobs.FineTuning;

/// <summary>One optimizer step's metrics as the result file records them.</summary>
public sealed record StepMetrics(int Step, double TrainLoss, double? ValidLoss, double LearningRate);

/// <summary>
/// A job's result file: <c>step_metrics.csv</c> (<c>step,train_loss,valid_loss,learning_rate</c>, one row per step, an
/// empty valid_loss where none was measured), a file of the tenant with OpenAI's purpose <c>fine-tune-results</c>,
/// readable through /v1/files. Steps of this run come from its progress; steps before a resume from the job's metrics
/// events (every <c>FineTuning:MetricsEverySteps</c> steps).
/// </summary>
public static class ResultFiles
{
    public const string Purpose = "fine-tune-results";
    public const string FileName = "step_metrics.csv";
    public const string Header = "step,train_loss,valid_loss,learning_rate";

    public static string Csv(IEnumerable<StepMetrics> rows)
    {
        var sb = new StringBuilder(Header).Append('\n');
        foreach (var r in rows.GroupBy(r => r.Step).Select(g => g.Last()).OrderBy(r => r.Step))
            sb.Append(CultureInfo.InvariantCulture, $"{r.Step},{Number(r.TrainLoss)},{(r.ValidLoss is { } v ? Number(v) : "")},{Number(r.LearningRate)}\n");
        return sb.ToString();
    }

    private static string Number(double d) => double.IsFinite(d) ? d.ToString("R", CultureInfo.InvariantCulture) : "";

    /// <summary>The metrics events of the job up to <paramref name="upToStep"/> (steps a run before this one trained).</summary>
    public static async Task<List<StepMetrics>> FromEventsAsync(PlatformDbContext db, Guid jobId, int upToStep, CancellationToken ct)
    {
        string key = FineTuneIds.Job(jobId);
        var payloads = await db.JobEvents.AsNoTracking().Where(e => e.JobId == key && e.Kind == FineTuneEvent.Metrics).OrderBy(e => e.Seq)
            .Select(e => e.Payload).ToListAsync(ct);
        var rows = new List<StepMetrics>();
        foreach (var payload in payloads)
        {
            using var doc = JsonDocument.Parse(payload);
            if (!doc.RootElement.TryGetProperty("data", out var d) || d.ValueKind != JsonValueKind.Object) continue;
            if (!d.TryGetProperty("step", out var s) || !s.TryGetInt32(out var step) || step > upToStep) continue;
            rows.Add(new StepMetrics(step, Double(d, "train_loss") ?? double.NaN, Double(d, "valid_loss"), Double(d, "learning_rate") ?? double.NaN));
        }
        return rows;
    }

    private static double? Double(JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetDouble() : null;

    /// <summary>Stores the CSV as a blob and adds its file row to <paramref name="db"/> (saved by the caller, with the job's
    /// row, in one transaction); null when there is nothing to record.</summary>
    public static async Task<FileObject?> AddAsync(PlatformDbContext db, IBlobStore blobs, Guid tenantId, IReadOnlyCollection<StepMetrics> rows, DateTimeOffset now, CancellationToken ct)
    {
        if (rows.Count == 0) return null;
        var bytes = Encoding.UTF8.GetBytes(Csv(rows));
        var blob = await blobs.PutAsync(new MemoryStream(bytes), ct);
        var file = new FileObject
        {
            Id = Guid.NewGuid(), TenantId = tenantId, FileName = FileName, Purpose = Purpose, Bytes = blob.Length, BlobSha256 = blob.Sha256, CreatedAt = now,
        };
        db.Files.Add(file);
        return file;
    }
}
