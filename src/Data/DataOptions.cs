namespace Loom.Data;

/// <summary>Bound from configuration section "Data".</summary>
public sealed class DataOptions
{
    /// <summary>Apply EF migrations at start-up (on by default).</summary>
    public bool MigrateOnStart { get; set; } = true;
}
