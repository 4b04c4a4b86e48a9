using System.Text;
using Loom.Data.Entities;

namespace Loom.Api.FineTuning;

/// <summary>Public ids and model names of fine-tuning jobs and their checkpoints.</summary>
public static class FineTuneIds
{
    public static string Job(Guid id) => $"ftjob-{id:N}";
    public static string Checkpoint(Guid id) => $"ftckpt-{id:N}";
    public static string Event(Guid jobId, long seq) => $"ftevent-{jobId:N}-{seq}";

    public static bool TryParseJob(string s, out Guid id)
    {
        id = default;
        return s.StartsWith("ftjob-", StringComparison.Ordinal) && Guid.TryParseExact(s["ftjob-".Length..], "N", out id);
    }

    /// <summary>The sequence number of an event id of this job, or null.</summary>
    public static long? EventSeq(Guid jobId, string s)
    {
        var prefix = $"ftevent-{jobId:N}-";
        return s.StartsWith(prefix, StringComparison.Ordinal) && long.TryParse(s[prefix.Length..], out var seq) && seq > 0 ? seq : null;
    }

    /// <summary>OpenAI's fine-tuned model name: <c>ft:&lt;base&gt;:&lt;tenant&gt;:&lt;suffix&gt;:&lt;id&gt;</c> (suffix may be empty).</summary>
    public static string ModelName(string baseModel, string tenantName, string? suffix, Guid jobId) =>
        $"ft:{baseModel}:{Slug(tenantName)}:{suffix ?? ""}:{jobId.ToString("N")[..8]}";

    /// <summary>A checkpoint's model name: the job's model name with <c>:ckpt-step-N</c>.</summary>
    public static string CheckpointModelName(string modelName, int step) => $"{modelName}:ckpt-step-{step}";

    /// <summary>The tenant's name in lower case with anything but letters, digits, '-' and '_' made '-' (at most 40 characters).</summary>
    public static string Slug(string name)
    {
        var sb = new StringBuilder(name.Length);
        foreach (var c in name.Trim().ToLowerInvariant())
            sb.Append(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' ? c : '-');
        var s = sb.ToString().Trim('-');
        if (s.Length == 0) s = "tenant";
        return s.Length > 40 ? s[..40] : s;
    }

    public static string FineTunedModelOrPlanned(FineTuneJob job, string tenantName, string baseName) =>
        job.FineTunedModel ?? ModelName(baseName, tenantName, job.Suffix, job.Id);
}
