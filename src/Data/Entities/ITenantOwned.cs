namespace Loom.Data.Entities;

/// <summary>A row that belongs to one tenant; the DbContext scopes every query on it to the current tenant.</summary>
public interface ITenantOwned
{
    Guid TenantId { get; set; }
}
