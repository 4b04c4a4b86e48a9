namespace Loom.Data.Entities;

/// <summary>
/// Usage of one tenant, UTC day and model, summed from <see cref="UsageRecord"/> rows by the roll-up job. Days
/// before <see cref="UsageRollupState.RolledUpTo"/> are complete here; later days are read from the raw rows.
/// </summary>
public class UsageDaily : ITenantOwned
{
    public Guid TenantId { get; set; }
    public DateOnly Day { get; set; }
    public required string Model { get; set; }
    public int Requests { get; set; }
    public long PromptTokens { get; set; }
    public long CompletionTokens { get; set; }
}

/// <summary>The roll-up's watermark (one row): every UTC day before <see cref="RolledUpTo"/> is in <see cref="UsageDaily"/>.</summary>
public class UsageRollupState
{
    public int Id { get; set; }
    public DateOnly RolledUpTo { get; set; }
    public DateTimeOffset UpdatedAt { get; set; }
}
