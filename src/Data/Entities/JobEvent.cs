namespace Loom.Data.Entities;

/// <summary>
/// One event of a background job (append-only). <see cref="Seq"/> numbers a job's events 1, 2, 3, ... without
/// gaps, in commit order, so a client that saw up to n asks for the events after n and misses nothing.
/// </summary>
public class JobEvent : ITenantOwned
{
    public long Id { get; set; }
    public Guid TenantId { get; set; }
    /// <summary>The job's public id (e.g. a fine-tuning job id).</summary>
    public required string JobId { get; set; }
    public long Seq { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    /// <summary>What happened, e.g. <c>created</c>, <c>step</c>, <c>checkpoint</c>, <c>succeeded</c>.</summary>
    public required string Kind { get; set; }
    /// <summary>The event's data as a JSON object (stored as jsonb).</summary>
    public required string Payload { get; set; }
}
