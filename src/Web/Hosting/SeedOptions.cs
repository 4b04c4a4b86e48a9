namespace Loom.Web.Hosting;

/// <summary>Demo data seeded on first start (section Loom:Seed); deploy/local/run.sh turns it on.</summary>
public sealed class SeedOptions
{
    public bool Demo { get; set; }
    public string TenantName { get; set; } = "demo";
    public string AdminUser { get; set; } = "admin";
    /// <summary>When unset, a random password is generated and written next to the key file.</summary>
    public string? AdminPassword { get; set; }
    /// <summary>Where the demo API key's secret is kept (mode 600).</summary>
    public string ApiKeyFile { get; set; } = ".data/demo-api-key";
}
