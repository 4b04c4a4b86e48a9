namespace Loom.Data.Entities;

/// <summary>A response of POST /v1/responses kept for retrieval and for <c>previous_response_id</c> chaining.</summary>
public class StoredResponse : ITenantOwned
{
    /// <summary>The public id (<c>resp_</c> and 24 hex digits).</summary>
    public required string Id { get; set; }
    public Guid TenantId { get; set; }
    public required string Model { get; set; }
    /// <summary>The response this one continues, or null.</summary>
    public string? PreviousResponseId { get; set; }
    /// <summary>How many responses the chain holds up to this one (1 for a first response); bounds the chain.</summary>
    public int Depth { get; set; }
    /// <summary>The request's input items as the API lists them (with ids), a JSON array (jsonb).</summary>
    public required string InputItems { get; set; }
    /// <summary>The response object as served, a JSON object (jsonb).</summary>
    public required string Body { get; set; }
    /// <summary>Bytes of <see cref="InputItems"/> and <see cref="Body"/> together, as stored.</summary>
    public int SizeBytes { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    /// <summary>When the row stops being served and may be removed (the retention bound).</summary>
    public DateTimeOffset ExpiresAt { get; set; }
}
