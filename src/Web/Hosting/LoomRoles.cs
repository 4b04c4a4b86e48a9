namespace Loom.Web.Hosting;

/// <summary>The roles this process plays, from <c>Loom:Roles</c> (comma-separated; all four by default).</summary>
public sealed record LoomRoles(bool Web, bool Api, bool Jobs, bool Inference)
{
    public static readonly string[] Known = ["web", "api", "jobs", "inference"];

    public static LoomRoles From(IConfiguration configuration)
    {
        var raw = configuration["Loom:Roles"];
        if (string.IsNullOrWhiteSpace(raw)) return new(true, true, true, true);
        var set = raw.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(r => r.ToLowerInvariant()).ToHashSet();
        var unknown = set.Except(Known).ToList();
        if (unknown.Count > 0)
            throw new InvalidOperationException($"Unknown role(s) in Loom:Roles: {string.Join(", ", unknown)}. Known roles: {string.Join(", ", Known)}.");
        return new(set.Contains("web"), set.Contains("api"), set.Contains("jobs"), set.Contains("inference"));
    }

    public override string ToString() =>
        string.Join(",", new[] { (Web, "web"), (Api, "api"), (Jobs, "jobs"), (Inference, "inference") }.Where(r => r.Item1).Select(r => r.Item2));
}
